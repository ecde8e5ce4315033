#!/usr/bin/env python3
"""Console link load: event ingest and check-ins from many simulated agents.

Starts a private yamori-console (its own data directory, under --parent,
default /var/tmp, so SQLite's fsync hits a real disk), adds a tenant and an
unlimited enrollment token, and speaks protocol v1 (docs/protocol.md) as many
agents. The benchmark is the client: it does not verify the console's
private CA (a real agent pins the certificate's key).

Ingest (--agents A, default 200; --procs P worker processes, default 4;
--conns T persistent HTTPS connections per process, default 8):

  A agents are enrolled (POST /api/v1/enroll). Each worker process builds,
  before the timed phase, gzip'd batches of --batch B events (default 1,000)
  for its agents: a header line and the event lines, each its own gzip
  member at level 6, as the agent sends them. The events have the shapes the
  agent writes (docs/events.md) without host.* and agent.*: about 70% file
  events (creation, modification, deletion, rename, with the acting
  process), 25% process events (exec with arguments, parent and the
  program's SHA-256; end with the exit code), 5% alerts (malware-detected
  with the file's SHA-256, rule, ATT&CK and YARA matches). Alerts go in the
  "alerts" stream, the rest in "bulk"; yamori.stream_seq counts from 1 per
  agent and stream without holes. Then, for --seconds D (default 30), every
  connection sends its agents' batches one after the other (closed loop:
  the next request goes as soon as the answer is in; one request in flight
  per agent, as the agent does), or with --ingest-rate R on a fixed
  schedule of R events/s (open loop: the latency at a given load rather
  than at saturation). A batch counts as acknowledged only on a 200 whose
  "acked" equals the batch's last_seq. Batches that ran out are built
  during the phase and reported (that costs generator CPU).

  Reported: acknowledged events/s; the console's CPU seconds in the phase
  (utime+stime of /proc/PID/stat, all threads; split by thread: the loop
  thread does TLS, HTTP and the replies, libuv's pool gunzips and validates
  the batches, the database thread runs SQLite), and per thread from
  /proc/PID/task/TID/schedstat the time on a CPU, runnable but waiting for
  a CPU (other load), and blocked (I/O such as fsync, or no work); events
  per console CPU second (= per core); latency request -> answer, p50/p99;
  errors by status; transactions (distinct received_ms in the events
  table: batches waiting together share one); the database's size per
  event once the console has stopped. Before anything is measured, one
  batch from an agent of its own starts libuv's pool threads, and the
  console's CPU is measured idle for --idle-seconds (default 10).

Check-ins (--checkin-agents C, default 10,000): C further agents are enrolled
in a setup phase (P processes x --enroll-conns connections, default 8). C agents checking in once a
minute (--checkin-interval 60) make C/60 check-ins per second (167/s for
10,000). First one "cold" pass (every agent checks in once, as fast as the
console answers: the first check-in after a console start authenticates
against the database); then, for each multiple in --checkin-rates (default
1,2,5) and each connection mode in --checkin-modes (default reuse,new), check-ins
at multiple x C/60 per second for --checkin-seconds (default 30), open loop
(sent on a fixed schedule from P processes x --checkin-conns connections,
default 16, round robin over the C agents; what a connection has not sent
1 s after the phase's end is dropped and counted as not sent): "reuse" keeps
the connections open (an agent that is also uploading events), "new" opens
a TLS connection per check-in (full handshake; an agent whose connection
was closed while it was idle). Reported: check-ins/s achieved, console CPU
per check-in, latency p50/p99, and agents per core at one check-in a
minute = 60 / (console CPU seconds per check-in).

Rate limits: the console allows 200 requests/s per client address (burst
400) before any handler runs, and 50/s per agent. Every simulated agent
here comes from 127.0.0.1, so the per-address limit would cap the whole
benchmark at 200 requests/s; the console is started with --rate-per-ip
(default 1,000,000 here; 0 keeps the console's default) and the value is
reported. Answers 429/503 are counted and honoured (Retry-After, per agent).

Other load: the machine may be shared. The load average (os.getloadavg())
is recorded before and after every phase, and the CPU time all processes
used during a phase (/proc/stat) is split into the console, this
generator, and everything else. Yamori processes this benchmark did not
start are listed.

--perf profiles the console during the ingest phase and the paced check-in
phases with perf (when installed) and prints the shares by library and the
top functions (perf costs CPU: take the other figures from a run without
it).

This is a benchmark, not a test: it never fails on a figure. It exits 0 when
it ran, 1 when it could not, and stops the console (SIGTERM) and removes its
temporary directory (unless --keep) on every exit path.

    bench/ingest_load.py --json ingest_load.json
    bench/ingest_load.py --agents 200 --procs 4 --batch 1000 --seconds 30 \\
        --checkin-agents 10000 --checkin-rates 1,2,5 --json ingest_load.json
"""

import argparse
import base64
import hashlib
import http.client
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib

from benchlib import BUILD_DIR, CLK_TCK, REPO, cpu_seconds, fmt, loadavg

AGENT_VERSION = "0.1.0"


def log(msg):
    print("[ingest_load] " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Measuring processes and the machine


def thread_cpu(pid):
    """{tid: utime+stime seconds} of every thread of a process."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                rest = f.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (int(rest[11]) + int(rest[12])) / CLK_TCK
        except OSError:
            pass
    return out


def thread_sched(pid):
    """{tid: (run s, runqueue wait s)} of every thread of a process, from
    /proc/PID/task/TID/schedstat (nanoseconds): the time on a CPU and the
    time runnable but waiting for one."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                v = f.read().split()
            out[int(tid)] = (int(v[0]) / 1e9, int(v[1]) / 1e9)
        except (OSError, ValueError, IndexError):
            pass
    return out


def system_busy():
    """Busy (non-idle, non-iowait) CPU seconds of the whole machine."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK


def machine_info():
    info = {"nproc": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "openssl": ssl.OPENSSL_VERSION}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["mem_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        with open("/etc/debian_version") as f:
            info["debian"] = f.read().strip()
    except OSError:
        pass
    return info


def other_yamori(own):
    """Yamori processes running on the machine that this benchmark did not start."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in own:
            continue
        try:
            with open("/proc/%s/comm" % d) as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm.startswith("yamori"):
            out.append("%s(%s)" % (comm, d))
    return out


class Window:
    """CPU of the console (per thread), this generator and the machine over
    one phase, with the load average at both ends."""

    def __init__(self, console_pid, gen_pids_fn):
        self.pid = console_pid
        self.gen_pids_fn = gen_pids_fn

    def start(self):
        self.load0 = loadavg()
        self.t0 = time.monotonic()
        self.sys0 = system_busy()
        self.con0 = cpu_seconds(self.pid)
        self.thr0 = thread_cpu(self.pid)
        self.sch0 = thread_sched(self.pid)

    def stop(self, gen_cpu):
        self.t1 = time.monotonic()
        self.con1 = cpu_seconds(self.pid)
        self.thr1 = thread_cpu(self.pid)
        self.sch1 = thread_sched(self.pid)
        self.sys1 = system_busy()
        self.load1 = loadavg()
        wall = self.t1 - self.t0
        con = self.con1 - self.con0
        busy = self.sys1 - self.sys0
        threads, sched = {}, {}
        for tid, v in self.thr1.items():
            threads[tid] = round(v - self.thr0.get(tid, 0.0), 2)
        for tid, (run, wait) in self.sch1.items():
            r0, w0 = self.sch0.get(tid, (0.0, 0.0))
            sched[tid] = (round(run - r0, 3), round(wait - w0, 3))
        return {"wall_s": round(wall, 3), "console_cpu_s": round(con, 3),
                "console_threads_cpu_s": threads, "console_threads_sched_s": sched,
                "generator_cpu_s": round(gen_cpu, 2),
                "machine_busy_cpu_s": round(busy, 2),
                "other_cpu_s": round(max(0.0, busy - con - gen_cpu), 2),
                "loadavg_before": self.load0, "loadavg_after": self.load1}


def pct(values, p):
    """Nearest-rank percentile (p in 0..100) of a list; None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


# ---------------------------------------------------------------------------
# The console


class Console:
    def __init__(self, binary, workdir, port, rate_per_ip):
        self.binary = binary
        self.data = os.path.join(workdir, "console-data")
        self.port = port
        self.workdir = workdir
        self.rate_per_ip = rate_per_ip
        self.p = None

    def cli(self, *args):
        r = subprocess.run([self.binary, "--data-dir", self.data] + list(args), capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("yamori-console %s: %s" % (" ".join(args), r.stderr.strip()))
        return r.stdout

    def start(self):
        argv = [self.binary, "--data-dir", self.data, "--listen", "127.0.0.1:%d" % self.port]
        if self.rate_per_ip:
            argv += ["--rate-per-ip", str(self.rate_per_ip)]
        argv.append("serve")
        self.out_path = os.path.join(self.workdir, "console.out")
        self.err_path = os.path.join(self.workdir, "console.err")
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.p = subprocess.Popen(argv, stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(self.out_path, "rb") as f:
                if b"console listening" in f.read():
                    return
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("the console did not start: " + self.stderr_tail())

    def stderr_tail(self, n=2000):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-n:]
        except OSError:
            return ""

    def stop(self):
        if self.p is None:
            return None
        if self._out.closed:
            return self.p.returncode
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._out.close()
        self._err.close()
        return self.p.returncode


def decode_token(token):
    body = token.split(".", 1)[1]
    body += "=" * (-len(body) % 4)
    return json.loads(base64.urlsafe_b64decode(body))


# ---------------------------------------------------------------------------
# HTTPS client


def client_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the benchmark is the client; the agent pins the key
    return ctx


class Client:
    """One persistent HTTPS connection (HTTP/1.1), reopened after errors."""

    def __init__(self, port, ctx, timeout=60):
        self.port = port
        self.ctx = ctx
        self.timeout = timeout
        self.conn = None
        self.connects = 0

    def request(self, path, body, headers, keep=True):
        """Returns (status, retry_after_s, body bytes); status 0 on a
        connection failure (after one reconnect attempt)."""
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                                        timeout=self.timeout)
                self.connects += 1
            try:
                self.conn.request("POST", path, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                ra = r.getheader("Retry-After")
                if not keep or r.will_close:
                    self.close()
                return r.status, float(ra) if ra and ra.isdigit() else 1.0, data
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 1:
                    return 0, 1.0, b""
        return 0, 1.0, b""

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None


# ---------------------------------------------------------------------------
# Enrollment


def enroll_proc(port, tok, names, threads, q):
    """Enrolls the agents named in names (T threads, a connection each);
    puts [(name, agent_id, secret)], {status: count} on q."""
    ctx = client_context()
    out, errors = [], {}
    lock = threading.Lock()

    def run(part):
        cl = Client(port, ctx)
        for name in part:
            body = json.dumps({"token": tok,
                               "host": {"name": name, "id": uuid.uuid4().hex,
                                        "os": {"name": "Debian GNU/Linux", "version": "12",
                                               "kernel": "6.1.0-28-amd64", "platform": "debian"},
                                        "architecture": "x86_64"},
                               "agent": {"version": AGENT_VERSION}}).encode()
            for _ in range(20):
                st, ra, data = cl.request("/api/v1/enroll", body, {"Content-Type": "application/json"})
                if st == 200:
                    j = json.loads(data)
                    with lock:
                        out.append((name, j["agent_id"], j["secret"]))
                    break
                with lock:
                    errors[st] = errors.get(st, 0) + 1
                time.sleep(ra if st in (429, 503) else 0.2)
        cl.close()

    parts = [names[i::threads] for i in range(threads)]
    ts = [threading.Thread(target=run, args=(p,)) for p in parts if p]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    q.put((out, errors))


def enroll_many(con, tok, prefix, n, procs, threads, window):
    """Enrolls n agents; returns ([(agent_id, secret)], stats)."""
    names = ["%s-%d" % (prefix, i) for i in range(n)]
    q = mp.Queue()
    ps = [mp.Process(target=enroll_proc, args=(con.port, tok, names[i::procs], threads, q), daemon=True)
          for i in range(procs)]
    t0 = os.times()
    window.start()
    for p in ps:
        p.start()
    agents, errors = [], {}
    for _ in ps:
        out, err = q.get()
        agents += out
        for k, v in err.items():
            errors[str(k)] = errors.get(str(k), 0) + v
    for p in ps:
        p.join()
    t1 = os.times()
    st = window.stop((t1.children_user + t1.children_system) - (t0.children_user + t0.children_system))
    st.update({"enrolled": len(agents), "errors": errors,
               "per_s": round(len(agents) / st["wall_s"], 1) if st["wall_s"] else None,
               "console_cpu_ms_per_enroll": round(1000 * st["console_cpu_s"] / len(agents), 3)
               if agents else None})
    if len(agents) != n:
        raise RuntimeError("only %d of %d agents enrolled (errors %s)" % (len(agents), n, errors))
    return [(a, s) for _, a, s in agents], st


# ---------------------------------------------------------------------------
# Events of a simulated PC

USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
         "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yuki"]
WORDS = ["report", "invoice", "budget", "notes", "main", "utils", "index", "config", "draft", "photo",
         "meeting", "summary", "backup", "client", "server", "module", "test_api", "readme", "data",
         "export", "schema", "handler", "contract", "offer", "scan", "letter", "minutes", "slides"]
EXTS = ["txt", "docx", "xlsx", "pdf", "c", "h", "o", "py", "pyc", "json", "log", "tmp", "js", "html",
        "png", "jpg", "md", "csv", "odt", "sqlite", "lock", "part"]
PROJECTS = ["webshop", "intranet", "billing", "firmware", "analytics"]
# (executable, [argument templates]); {p} a project, {w} a word, {e} an extension, {u} the user
PROGRAMS = [
    ("/usr/bin/bash", ["bash", "bash -c ./build.sh", "bash /home/{u}/bin/sync.sh"]),
    ("/usr/bin/dash", ["sh -c /usr/lib/update-notifier/package-data-downloader",
                       "sh -c 'test -x /usr/sbin/anacron || run-parts --report /etc/cron.daily'"]),
    ("/usr/bin/git", ["git status --porcelain", "git fetch origin", "git commit -m fix", "git diff"]),
    ("/usr/bin/gcc-12", ["gcc -O2 -Wall -c src/{w}.c -o build/{w}.o"]),
    ("/usr/libexec/gcc/x86_64-linux-gnu/12/cc1", ["/usr/libexec/gcc/x86_64-linux-gnu/12/cc1 -quiet src/{w}.c"]),
    ("/usr/bin/make", ["make -j4", "make test"]),
    ("/usr/bin/python3.11", ["python3 manage.py runserver", "python3 -m pytest tests/test_{w}.py"]),
    ("/usr/lib/firefox-esr/firefox-esr", ["/usr/lib/firefox-esr/firefox-esr -contentproc -childID 12 tab"]),
    ("/usr/lib/libreoffice/program/soffice.bin", ["/usr/lib/libreoffice/program/soffice.bin --writer {w}.odt"]),
    ("/usr/bin/ls", ["ls -la", "ls --color=auto /home/{u}/Documents"]),
    ("/usr/bin/grep", ["grep -r TODO src", "grep -c error /var/log/syslog"]),
    ("/usr/bin/rsync", ["rsync -a /home/{u}/Documents/ /mnt/backup/{u}/"]),
    ("/usr/bin/ssh", ["ssh git@gitlab.example.com git-upload-pack '{p}.git'"]),
    ("/usr/bin/node", ["node /home/{u}/projects/{p}/node_modules/.bin/webpack --mode production"]),
    ("/usr/sbin/cron", ["/usr/sbin/CRON -f"]),
    ("/usr/bin/dpkg", ["dpkg --print-foreign-architectures"]),
]
PARENTS = [("/usr/lib/systemd/systemd", "systemd"), ("/usr/bin/bash", "bash"),
           ("/usr/bin/gnome-shell", "gnome-shell"), ("/usr/sbin/cron", "cron"), ("/usr/bin/make", "make")]
RULES = [
    ("Yamori_Linux_IoT_Bot_Plaintext", "linux_malware", "critical", 99, "linux botnet mirai gafgyt",
     "T1498", "Mirai/Gafgyt-like IoT bot ELF with its strings in clear.",
     "https://attack.mitre.org/techniques/T1498/", "/tmp/.x/{w}", "$pw1", "xc3511"),
    ("Yamori_Webshell_PHP_Eval_Request", "webshells", "high", 73, "webshell php", "T1505.003",
     "PHP web shell: request data handed to eval.",
     "https://attack.mitre.org/techniques/T1505/003/", "/var/www/html/uploads/{w}.php", "$eval",
     "eval($_POST["),
    ("Yamori_Reverse_Shell_Bash_Dev_Tcp", "reverse_shells", "high", 73, "reverse_shell bash",
     "T1059.004", "Bash reverse shell over /dev/tcp.", "https://attack.mitre.org/techniques/T1059/004/",
     "/home/{u}/Downloads/{w}.sh", "$devtcp", "bash -i >& /dev/tcp/"),
    ("Yamori_Hacktool_Mimipenguin", "hacktools", "medium", 47, "hacktool credentials", "T1003",
     "Credential dumper for Linux desktops.", "https://attack.mitre.org/techniques/T1003/",
     "/home/{u}/Downloads/{w}.py", "$s1", "mimipenguin"),
]


def sha_hex(s):
    return hashlib.sha256(s.encode()).hexdigest()


EXE_HASH = {exe: sha_hex("prog:" + exe) for exe, _ in PROGRAMS}


class Sim:
    """The event source of one simulated PC: its user, directories and
    running processes, and its two stream counters."""

    def __init__(self, agent_id, index, seed, t0):
        self.agent_id = agent_id
        self.rng = random.Random(seed)
        self.user = USERS[index % len(USERS)]
        self.home = "/home/" + self.user
        self.uid = str(1000 + index % 7)
        self.seq = {"bulk": 0, "alerts": 0}
        self.evseq = 0
        self.batches = 0
        self.index = index
        self.now_us = int(t0 * 1e6)
        self.next_pid = 2000 + self.rng.randrange(30000)
        proj = self.rng.choice(PROJECTS)
        profile = "%08x.default-esr" % self.rng.getrandbits(32)
        self.dirs = [self.home + "/Documents", self.home + "/Downloads", self.home + "/Desktop",
                     "%s/projects/%s/src" % (self.home, proj), "%s/projects/%s/build" % (self.home, proj),
                     "%s/projects/%s/.git/objects/%02x" % (self.home, proj, self.rng.randrange(256)),
                     self.home + "/.config/libreoffice/4/user", self.home + "/.local/share/Trash/files",
                     "/tmp", "/var/tmp", "/var/log", "/var/lib/apt/lists/partial"]
        self.cache_dir = "%s/.cache/mozilla/firefox/%s/cache2/entries" % (self.home, profile)
        self.procs = [self.new_proc() for _ in range(24)]
        self._sec = -1
        self._sec_txt = ""

    def ts(self, us):
        sec = us // 1000000
        if sec != self._sec:
            self._sec = sec
            self._sec_txt = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return "%s.%06dZ" % (self._sec_txt, us % 1000000)

    def new_proc(self):
        rng = self.rng
        exe, argv = rng.choice(PROGRAMS)
        parent = rng.choice(PARENTS)
        self.next_pid += rng.randrange(1, 40)
        if self.next_pid > 4000000:
            self.next_pid = 1000
        cmd = rng.choice(argv).format(u=self.user, p=rng.choice(PROJECTS), w=rng.choice(WORDS),
                                      e=rng.choice(EXTS))
        return {"pid": self.next_pid, "eid": "%032x" % rng.getrandbits(128), "exe": exe,
                "name": exe.rsplit("/", 1)[1], "cmd": cmd, "ppid": rng.randrange(1, 5000),
                "peid": "%032x" % rng.getrandbits(128), "pexe": parent[0], "pname": parent[1],
                "start_us": self.now_us - rng.randrange(1, 600000000),
                "root": exe in ("/usr/sbin/cron", "/usr/bin/dpkg")}

    def head(self, action, category, dataset, kind, type_):
        rng = self.rng
        self.now_us += rng.randrange(1, 40000)
        self.evseq += 1
        return ('{"@timestamp":"%s","ecs":{"version":"9.4.0"},"event":{"action":"%s","category":["%s"],'
                '"created":"%s","dataset":"%s","kind":"%s","module":"yamori","sequence":%d,"type":[%s]}'
                % (self.ts(self.now_us), action, category, self.ts(self.now_us + rng.randrange(5, 900)),
                   dataset, kind, self.evseq, type_))

    def actor(self, p):
        return ('"process":{"entity_id":"%s","executable":"%s","name":"%s","pid":%d}'
                % (p["eid"], p["exe"], p["name"], p["pid"]))

    def file_event(self, stream_seq):
        rng = self.rng
        r = rng.random()
        if r < 0.30:
            action, type_ = "creation", '"creation"'
        elif r < 0.70:
            action, type_ = "modification", '"change"'
        elif r < 0.94:
            action, type_ = "deletion", '"deletion"'
        else:
            action, type_ = "rename", '"change"'
        if rng.random() < 0.25:
            d, name, ext = self.cache_dir, "%040X" % rng.getrandbits(160), None
        else:
            d = rng.choice(self.dirs)
            ext = rng.choice(EXTS)
            name = "%s%s.%s" % (rng.choice(WORDS), rng.choice(("", "_%d" % rng.randrange(100),
                                                                 "-%d" % rng.randrange(2020, 2027))), ext)
        f = '"file":{"directory":"%s",%s"name":"%s","path":"%s/%s","type":"file"}' % (
            d, '"extension":"%s",' % ext if ext else "", name, d, name)
        y = '"yamori":{%s"stream_seq":%d}'
        orig = ""
        if action == "rename":
            old = name + ".part" if rng.random() < 0.5 else ".~lock.%s#" % name
            orig = '"file":{"original":{"directory":"%s","name":"%s","path":"%s/%s"}},' % (d, old, d, old)
        return "%s,%s,%s,%s}" % (self.head(action, "file", "yamori.file", "event", type_), f,
                                 self.actor(rng.choice(self.procs)), y % (orig, stream_seq))

    def process_event(self, stream_seq):
        rng = self.rng
        if rng.random() < 0.5:
            p = self.new_proc()
            self.procs[rng.randrange(len(self.procs))] = p
            args = p["cmd"].split(" ")
            user = '"user":{"id":"0","name":"root"}' if p["root"] else '"user":{"id":"%s","name":"%s"}' % (
                self.uid, self.user)
            p["start_us"] = self.now_us
            return ('%s,"process":{"args":%s,"args_count":%d,"command_line":"%s","entity_id":"%s",'
                    '"executable":"%s","hash":{"sha256":"%s"},"name":"%s","parent":{"entity_id":"%s",'
                    '"executable":"%s","name":"%s","pid":%d},"pid":%d,"start":"%s",%s,'
                    '"working_directory":"%s"},"yamori":{"stream_seq":%d}}'
                    % (self.head("exec", "process", "yamori.process", "event", '"start"'),
                       json.dumps(args, separators=(",", ":")), len(args), p["cmd"], p["eid"], p["exe"],
                       EXE_HASH[p["exe"]], p["name"], p["peid"], p["pexe"], p["pname"], p["ppid"],
                       p["pid"], self.ts(p["start_us"]), user, rng.choice(self.dirs[:5]), stream_seq))
        p = rng.choice(self.procs)
        h = self.head("end", "process", "yamori.process", "event", '"end"')
        user = '"user":{"id":"0","name":"root"}' if p["root"] else '"user":{"id":"%s","name":"%s"}' % (
            self.uid, self.user)
        return ('%s,"process":{"end":"%s","entity_id":"%s","executable":"%s","exit_code":%d,"name":"%s",'
                '"parent":{"entity_id":"%s","executable":"%s","name":"%s","pid":%d},"pid":%d,"start":"%s",'
                '%s},"yamori":{"stream_seq":%d}}'
                % (h, self.ts(self.now_us), p["eid"], p["exe"], rng.choice((0, 0, 0, 0, 1, 2, 130)),
                   p["name"], p["peid"], p["pexe"], p["pname"], p["ppid"], p["pid"],
                   self.ts(p["start_us"]), user, stream_seq))

    def alert_event(self, stream_seq):
        rng = self.rng
        (rule, ns, sev, sevn, tags, mitre, desc, ref, path, sid, excerpt) = rng.choice(RULES)
        path = path.format(u=self.user, w=rng.choice(WORDS))
        d, name = path.rsplit("/", 1)
        ext = name.rsplit(".", 1)[1] if "." in name else None
        p = rng.choice(self.procs)
        matches = json.dumps([{"rule": rule, "namespace": ns, "strings": [
            {"id": sid, "offset": rng.randrange(0, 90000), "excerpt": excerpt}]}], separators=(",", ":"))
        taglist = json.dumps(tags.split(" "), separators=(",", ":"))
        mtime = self.ts(self.now_us - rng.randrange(1000, 5000000))
        return ('%s,"severity":%d},"file":{"directory":"%s",%s"gid":"%s","hash":{"sha256":"%064x"},'
                '"inode":"%d","mode":"0644","mtime":"%s","name":"%s","path":"%s","size":%d,"type":"file",'
                '"uid":"%s"},"process":{"entity_id":"%s","executable":"%s","name":"%s","parent":{"pid":%d},'
                '"pid":%d},"rule":{"author":"Yamori project","description":"%s","name":"%s",'
                '"reference":"%s","ruleset":"%s","version":"02615eba569f6fdb"},"threat":{"framework":'
                '"MITRE ATT&CK","technique":{"id":["%s"]}},"yamori":{"scan":{"cached":false,'
                '"trigger":"write"},"stream_seq":%d,"yara":{"matches":%s,"severity":"%s","tags":%s}}}'
                % (self.head("malware-detected", "malware", "yamori.malware", "alert", '"info"')[:-1],
                   sevn, d, '"extension":"%s",' % ext if ext else "", self.uid, rng.getrandbits(256),
                   rng.randrange(100000, 9000000), mtime, name, path, rng.randrange(200, 2000000),
                   self.uid, p["eid"], p["exe"], p["name"], p["ppid"], p["pid"], desc, rule, ref, ns,
                   mitre, stream_seq, matches, sev, taglist))

    def batch(self, n):
        """The next batch: (body, stream, first_seq, last_seq). One batch
        in 20 is alerts, the rest bulk (file 70/95, process 25/95)."""
        self.batches += 1
        stream = "alerts" if (self.batches + self.index) % 20 == 0 else "bulk"
        first = self.seq[stream] + 1
        lines = []
        for s in range(first, first + n):
            if stream == "alerts":
                lines.append(self.alert_event(s))
            elif self.rng.random() < 0.70 / 0.95:
                lines.append(self.file_event(s))
            else:
                lines.append(self.process_event(s))
        last = first + n - 1
        self.seq[stream] = last
        header = '{"agent_id":"%s","stream":"%s","first_seq":%d,"last_seq":%d,"count":%d}\n' % (
            self.agent_id, stream, first, last, n)
        body = gzip_member(header.encode()) + gzip_member(("\n".join(lines) + "\n").encode())
        return body, stream, first, last


def gzip_member(data):
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    return z.compress(data) + z.flush()


# ---------------------------------------------------------------------------
# Ingest phase


def ingest_proc(widx, port, agents, opts, start_val, barrier, q):
    """One worker process: builds its agents' batches, waits for the start,
    then sends for opts["seconds"] from opts["conns"] connections."""
    try:
        t_build = time.monotonic()
        sims = []
        for i, (aid, secret, index) in enumerate(agents):
            sims.append({"sim": Sim(aid, index, opts["seed"] * 1000003 + index, time.time() - 3600),
                         "auth": "Bearer %s.%s" % (aid, secret), "stock": [], "pending": None,
                         "not_before": 0.0})
        raw = 0
        for _ in range(opts["batches_per_agent"]):
            for s in sims:
                b = s["sim"].batch(opts["batch"])
                raw += len(b[0])
                s["stock"].append(b)
        for s in sims:
            s["stock"].reverse()  # pop() takes the oldest
        build_s = time.monotonic() - t_build
        barrier.wait()  # built
        barrier.wait()  # the main process has set the start time
        start = start_val.value
        deadline = start + opts["seconds"]
        conns = min(opts["conns"], len(sims))
        ctx = client_context()
        lock = threading.Lock()
        res = {"acked_events": 0, "acked_batches": 0, "bytes_sent": 0, "errors": {}, "lat": [],
               "built_late": 0, "bad_acks": 0, "connects": 0}

        total_conns = opts["conns"] * opts["procs"]

        def run(part, tidx):
            cl = Client(port, ctx)
            lat, errors = [], {}
            acked = batches = sent = late = bad = 0
            hdr = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
            k = 0
            # Open loop (--ingest-rate): this connection's batches are due
            # every `every` seconds, the connections' schedules interleaved.
            every = opts["every"]
            due = start + every * (tidx / float(total_conns)) if every else 0.0
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                if every:
                    if now < due:
                        time.sleep(min(due, deadline) - now)
                        continue
                    due += every
                s = None
                for _ in range(len(part)):
                    c = part[k % len(part)]
                    k += 1
                    if c["not_before"] <= now:
                        s = c
                        break
                if s is None:
                    time.sleep(min(0.05, max(0.0, deadline - now)))
                    continue
                b = s["pending"]
                if b is None:
                    if s["stock"]:
                        b = s["stock"].pop()
                    else:
                        b = s["sim"].batch(opts["batch"])
                        late += 1
                body, stream, first, last = b
                h = dict(hdr)
                h["Authorization"] = s["auth"]
                t1 = time.monotonic()
                st, ra, data = cl.request("/api/v1/events", body, h)
                t2 = time.monotonic()
                sent += len(body)
                ok = False
                if st == 200:
                    try:
                        ok = json.loads(data).get("acked") == last
                    except ValueError:
                        ok = False
                    if not ok:
                        bad += 1
                if ok:
                    lat.append(t2 - t1)
                    acked += last - first + 1
                    batches += 1
                    s["pending"] = None
                else:
                    key = str(st) if st else "connection"
                    errors[key] = errors.get(key, 0) + 1
                    s["pending"] = b
                    if st in (429, 503):
                        s["not_before"] = time.monotonic() + ra
            cl.close()
            with lock:
                res["acked_events"] += acked
                res["acked_batches"] += batches
                res["bytes_sent"] += sent
                res["built_late"] += late
                res["bad_acks"] += bad
                res["lat"] += lat
                res["connects"] += cl.connects
                for key, v in errors.items():
                    res["errors"][key] = res["errors"].get(key, 0) + v

        while time.monotonic() < start:
            time.sleep(0.001)
        c0 = os.times()
        parts = [sims[i::conns] for i in range(conns)]
        ts = [threading.Thread(target=run, args=(p, widx + opts["procs"] * i)) for i, p in enumerate(parts)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        c1 = os.times()
        res.update({"worker": widx, "end": time.monotonic(), "build_s": build_s, "prebuilt_bytes": raw,
                    "cpu_s": (c1.user + c1.system) - (c0.user + c0.system)})
        q.put(res)
    except BaseException as e:  # the main process must not wait for ever
        barrier.abort()
        q.put({"worker": widx, "fatal": repr(e)})
        raise


def run_ingest(con, agents, args, window):
    A = len(agents)
    total_batches = args.prebuild_events // args.batch if args.prebuild_events else \
        int(args.seconds * args.expect_rate / args.batch)
    per_agent = max(1, -(-total_batches // A))
    log("ingest: %d agents, %d processes x %d connections, batches of %d events, %d s; building %d "
        "batches per agent first" % (A, args.procs, args.conns, args.batch, args.seconds, per_agent))
    conns = min(args.conns, -(-A // args.procs))
    opts = {"batch": args.batch, "seconds": args.seconds, "conns": conns, "procs": args.procs,
            "batches_per_agent": per_agent, "seed": args.seed,
            "every": args.procs * conns * args.batch / args.ingest_rate if args.ingest_rate > 0 else 0.0}
    barrier = mp.Barrier(args.procs + 1)
    start_val = mp.Value("d", 0.0)
    q = mp.Queue()
    tagged = [(a, s, i) for i, (a, s) in enumerate(agents)]
    ps = [mp.Process(target=ingest_proc, args=(w, con.port, tagged[w::args.procs], opts, start_val, barrier, q),
                     daemon=True) for w in range(args.procs)]
    t_build = time.monotonic()
    for p in ps:
        p.start()
    try:
        barrier.wait(timeout=3600)
    except threading.BrokenBarrierError:
        raise RuntimeError("an ingest worker failed while building: %s" % q.get(timeout=10).get("fatal"))
    build_wall = time.monotonic() - t_build
    log("ingest: batches built in %.1f s; sending" % build_wall)
    perf = None
    start_val.value = time.monotonic() + 0.3
    barrier.wait()
    while time.monotonic() < start_val.value:
        time.sleep(0.001)
    window.start()
    if args.perf:
        perf = start_perf(con.p.pid, args.workdir)
    results = []
    for _ in ps:
        r = q.get()
        if "fatal" in r:
            raise RuntimeError("ingest worker %d failed: %s" % (r["worker"], r["fatal"]))
        results.append(r)
    gen_cpu = sum(r["cpu_s"] for r in results)
    st = window.stop(gen_cpu)
    end = max(r["end"] for r in results)
    for p in ps:
        p.join()
    perf_report = stop_perf(perf) if perf else None
    lat = []
    errors = {}
    for r in results:
        lat += r["lat"]
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    events = sum(r["acked_events"] for r in results)
    wall = end - start_val.value
    st["wall_s"] = round(wall, 3)
    out = {"agents": A, "procs": args.procs, "conns_per_proc": conns, "batch_events": args.batch,
           "target_events_per_s": args.ingest_rate or None,
           "seconds": args.seconds, "prebuilt_batches": per_agent * A, "build_wall_s": round(build_wall, 1),
           "prebuilt_gz_bytes_per_event": round(sum(r["prebuilt_bytes"] for r in results) /
                                                 (per_agent * A * args.batch), 1),
           "built_during_phase": sum(r["built_late"] for r in results),
           "acked_events": events, "acked_batches": sum(r["acked_batches"] for r in results),
           "bad_acks": sum(r["bad_acks"] for r in results), "errors": errors,
           "connects": sum(r["connects"] for r in results),
           "events_per_s": round(events / wall, 1),
           "events_per_console_cpu_s": round(events / st["console_cpu_s"], 1) if st["console_cpu_s"] else None,
           "latency_ms_p50": round(1000 * pct(lat, 50), 1) if lat else None,
           "latency_ms_p99": round(1000 * pct(lat, 99), 1) if lat else None,
           "latency_ms_max": round(1000 * max(lat), 1) if lat else None}
    out.update(st)
    if perf_report:
        out["perf"] = perf_report
    return out


def start_perf(pid, workdir):
    if shutil.which("perf") is None:
        log("perf not installed; --perf ignored")
        return None
    path = os.path.join(workdir, "perf.data")
    p = subprocess.Popen(["perf", "record", "-F", "499", "-g", "-o", path, "-p", str(pid)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (p, path)


def stop_perf(perf):
    if perf is None:
        return None
    p, path = perf
    p.send_signal(signal.SIGINT)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    rep = {}
    for key, sort in (("by_library", "dso"), ("by_function", "dso,sym")):
        r = subprocess.run(["perf", "report", "-i", path, "--no-children", "--sort", sort, "--stdio",
                            "-g", "none", "--percent-limit", "1"], capture_output=True, text=True)
        rows = []
        for line in r.stdout.splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "%" not in line.split()[0]:
                continue
            parts = line.split(None, 1)
            rows.append([parts[0], " ".join(parts[1].split())])
        rep[key] = rows[:25]
    return rep


# ---------------------------------------------------------------------------
# Check-in phase


def checkin_body(aid, i):
    return json.dumps({"agent_id": aid, "version": AGENT_VERSION, "rules_version": "02615eba569f6fdb",
                       "status": {"sensors": {"process": True, "file": True, "exec_guard": True},
                                  "policy": {"exec": "block", "file": "quarantine"}},
                       "counters": {"events": 123456 + i, "alerts": 2, "gaps": 0, "spool_queued": 0,
                                    "spool_sent": 1200 + i, "spool_acked": 1200 + i, "spool_shed": 0,
                                    "spool_corrupt": 0, "uplink_retries": 3}},
                      separators=(",", ":")).encode()


def checkin_proc(widx, port, agents, rate, seconds, mode, threads, start_val, barrier, q):
    """Check-ins of one worker: rate per second in total over its threads,
    on a fixed schedule (rate <= 0: as fast as answered, each agent once)."""
    try:
        barrier.wait()
        start = start_val.value
        ctx = client_context()
        lock = threading.Lock()
        res = {"ok": 0, "errors": {}, "lat": [], "lag_max": 0.0, "connects": 0, "behind": 0, "unsent": 0}

        def run(t):
            part = agents[t::threads]
            cl = Client(port, ctx)
            lat, errors = [], {}
            ok = behind = 0
            lag_max = 0.0
            not_before = {}
            keep = mode != "new"
            # With a rate, the worker's schedule is send j at start + j / rate
            # for j < seconds x rate; thread t takes j = t, t + threads, ...
            slots = range(t, int(round(seconds * rate)), threads) if rate > 0 else range(len(part))
            for k, j in enumerate(slots):
                aid, secret = part[k % len(part)]
                if rate > 0:
                    due = start + j / rate
                    now = time.monotonic()
                    if now > start + seconds + 1.0:
                        # Too far behind: what is left of the schedule is
                        # not sent (counted), the phase keeps its length.
                        with lock:
                            res["unsent"] += len(slots) - k
                        break
                    if now < due:
                        time.sleep(due - now)
                    else:
                        lag_max = max(lag_max, now - due)
                        if now - due > 0.1:
                            behind += 1
                    if not_before.get(aid, 0) > time.monotonic():
                        continue
                hdr = {"Content-Type": "application/json", "Authorization": "Bearer %s.%s" % (aid, secret)}
                t1 = time.monotonic()
                st, ra, data = cl.request("/api/v1/checkin", checkin_body(aid, k), hdr, keep=keep)
                t2 = time.monotonic()
                if st == 200:
                    ok += 1
                    lat.append(t2 - t1)
                else:
                    key = str(st) if st else "connection"
                    errors[key] = errors.get(key, 0) + 1
                    if st in (429, 503):
                        not_before[aid] = time.monotonic() + ra
            cl.close()
            with lock:
                res["ok"] += ok
                res["lat"] += lat
                res["behind"] += behind
                res["connects"] += cl.connects
                res["lag_max"] = max(res["lag_max"], lag_max)
                for key, v in errors.items():
                    res["errors"][key] = res["errors"].get(key, 0) + v

        while time.monotonic() < start:
            time.sleep(0.001)
        c0 = os.times()
        ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        c1 = os.times()
        res.update({"worker": widx, "end": time.monotonic(),
                    "cpu_s": (c1.user + c1.system) - (c0.user + c0.system)})
        q.put(res)
    except BaseException as e:
        barrier.abort()
        q.put({"worker": widx, "fatal": repr(e)})
        raise


def run_checkins(con, agents, rate, seconds, mode, args, window, label):
    procs = args.procs
    threads = args.checkin_conns
    barrier = mp.Barrier(procs + 1)
    start_val = mp.Value("d", 0.0)
    q = mp.Queue()
    ps = [mp.Process(target=checkin_proc, args=(w, con.port, agents[w::procs], rate / procs if rate > 0 else 0,
                                                seconds, mode, threads, start_val, barrier, q), daemon=True)
          for w in range(procs)]
    for p in ps:
        p.start()
    start_val.value = time.monotonic() + 0.5
    try:
        barrier.wait(timeout=600)
    except threading.BrokenBarrierError:
        raise RuntimeError("a check-in worker failed: %s" % q.get(timeout=10).get("fatal"))
    while time.monotonic() < start_val.value:
        time.sleep(0.001)
    window.start()
    perf = start_perf(con.p.pid, args.workdir) if args.perf and rate > 0 else None
    results = []
    for _ in ps:
        r = q.get()
        if "fatal" in r:
            raise RuntimeError("check-in worker %d failed: %s" % (r["worker"], r["fatal"]))
        results.append(r)
    st = window.stop(sum(r["cpu_s"] for r in results))
    if perf:
        st["perf"] = stop_perf(perf)
    for p in ps:
        p.join()
    wall = max(r["end"] for r in results) - start_val.value
    st["wall_s"] = round(wall, 3)
    lat, errors = [], {}
    for r in results:
        lat += r["lat"]
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    ok = sum(r["ok"] for r in results)
    cpu_per = st["console_cpu_s"] / ok if ok else None
    out = {"label": label, "mode": mode, "target_per_s": round(rate, 1) if rate > 0 else None,
           "checkins": ok, "per_s": round(ok / wall, 1), "errors": errors,
           "connects": sum(r["connects"] for r in results),
           "late_sends": sum(r["behind"] for r in results),
           "unsent": sum(r["unsent"] for r in results),
           "max_lag_s": round(max(r["lag_max"] for r in results), 3),
           "console_cpu_ms_per_checkin": round(1000 * cpu_per, 3) if cpu_per else None,
           "agents_per_core_at_1_per_min": int(60 / cpu_per) if cpu_per else None,
           "latency_ms_p50": round(1000 * pct(lat, 50), 2) if lat else None,
           "latency_ms_p99": round(1000 * pct(lat, 99), 2) if lat else None}
    out.update(st)
    return out


# ---------------------------------------------------------------------------
# Database figures


def db_figures(data_dir, skip_agent):
    """Events, transactions (distinct received_ms: one per commit) and the
    database's size per event, without the warm-up agent's batch."""
    out = {}
    db = os.path.join(data_dir, "yamori.db")
    try:
        size = sum(os.path.getsize(db + s) for s in ("", "-wal") if os.path.exists(db + s))
        c = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=30)
        try:
            n, tx, streams = c.execute(
                "SELECT count(*), count(DISTINCT received_ms), count(DISTINCT agent_id || stream) "
                "FROM events WHERE agent_id != ?", (skip_agent,)).fetchone()
            out = {"events_stored": n, "transactions": tx, "db_bytes": size,
                   "db_bytes_per_event": round(size / n, 1) if n else None,
                   "agent_streams": streams}
        finally:
            c.close()
    except (OSError, sqlite3.Error) as e:
        out["error"] = str(e)
    return out


# ---------------------------------------------------------------------------
# Report


def thread_split(st, pid, named):
    """Console CPU by thread role: loop (the main thread), database, pool."""
    roles = {}
    for tid, v in st["console_threads_cpu_s"].items():
        role = "loop" if tid == pid else named.get(tid, "pool")
        roles[role] = round(roles.get(role, 0.0) + v, 2)
    return roles


def sched_split(st, pid, named):
    """Per thread role: seconds on a CPU, seconds runnable but waiting for
    a CPU (other load), and the rest of the wall time (blocked: waiting for
    I/O such as fsync, or for work), summed over the role's threads."""
    roles = {}
    for tid, (run, wait) in st["console_threads_sched_s"].items():
        role = "loop" if tid == pid else named.get(tid, "pool")
        r = roles.setdefault(role, {"threads": 0, "run_s": 0.0, "runq_wait_s": 0.0, "blocked_s": 0.0})
        r["threads"] += 1
        r["run_s"] = round(r["run_s"] + run, 2)
        r["runq_wait_s"] = round(r["runq_wait_s"] + wait, 2)
        r["blocked_s"] = round(r["blocked_s"] + max(0.0, st["wall_s"] - run - wait), 2)
    return roles


def report(res):
    lines = []
    m = res["machine"]
    lines.append("Machine: %s, %s cores, %s GiB, kernel %s, Debian %s; console --rate-per-ip %s"
                 % (m.get("cpu", "?"), m["nproc"], m.get("mem_gib", "?"), m["kernel"], m.get("debian", "?"),
                    res["rate_per_ip"] or "default (200)"))
    if res.get("other_yamori"):
        lines.append("Other Yamori processes running: " + ", ".join(res["other_yamori"]))
    if "console_idle" in res:
        i = res["console_idle"]
        lines.append("Console idle: %.2f CPU s in %.1f s (%.2f%% of a core), load %s -> %s" % (
            i["console_cpu_s"], i["wall_s"], 100 * res["console_idle_cpu_per_s"], i["loadavg_before"],
            i["loadavg_after"]))
    lines.append("")
    for key in ("enroll_ingest", "enroll_checkin"):
        e = res.get(key)
        if e:
            lines.append("Enrollment (%s): %s agents in %.1f s = %s/s, console %s ms CPU per enrollment, "
                         "errors %s, load %s -> %s" % (key.split("_")[1], fmt(e["enrolled"]), e["wall_s"],
                                                       fmt(e["per_s"], 1), fmt(e["console_cpu_ms_per_enroll"], 2),
                                                       e["errors"] or "none", e["loadavg_before"],
                                                       e["loadavg_after"]))
    ing = res.get("ingest")
    if ing:
        lines += ["", "### Ingest", "",
                  "| agents | procs x conns | batch | target events/s | events/s acked | console CPU s | events per console CPU s "
                  "| p50 ms | p99 ms | errors | generator CPU s | other CPU s | load before -> after |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        lines.append("| %s | %d x %d | %s | %s | %s | %.2f / %.1f s | %s | %s | %s | %s | %.1f | %.1f | %s -> %s |" % (
            fmt(ing["agents"]), ing["procs"], ing["conns_per_proc"], fmt(ing["batch_events"]),
            fmt(ing["target_events_per_s"]) if ing["target_events_per_s"] else "closed loop", fmt(ing["events_per_s"]), ing["console_cpu_s"], ing["wall_s"], fmt(ing["events_per_console_cpu_s"]),
            fmt(ing["latency_ms_p50"], 1), fmt(ing["latency_ms_p99"], 1),
            ", ".join("%s: %d" % kv for kv in sorted(ing["errors"].items())) or "none",
            ing["generator_cpu_s"], ing["other_cpu_s"], ing["loadavg_before"], ing["loadavg_after"]))
        lines.append("")
        lines.append("Acknowledged: %s events in %s batches (bad acks %d); batches built during the phase: %d; "
                     "gzip bytes per event sent: %s; console CPU by thread: %s; SQLite: %s" % (
                         fmt(ing["acked_events"]), fmt(ing["acked_batches"]), ing["bad_acks"],
                         ing["built_during_phase"], ing["prebuilt_gz_bytes_per_event"],
                         ing.get("console_cpu_by_role"), ing.get("db")))
        lines.append("")
        lines.append("Console threads, seconds on a CPU / runnable waiting for a CPU / blocked (I/O or no work) "
                     "over the %.1f s phase: %s" % (ing["wall_s"], "; ".join(
                         "%s (%d): %.1f / %.1f / %.1f" % (k, v["threads"], v["run_s"], v["runq_wait_s"], v["blocked_s"])
                         for k, v in sorted(ing.get("console_sched_by_role", {}).items()))))
        if ing.get("perf"):
            lines.append("")
            lines.append("perf, console during the phase, by library: " + "; ".join(
                "%s %s" % (p, n) for p, n in ing["perf"]["by_library"][:10]))
            lines.append("top functions: " + "; ".join("%s %s" % (p, n) for p, n in ing["perf"]["by_function"][:15]))
    ck = res.get("checkins")
    if ck:
        lines += ["", "### Check-ins (%s agents enrolled)" % fmt(res["checkin_agents"]), "",
                  "| phase | connections | target/s | achieved/s | check-ins | console CPU ms per check-in "
                  "(net of idle) | agents per core at 1/min (net) | p50 ms | p99 ms | sent >0.1 s late / not sent "
                  "| errors | generator CPU s | other CPU s | load before -> after |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for c in ck:
            lines.append("| %s | %s | %s | %s | %s | %s (%s) | %s (%s) | %s | %s | %s / %s | %s | %.1f | %.1f | %s -> %s |" % (
                c["label"], c["mode"], fmt(c["target_per_s"], 1), fmt(c["per_s"], 1), fmt(c["checkins"]),
                fmt(c["console_cpu_ms_per_checkin"], 3), fmt(c.get("console_cpu_ms_per_checkin_net"), 3),
                fmt(c["agents_per_core_at_1_per_min"]), fmt(c.get("agents_per_core_at_1_per_min_net")),
                fmt(c["latency_ms_p50"], 2), fmt(c["latency_ms_p99"], 2),
                fmt(c["late_sends"]) if c["target_per_s"] else "-", fmt(c["unsent"]) if c["target_per_s"] else "-",
                ", ".join("%s: %d" % kv for kv in sorted(c["errors"].items())) or "none",
                c["generator_cpu_s"], c["other_cpu_s"], c["loadavg_before"], c["loadavg_after"]))
        lines.append("")
        for c in ck:
            if c.get("perf"):
                lines.append("")
                lines.append("perf, console during %s %s, by library: %s" % (c["label"], c["mode"], "; ".join(
                    "%s %s" % (p, n) for p, n in c["perf"]["by_library"][:10])))
                lines.append("top functions: " + "; ".join("%s %s" % (p, n) for p, n in c["perf"]["by_function"][:12]))
        lines.append("")
        lines.append("Console threads per phase, seconds on a CPU / runnable waiting / blocked: " + "; ".join(
            "%s %s: %s" % (c["label"], c["mode"], ", ".join(
                "%s %.1f/%.1f/%.1f" % (k, v["run_s"], v["runq_wait_s"], v["blocked_s"])
                for k, v in sorted(c.get("console_sched_by_role", {}).items()))) for c in ck))
    return "\n".join(lines)


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=None)
    ap.add_argument("--agents", type=int, default=200, help="agents sending events (default 200)")
    ap.add_argument("--procs", type=int, default=4, help="worker processes (default 4)")
    ap.add_argument("--conns", type=int, default=8, help="ingest: connections per process (default 8)")
    ap.add_argument("--batch", type=int, default=1000, help="events per batch (default 1000)")
    ap.add_argument("--seconds", type=float, default=30, help="ingest: timed phase (default 30 s)")
    ap.add_argument("--ingest-rate", type=float, default=0,
                    help="ingest: send at this many events/s on a fixed schedule (open loop; default 0: "
                         "closed loop, each connection sends its next batch when the answer is in)")
    ap.add_argument("--expect-rate", type=float, default=40000,
                    help="ingest: events/s to build batches for before the timed phase (default 40,000; "
                         "more are built during the phase when they run out, and reported)")
    ap.add_argument("--prebuild-events", type=int, default=0, help="ingest: events to build first (overrides "
                    "--expect-rate x --seconds)")
    ap.add_argument("--checkin-agents", type=int, default=10000, help="agents enrolled for check-ins "
                    "(default 10,000; 0 skips the check-in test)")
    ap.add_argument("--checkin-interval", type=float, default=60, help="seconds between an agent's check-ins "
                    "(default 60)")
    ap.add_argument("--checkin-rates", default="1,2,5", help="multiples of agents/interval (default 1,2,5)")
    ap.add_argument("--checkin-modes", default="reuse,new", help="reuse (persistent connections) and/or new "
                    "(a TLS connection per check-in) (default reuse,new)")
    ap.add_argument("--checkin-seconds", type=float, default=30, help="each check-in phase (default 30 s)")
    ap.add_argument("--checkin-conns", type=int, default=16, help="check-ins: connections (threads) per "
                    "process (default 16)")
    ap.add_argument("--enroll-conns", type=int, default=8, help="enrollment: connections per process (default 8)")
    ap.add_argument("--no-ingest", action="store_true", help="skip the ingest test")
    ap.add_argument("--idle-seconds", type=float, default=10,
                    help="console CPU measured idle for this long first (default 10 s; subtracted in the "
                         "check-in figures marked net)")
    ap.add_argument("--rate-per-ip", type=int, default=1000000,
                    help="the console's per-address request limit (default 1,000,000: every simulated agent "
                         "is 127.0.0.1; 0 keeps the console's default of 200/s)")
    ap.add_argument("--console", default=os.path.join(BUILD_DIR, "console", "yamori-console"),
                    help="the console binary (default $YAMORI_BUILD_DIR/console/yamori-console)")
    ap.add_argument("--port", type=int, default=0, help="console port (default: a free one)")
    ap.add_argument("--parent", default="/var/tmp", help="where the temporary directory is made (default /var/tmp)")
    ap.add_argument("--perf", action="store_true", help="profile the console during the ingest and paced check-in phases with perf")
    ap.add_argument("--seed", type=int, default=1, help="random seed of the event contents")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", help="write the results as JSON to this file")
    args = ap.parse_args()

    if not os.access(args.console, os.X_OK):
        log("no console binary at %s (build first: scripts/build.sh)" % args.console)
        return 1
    rates = [float(x) for x in args.checkin_rates.split(",") if x.strip()]
    modes = [m.strip() for m in args.checkin_modes.split(",") if m.strip()]
    if any(m not in ("reuse", "new") for m in modes):
        log("--checkin-modes takes reuse and/or new")
        return 1

    def on_signal(signum, frame):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, on_signal)
    workdir = tempfile.mkdtemp(prefix="yamori-ingest-load-", dir=args.parent)
    args.workdir = workdir
    con = None
    rc = 1
    try:
        if not args.port:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            args.port = s.getsockname()[1]
            s.close()
        con = Console(args.console, workdir, args.port, args.rate_per_ip)
        con.start()
        # Threads that exist once the console listens: the loop (the main
        # thread) and the database thread; libuv's pool starts on first use.
        named = {tid: "database" for tid in thread_cpu(con.p.pid) if tid != con.p.pid}
        log("console pid %d, threads at start: %s" % (con.p.pid, sorted(thread_cpu(con.p.pid))))
        con.cli("tenant", "add", "acme")
        token = con.cli("token", "create", "--tenant", "acme", "--max-uses", "0").strip().splitlines()[-1]
        tok = decode_token(token)["tok"]
        res = {"machine": machine_info(), "rate_per_ip": args.rate_per_ip, "console": args.console,
               "port": args.port, "parent": args.parent, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "loadavg_start": loadavg(), "other_yamori": other_yamori({con.p.pid, os.getpid()})}
        try:
            res["git_head"] = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                             capture_output=True, text=True).stdout.strip()
        except OSError:
            pass
        window = Window(con.p.pid, None)
        # One batch from an agent of its own before anything is measured:
        # libuv starts its pool threads on first use (and perf follows only
        # the threads that exist when it attaches).
        (warm,), _ = enroll_many(con, tok, "warmup", 1, 1, 1, window)
        body = Sim(warm[0], 0, 7, time.time() - 7200).batch(args.batch)[0]
        st, _, data = Client(con.port, client_context()).request(
            "/api/v1/events", body, {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip",
                                     "Authorization": "Bearer %s.%s" % warm})
        if st != 200:
            raise RuntimeError("warm-up batch refused: %s %s" % (st, data[:200]))
        log("console threads after the warm-up batch: %s" % sorted(thread_cpu(con.p.pid)))
        if args.idle_seconds > 0:
            log("console idle for %g s" % args.idle_seconds)
            window.start()
            time.sleep(args.idle_seconds)
            res["console_idle"] = window.stop(0.0)
            res["console_idle_cpu_per_s"] = round(res["console_idle"]["console_cpu_s"] /
                                                  res["console_idle"]["wall_s"], 4)
        else:
            res["console_idle_cpu_per_s"] = 0.0
        if not args.no_ingest and args.agents > 0:
            log("enrolling %d agents" % args.agents)
            agents, res["enroll_ingest"] = enroll_many(con, tok, "sim", args.agents, args.procs,
                                                       args.enroll_conns, window)
            ing = run_ingest(con, agents, args, window)
            ing["console_cpu_by_role"] = thread_split(ing, con.p.pid, named)
            ing["console_sched_by_role"] = sched_split(ing, con.p.pid, named)
            res["ingest"] = ing
            log("ingest: %s events/s acknowledged, %s per console CPU second" % (
                fmt(ing["events_per_s"]), fmt(ing["events_per_console_cpu_s"])))
        if args.checkin_agents > 0:
            log("enrolling %d agents for the check-ins" % args.checkin_agents)
            cagents, res["enroll_checkin"] = enroll_many(con, tok, "ck", args.checkin_agents, args.procs,
                                                         args.enroll_conns, window)
            res["checkin_agents"] = len(cagents)
            random.Random(args.seed).shuffle(cagents)
            ck = []
            log("check-ins: cold pass (each agent once, as fast as answered)")
            c = run_checkins(con, cagents, 0, 0, "reuse", args, window, "cold pass")
            ck.append(c)
            base = len(cagents) / args.checkin_interval
            for m in rates:
                for mode in modes:
                    log("check-ins: %gx (%.0f/s), %s connections, %g s" % (m, base * m, mode,
                                                                            args.checkin_seconds))
                    ck.append(run_checkins(con, cagents, base * m, args.checkin_seconds, mode, args,
                                           window, "%gx" % m))
            idle = res["console_idle_cpu_per_s"]
            for c in ck:
                c["console_cpu_by_role"] = thread_split(c, con.p.pid, named)
                c["console_sched_by_role"] = sched_split(c, con.p.pid, named)
                net = c["console_cpu_s"] - idle * c["wall_s"]
                if c["checkins"]:
                    c["console_cpu_ms_per_checkin_net"] = round(1000 * net / c["checkins"], 3)
                    c["agents_per_core_at_1_per_min_net"] = int(60 * c["checkins"] / net) if net > 0 else None
            res["checkins"] = ck
        res["loadavg_end"] = loadavg()
        res["console_stderr_tail"] = con.stderr_tail(1000)
        res["console_exit"] = con.stop()
        if "ingest" in res:
            # After the console has closed the database (WAL checkpointed).
            res["ingest"]["db"] = db_figures(con.data, warm[0])
        print(report(res), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)
        rc = 0
    except KeyboardInterrupt:
        log("interrupted")
    except Exception as e:
        log("failed: %s" % e)
        if con is not None:
            log("console stderr: " + con.stderr_tail())
    finally:
        for p in mp.active_children():
            p.terminate()
            p.join(5)
        if con is not None:
            st = con.stop()
            if st not in (0, None):
                log("the console exited with status %s" % st)
        if args.keep:
            log("kept " + workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
