#!/usr/bin/env python3
"""Wire bytes per event and the agent's CPU for uploads, with the real agent.

Starts a private yamori-console and a real yamorid enrolled to it
(`YAMORI_TOKEN=... yamorictl --config CONF enroll`), with the safe policies
(exec "off", file "detect", no scan on write: the agent watches the whole
machine and must not act on other people's files), no NDJSON output, and
exclude.paths/exclude.executables for the console's data directory and the
programs this benchmark runs to measure (the console, yamorictl, ss), so
that measuring does not make events. A workload makes --events events
(default 10,000) in a fresh directory under --parent (default /var/tmp):
70% file events (each file: created and written (creation, modification),
renamed, deleted; names, extensions and sizes of office, source and cache
files) and 30% process events (program starts of coreutils and the like:
exec and end). Scenarios (--scenarios, default live,backlog):

  live     the console is up: the agent uploads while the workload runs
           (batches as the spool makes them: at most 2,000 events or 1 MiB,
           or every spool.bulk_flush_ms, 2 s). --rate paces the workload
           (events/s; default 0: as fast as it goes).
  backlog  the console is stopped (SIGTERM) while the workload runs, so the
           events wait in the spool, then started again on the same port
           and data directory: the agent sends its backlog after its
           backoff. The upload window runs from the agent's first
           connection to the restarted console (ss, every 20 ms) until
           uplink_acked has grown by the backlog: it holds the upload (and
           whatever else the machine does meanwhile).

A scenario ends when `yamorictl --json status` shows counters.spool_pending
== 0 and the console's database holds every workload event (file events
under the workload directory, process events whose parent is this
benchmark).

Measured per scenario:

  wire     `ss -tinp` of the agent's TCP connections to the console port,
           sampled every 0.1 s: bytes_acked (agent -> console) and
           bytes_received (console -> agent) since the start of the window
           (connections opened during it count from 0, TLS handshake
           included): TCP payload, that is TLS records with HTTP/2 frames and
           headers inside. The TCP/IP headers are estimated for Ethernet
           (52 bytes per 1,448-byte segment, one ACK per two segments).
  payload  the spool's record sizes (48-byte record header, then the gzip
           payload that the uplink sends after a gzip'd one-line header):
           every segment file that appears is opened at once (inotify via
           ctypes), so records whose segment is deleted after the ack are
           still read; the header member is rebuilt exactly (zlib level 6).
  CPU      CPU time of yamorid (the sum of its threads' schedstat run time,
           nanoseconds; utime+stime ticks are too coarse) over the window, per
           10,000 events uploaded: gross, and net of the agent's CPU rate
           measured idle (--idle-seconds, default 30, console up, no
           workload) for the same duration. "live" is everything the agent
           does for those events (sensing, spooling, upload); "backlog" is
           the upload.
  batches  the bulk events the console stored for the agent, as received,
           re-compressed in batches of 1 to 2,000 events (gzip level 6 and
           the header member), plus the wire overhead per request measured:
           bytes per event as a function of batch size.

All events uploaded in a window count: the agent also reports what other
processes on the machine do. A window starts and ends at a quiet moment
(no bytes between agent and console and nothing new in the database for
0.3 s), and its events are those of the spool records made during it that
the console has committed (the highest stored sequence number per stream),
so that bytes and events are of the same requests. The split (workload /
other) is read from the console's database and reported, and so is the
load average.

This is a benchmark, not a test: it never fails on a figure. It exits 0 when
it ran, 1 when it could not; it stops the agent and the console and removes
its temporary directory (unless --keep) on every exit path.

    sudo bench/wire_bytes.py --events 10000 --json wire_bytes.json
"""

import argparse
import ctypes
import json
import os
import platform
import random
import select
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

from benchlib import BUILD_DIR, CLK_TCK, REPO, fmt, loadavg

REC_HDR = 48


def log(msg):
    print("[wire_bytes] " + msg, file=sys.stderr, flush=True)


def cpu_seconds(pid):
    """CPU time of a process in seconds: the sum of its threads' run time
    from /proc/PID/task/TID/schedstat (nanoseconds; the upload windows are
    too short for the 10 ms ticks of utime+stime), or utime+stime of
    /proc/PID/stat when schedstat is missing."""
    total, ok = 0, False
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                    total += int(f.read().split()[0])
                    ok = True
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        pass
    if ok:
        return total / 1e9
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def machine_info():
    info = {"nproc": os.cpu_count(), "kernel": platform.release()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/etc/debian_version") as f:
            info["debian"] = f.read().strip()
    except OSError:
        pass
    return info


def other_yamori(own):
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


def stop_proc(p, timeout=15):
    if p is None or p.poll() is not None:
        return None if p is None else p.returncode
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    return p.returncode


# ---------------------------------------------------------------------------
# Wire bytes: ss -tinp


def ss_sample(port, pid):
    """{local port: {bytes_acked, bytes_received, segs_out, segs_in}} of the
    agent's TCP connections to the console port."""
    r = subprocess.run(["ss", "-tinpH", "state", "all", "( dport = :%d )" % port], capture_output=True,
                       text=True)
    out = {}
    key = None
    for line in r.stdout.splitlines():
        if line and not line[0].isspace():
            f = line.split()
            key = None
            if "pid=%d," % pid not in line:
                continue
            # State Recv-Q Send-Q Local:Port Peer:Port [process]
            local = [x for x in f if x.count(":") >= 1 and x[0].isdigit() or x.startswith("[")]
            if local:
                key = local[0].rsplit(":", 1)[1]
            continue
        if key is None:
            continue
        vals = {}
        for tok in line.split():
            if ":" in tok:
                k, v = tok.split(":", 1)
                if k in ("bytes_acked", "bytes_received", "segs_out", "segs_in", "bytes_sent",
                         "bytes_retrans"):
                    try:
                        vals[k] = int(v)
                    except ValueError:
                        pass
        d = out.setdefault(key, {})
        d.update(vals)
    return out


class WireMeter:
    """Samples ss in a thread; totals per connection since start()."""

    def __init__(self, port, pid_fn, interval=0.1):
        self.port = port
        self.pid_fn = pid_fn
        self.interval = interval

    def start(self):
        self.base = ss_sample(self.port, self.pid_fn())
        self.last = {}
        self.closed = set()
        self.samples = 0
        self._stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _sample(self):
        s = ss_sample(self.port, self.pid_fn())
        self.samples += 1
        for k in self.last:
            if k not in s:
                self.closed.add(k)
        for k, v in s.items():
            self.last[k] = v

    def _run(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def stop(self):
        self._stop.set()
        self.t.join()
        self._sample()
        tot = {"bytes_out": 0, "bytes_in": 0, "segs_out": 0, "segs_in": 0, "retrans": 0}
        for k, v in self.last.items():
            b = self.base.get(k, {})
            tot["bytes_out"] += v.get("bytes_acked", 0) - b.get("bytes_acked", 0)
            tot["bytes_in"] += v.get("bytes_received", 0) - b.get("bytes_received", 0)
            tot["segs_out"] += v.get("segs_out", 0) - b.get("segs_out", 0)
            tot["segs_in"] += v.get("segs_in", 0) - b.get("segs_in", 0)
            tot["retrans"] += v.get("bytes_retrans", 0) - b.get("bytes_retrans", 0)
        tot["connections"] = len(self.last)
        tot["connections_new"] = len([k for k in self.last if k not in self.base])
        tot["connections_closed_during"] = len(self.closed)
        tot["samples"] = self.samples
        # Ethernet estimate: 52 bytes of IPv4+TCP (timestamps) headers per
        # segment of at most 1,448 bytes, and a pure ACK per two segments
        # the other way.
        seg_out = -(-tot["bytes_out"] // 1448)
        seg_in = -(-tot["bytes_in"] // 1448)
        tot["ethernet_headers_est"] = 52 * (seg_out + seg_in + (seg_out + seg_in + 1) // 2)
        return tot


# ---------------------------------------------------------------------------
# Spool records (docs/spool.md), read through inotify so that segments
# deleted after the ack are still read.

IN_CREATE, IN_MOVED_TO, IN_NONBLOCK, IN_CLOEXEC = 0x100, 0x80, 0o4000, 0o2000000


class SpoolWatch:
    def __init__(self, spool_dir):
        self.dirs = [os.path.join(spool_dir, s) for s in ("alerts", "bulk")]
        self.libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fds = {}  # path -> fd (kept open: the agent may unlink)
        self.base = set()

    def start(self):
        self.ifd = self.libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.ifd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.wds = {}
        for d in self.dirs:
            os.makedirs(d, exist_ok=True)
            wd = self.libc.inotify_add_watch(self.ifd, d.encode(), IN_CREATE | IN_MOVED_TO)
            if wd < 0:
                raise OSError(ctypes.get_errno(), "inotify_add_watch " + d)
            self.wds[wd] = d
        # Records already there belong to before: remembered, not counted.
        for d in self.dirs:
            for n in os.listdir(d):
                if n.endswith(".seg"):
                    self._open(os.path.join(d, n))
        self.base = set(self.records().keys())
        self._stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _open(self, path):
        if path in self.fds:
            return
        try:
            self.fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self.missed = getattr(self, "missed", 0) + 1

    def _run(self):
        while not self._stop.is_set():
            r, _, _ = select.select([self.ifd], [], [], 0.1)
            if not r:
                continue
            try:
                data = os.read(self.ifd, 65536)
            except BlockingIOError:
                continue
            off = 0
            while off + 16 <= len(data):
                wd, mask, cookie, ln = struct.unpack_from("iIII", data, off)
                name = data[off + 16:off + 16 + ln].split(b"\0", 1)[0].decode()
                off += 16 + ln
                if name.endswith(".seg") and wd in self.wds:
                    self._open(os.path.join(self.wds[wd], name))

    def records(self):
        """{(stream, first_seq): (count, compressed size, last_seq)} of every
        well-formed record in the segments opened."""
        out = {}
        for path, fd in list(self.fds.items()):
            data = os.pread(fd, 1 << 30, 0)
            off = 0
            while off + REC_HDR <= len(data):
                (magic, ver, stream, first, last, count, usize, csize, crc, _r, hcrc) = struct.unpack_from(
                    "<4sHHQQIIIIII", data, off)
                if magic != b"YMB1" or off + REC_HDR + csize > len(data):
                    break
                out[("alerts" if stream == 0 else "bulk", first)] = (count, csize, last, usize)
                off += REC_HDR + csize
        return out

    def rebase(self):
        self.base = set(self.records().keys())

    def stop(self):
        self._stop.set()
        self.t.join()
        recs = {k: v for k, v in self.records().items() if k not in self.base}
        for fd in self.fds.values():
            os.close(fd)
        os.close(self.ifd)
        self.fds = {}
        return recs


def header_member_len(agent_id, stream, first, last, count):
    hdr = '{"agent_id":"%s","stream":"%s","first_seq":%d,"last_seq":%d,"count":%d}\n' % (
        agent_id, stream, first, last, count)
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    return len(z.compress(hdr.encode()) + z.flush())


def payload_figures(recs, agent_id):
    events = sum(v[0] for v in recs.values())
    gz = sum(v[1] for v in recs.values())
    raw = sum(v[3] for v in recs.values())
    hdr = sum(header_member_len(agent_id, s, f, v[2], v[0]) for (s, f), v in recs.items())
    counts = sorted(v[0] for v in recs.values())
    return {"records": len(recs), "events": events, "gzip_bytes": gz, "header_member_bytes": hdr,
            "body_bytes": gz + hdr, "raw_bytes": raw,
            "raw_bytes_per_event": round(raw / events, 1) if events else None,
            "body_bytes_per_event": round((gz + hdr) / events, 2) if events else None,
            "compression_ratio": round(raw / gz, 2) if gz else None,
            "events_per_record_median": counts[len(counts) // 2] if counts else None,
            "events_per_record_max": counts[-1] if counts else None}


# ---------------------------------------------------------------------------
# Workload

WORDS = ["report", "invoice", "budget", "notes", "main", "utils", "index", "config", "draft", "photo",
         "meeting", "summary", "backup", "client", "server", "module", "readme", "data", "export",
         "schema", "handler", "contract", "offer", "letter", "minutes", "slides"]
EXTS = ["txt", "docx", "xlsx", "pdf", "c", "h", "o", "py", "json", "log", "md", "csv", "odt", "png"]
SUBDIRS = ["Documents", "Downloads", "projects/webshop/src", "projects/webshop/build",
           ".cache/thumbnails/normal", "Desktop"]
PROGRAMS = [["/usr/bin/true"], ["/usr/bin/ls", "-la", "."], ["/usr/bin/cat", "/etc/hostname"],
            ["/usr/bin/basename", "/var/tmp/report.txt"], ["/usr/bin/date", "+%s"],
            ["/usr/bin/uname", "-a"], ["/usr/bin/id", "-u"], ["/usr/bin/sleep", "0"],
            ["/usr/bin/wc", "-l", "/etc/passwd"], ["/usr/bin/grep", "-c", "root", "/etc/passwd"]]


def run_workload(work, n_events, rate, seed):
    """Makes about n_events events: 70% file (4 per file), 30% process
    (2 per start), interleaved. Returns (files, starts, expected events,
    seconds)."""
    rng = random.Random(seed)
    files = int(round(n_events * 0.7 / 4))
    starts = int(round(n_events * 0.3 / 2))
    for d in SUBDIRS:
        os.makedirs(os.path.join(work, d), exist_ok=True)
    time.sleep(0.5)  # the directories' own creation events are not part of the count
    plan = ["f"] * files + ["p"] * starts
    rng.shuffle(plan)
    t0 = time.monotonic()
    done_events = 0
    for i, what in enumerate(plan):
        if what == "f":
            d = os.path.join(work, rng.choice(SUBDIRS))
            ext = rng.choice(EXTS)
            name = "%s_%d.%s" % (rng.choice(WORDS), i, ext)
            p = os.path.join(d, name)
            fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
            os.write(fd, os.urandom(64) * rng.randrange(1, 64))
            os.close(fd)
            q = os.path.join(d, "%s_%d_v2.%s" % (rng.choice(WORDS), i, ext))
            os.rename(p, q)
            os.unlink(q)
            done_events += 4
        else:
            subprocess.run(rng.choice(PROGRAMS), cwd=work, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            done_events += 2
        if rate > 0:
            due = t0 + done_events / rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
    return files, starts, files * 4 + starts * 2, time.monotonic() - t0


# ---------------------------------------------------------------------------
# The console and the agent


class Console:
    def __init__(self, binary, workdir, port):
        self.binary = binary
        self.workdir = workdir
        self.data = os.path.join(workdir, "console-data")
        self.port = port
        self.p = None
        self.starts = 0

    def cli(self, *args):
        r = subprocess.run([self.binary, "--data-dir", self.data] + list(args), capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError("yamori-console %s: %s" % (" ".join(args), r.stderr.strip()))
        return r.stdout

    def start(self):
        self.starts += 1
        out = os.path.join(self.workdir, "console%d.out" % self.starts)
        self.err_path = os.path.join(self.workdir, "console%d.err" % self.starts)
        with open(out, "wb") as fo, open(self.err_path, "wb") as fe:
            self.p = subprocess.Popen([self.binary, "--data-dir", self.data, "--listen",
                                       "127.0.0.1:%d" % self.port, "serve"], stdout=fo, stderr=fe,
                                      stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(out, "rb") as f:
                if b"console listening" in f.read():
                    return
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("the console did not start: " + self.tail())

    def tail(self):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-2000:]
        except OSError:
            return ""

    def stop(self):
        rc = stop_proc(self.p)
        self.p = None
        return rc


class Agent:
    def __init__(self, yamorid, yamorictl, workdir, conf):
        self.yamorid = yamorid
        self.yamorictl = yamorictl
        self.conf_path = os.path.join(workdir, "agent.json")
        with open(self.conf_path, "w") as f:
            json.dump(conf, f, indent=1)
        self.err_path = os.path.join(workdir, "agent.err")
        self.conf = conf
        self.p = None

    def start(self):
        with open(self.err_path, "ab") as fe:
            self.p = subprocess.Popen([self.yamorid, "--config", self.conf_path], stdout=subprocess.DEVNULL,
                                      stderr=fe, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if "sensors armed" in self.tail(1 << 20):
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("the agent did not arm: " + self.tail())

    def tail(self, n=2000):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-n:]
        except OSError:
            return ""

    def ctl(self, *args, env=None):
        return subprocess.run([self.yamorictl, "--config", self.conf_path] + list(args), capture_output=True,
                              text=True, timeout=60, env=env)

    def status(self):
        if self.p is None or self.p.poll() is not None:
            raise RuntimeError("the agent exited: " + self.tail())
        r = self.ctl("--json", "status")
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout.splitlines()[0])
        except (ValueError, IndexError):
            return None

    def counters(self):
        s = self.status()
        return s.get("counters", {}) if s else {}

    def stop(self):
        rc = stop_proc(self.p)
        self.p = None
        return rc


def wait_for(fn, timeout, interval=0.5, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    raise RuntimeError("timed out after %.0f s waiting for %s" % (timeout, what))


def workload_in_db(con, agent_id, work, parent_pid):
    """(workload events, other events) the console has stored for the agent,
    by dataset."""
    c = sqlite3.connect("file:%s/yamori.db?mode=ro" % con.data, uri=True, timeout=30)
    ours, other = {}, {}
    try:
        for ds, js in c.execute("SELECT dataset, json FROM events WHERE agent_id = ?", (agent_id,)):
            e = json.loads(js)
            f = e.get("file", {})
            p = e.get("process", {})
            mine = False
            if ds == "yamori.file":
                mine = str(f.get("path", "")).startswith(work + "/")
            elif ds == "yamori.process":
                mine = p.get("parent", {}).get("pid") == parent_pid
            d = ours if mine else other
            d[ds] = d.get(ds, 0) + 1
    finally:
        c.close()
    return ours, other


# ---------------------------------------------------------------------------


def db_max_seq(con, agent_id):
    """{stream: highest sequence number stored} for the agent."""
    c = sqlite3.connect("file:%s/yamori.db?mode=ro" % con.data, uri=True, timeout=30)
    try:
        return dict(c.execute("SELECT stream, max(seq) FROM events WHERE agent_id = ? GROUP BY stream",
                              (agent_id,)).fetchall())
    finally:
        c.close()


def settle(con, ag, agent_id, spool, quiet=0.3, timeout=30):
    """Waits for a moment when nothing is in flight between the agent and
    the console: every spool record seen is committed (its last sequence
    number is in the database) and no bytes moved on the agent's
    connections for quiet seconds, so that a window does not cut a request
    in two. Returns False when there was none within timeout (other
    activity never stopped)."""
    def state():
        b = sum(v.get("bytes_acked", 0) + v.get("bytes_received", 0)
                for v in ss_sample(con.port, ag.p.pid).values())
        top = db_max_seq(con, agent_id)
        pending = [k for k, v in spool.records().items() if v[2] > top.get(k[0], 0)]
        return b, sorted(top.items()), not pending
    deadline = time.monotonic() + timeout
    a = state()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        b = state()
        if a == b and b[2]:
            return True
        a = b
    return False


def classify_records(con, agent_id, recs, work, parent_pid):
    """(workload events, other events) by dataset, in the given records."""
    c = sqlite3.connect("file:%s/yamori.db?mode=ro" % con.data, uri=True, timeout=30)
    ours, other = {}, {}
    try:
        for (stream, first), v in recs.items():
            for ds, js in c.execute("SELECT dataset, json FROM events WHERE agent_id = ? AND stream = ? "
                                    "AND seq BETWEEN ? AND ?", (agent_id, stream, first, v[2])):
                e = json.loads(js)
                if ds == "yamori.file":
                    mine = str(e.get("file", {}).get("path", "")).startswith(work + "/")
                elif ds == "yamori.process":
                    mine = e.get("process", {}).get("parent", {}).get("pid") == parent_pid
                else:
                    mine = False
                d = ours if mine else other
                d[ds] = d.get(ds, 0) + 1
    finally:
        c.close()
    return ours, other


def scenario(name, args, con, ag, agent_id, workdir, idle_rate, seq):
    work = os.path.join(workdir, "work-%s" % name)
    os.makedirs(work)
    wire = WireMeter(con.port, lambda: ag.p.pid)
    spool = SpoolWatch(os.path.join(ag.conf["state_dir"], "spool"))
    before_db = workload_in_db(con, agent_id, work, os.getpid())
    spool.start()
    quiet_start = settle(con, ag, agent_id, spool)
    spool.rebase()  # records from before the window: all committed, not counted
    k0 = ag.counters()
    res = {"scenario": name, "loadavg_before": loadavg()}
    if name == "backlog":
        con.stop()
        time.sleep(1)
    cpu0 = cpu_seconds(ag.p.pid)
    t0 = time.monotonic()
    if name == "live":
        wire.start()
    files, starts, expected, wl_s = run_workload(work, args.events, args.rate if name == "live" else 0,
                                                 args.seed + seq)
    res.update({"files": files, "process_starts": starts, "workload_events_expected": expected,
                "workload_s": round(wl_s, 2)})
    if name == "backlog":
        # Everything accepted by the end of the workload is written to the
        # spool (bulk is flushed every 2 s; other activity keeps adding).
        q = ag.counters().get("spool_queued", 0)
        time.sleep(args.flush_wait)

        def written():
            k = ag.counters()
            return k and k.get("spool_spooled", 0) + k.get("spool_shed", 0) >= q
        wait_for(written, 60, what="spool written")
        t1 = time.monotonic()
        cpu1 = cpu_seconds(ag.p.pid)
        res["spool_phase"] = {"wall_s": round(t1 - t0, 2), "agent_cpu_s": round(cpu1 - cpu0, 3),
                              "agent_cpu_net_s": round(cpu1 - cpu0 - idle_rate * (t1 - t0), 3),
                              "note": "sensing and spooling with the console down (failed attempts included)"}
        k_mid = ag.counters()
        backlog = k_mid.get("spool_spooled", 0) - k_mid.get("spool_acked", 0)
        res["spool_phase"]["spool_pending_events"] = backlog
        acked_mid = k_mid.get("uplink_acked", 0)
        con.start()
        wire.start()  # no connection exists: every byte from here counts
        # The upload window starts when the agent connects (after its
        # backoff), so that it holds the upload and little else.
        t_start = time.monotonic()
        while not ss_sample(con.port, ag.p.pid) and time.monotonic() - t_start < args.timeout:
            time.sleep(0.02)
        cpu0 = cpu_seconds(ag.p.pid)
        t0 = time.monotonic()
        res["backoff_wait_s"] = round(t0 - t_start, 2)
        # ... and ends when the backlog is acknowledged.
        try:
            wait_for(lambda: ag.counters().get("uplink_acked", 0) - acked_mid >= backlog, args.timeout,
                     interval=0.1, what="the backlog acknowledged")
        except RuntimeError as e:
            res["warning"] = str(e)
        t_ack = time.monotonic()
        cpu_ack = cpu_seconds(ag.p.pid)
        k_ack = ag.counters()

    def drained():
        k = ag.counters()
        if k.get("spool_pending", 1) != 0:
            return False
        ours, _ = workload_in_db(con, agent_id, work, os.getpid())
        return sum(ours.values()) - sum(before_db[0].values()) >= expected

    try:
        wait_for(drained, args.timeout, what="the workload's events in the console and the spool drained")
    except RuntimeError as e:
        res["warning"] = str(e)
    t1 = time.monotonic()
    cpu1 = cpu_seconds(ag.p.pid)
    quiet_end = settle(con, ag, agent_id, spool)
    k1 = ag.counters()
    w = wire.stop()
    maxseq = db_max_seq(con, agent_id)
    recs = spool.stop()
    # Only records the console has committed: the figures hold the same
    # events on both sides.
    recs = {k: v for k, v in recs.items() if v[2] <= maxseq.get(k[0], 0)}
    res["quiet_at_start_and_end"] = [quiet_start, quiet_end]
    if name == "backlog":
        # CPU over the upload window only (the workload check above reads
        # the database, outside it).
        t1, cpu1 = t_ack, cpu_ack
        k0 = dict(k0, uplink_acked=acked_mid)
        res["events_uploaded_in_cpu_window"] = k_ack.get("uplink_acked", 0) - acked_mid
    ours, other_new = classify_records(con, agent_id, recs, work, os.getpid())
    sent = k1.get("uplink_sent", 0) - k0.get("uplink_sent", 0)
    wall = t1 - t0
    cpu = cpu1 - cpu0
    net = cpu - idle_rate * wall
    pay = payload_figures(recs, agent_id)
    acked = pay["events"]
    cpu_events = res.get("events_uploaded_in_cpu_window",
                         k1.get("uplink_acked", 0) - k0.get("uplink_acked", 0))
    res.update({
        "upload_window_s": round(wall, 2), "events_uploaded": acked, "requests": sent,
        "uplink_acked_delta": k1.get("uplink_acked", 0) - k0.get("uplink_acked", 0),
        "checkins": k1.get("uplink_checkins", 0) - k0.get("uplink_checkins", 0),
        "retries": k1.get("uplink_retries", 0) - k0.get("uplink_retries", 0),
        "workload_events_stored": ours, "other_events_stored": {k: v for k, v in other_new.items() if v},
        "wire": w, "payload": pay,
        "payload_coverage": "%d events in %d committed records read; uplink_acked grew by %d" % (
            pay["events"], pay["records"], k1.get("uplink_acked", 0) - k0.get("uplink_acked", 0)),
        "wire_bytes_per_event": round((w["bytes_out"] + w["bytes_in"]) / acked, 2) if acked else None,
        "wire_bytes_out_per_event": round(w["bytes_out"] / acked, 2) if acked else None,
        "wire_bytes_per_event_with_ethernet_headers": round(
            (w["bytes_out"] + w["bytes_in"] + w["ethernet_headers_est"]) / acked, 2) if acked else None,
        # Requests that reached the console: one per record (no 413 split
        # happened unless uplink_sent says more) and the check-ins;
        # uplink_sent also counts attempts that found no console.
        "requests_delivered": pay["records"] + k1.get("uplink_checkins", 0) - k0.get("uplink_checkins", 0),
        "overhead_bytes_per_request": round((w["bytes_out"] + w["bytes_in"] - pay["body_bytes"]) /
                                            (pay["records"] + k1.get("uplink_checkins", 0) -
                                             k0.get("uplink_checkins", 0)), 1) if pay["records"] else None,
        "agent_cpu_s": round(cpu, 3), "agent_cpu_net_s": round(net, 3),
        "agent_cpu_s_per_10k_events": round(10000 * net / cpu_events, 3) if cpu_events else None,
        "agent_cpu_s_per_10k_events_gross": round(10000 * cpu / cpu_events, 3) if cpu_events else None,
        "by_batch_size": batch_size_table(con, agent_id, w, pay["records"] + k1.get("uplink_checkins", 0) -
                                          k0.get("uplink_checkins", 0), pay),
        "loadavg_after": loadavg()})
    return res


def batch_size_table(con, agent_id, wire, requests, pay, sizes=(1, 10, 50, 100, 500, 1000, 2000)):
    """Body bytes per event if the bulk events the console stored for the
    agent (as received, in sequence order) had been sent in batches of n:
    gzip level 6 of n lines plus the header member, and the same plus the
    measured wire overhead per request (TLS, HTTP/2, acknowledgement)."""
    c = sqlite3.connect("file:%s/yamori.db?mode=ro" % con.data, uri=True, timeout=30)
    try:
        lines = [js.encode() for (js,) in c.execute(
            "SELECT json FROM events WHERE agent_id = ? AND stream = 'bulk' ORDER BY seq", (agent_id,))]
    finally:
        c.close()
    lines = lines[-20000:]
    per_req = None
    if requests and pay["events"]:
        per_req = (wire["bytes_out"] + wire["bytes_in"] - pay["body_bytes"]) / requests
    out = []
    for n in sizes:
        if n > len(lines):
            break
        total = events = 0
        for i in range(0, len(lines) - n + 1, n):
            z = zlib.compressobj(6, zlib.DEFLATED, 31)
            body = z.compress(b"\n".join(lines[i:i + n]) + b"\n") + z.flush()
            total += len(body) + header_member_len(agent_id, "bulk", 100001 + i, 100000 + i + n, n)
            events += n
            if events >= 20000:
                break
        row = {"batch": n, "body_bytes_per_event": round(total / events, 1)}
        if per_req is not None:
            row["wire_bytes_per_event"] = round((total + per_req * events / n) / events, 1)
        out.append(row)
    return out


def report(res):
    lines = []
    m = res["machine"]
    lines.append("Machine: %s, %s cores, kernel %s, Debian %s" % (m.get("cpu", "?"), m["nproc"], m["kernel"],
                                                                 m.get("debian", "?")))
    if res.get("other_yamori"):
        lines.append("Other Yamori processes running: " + ", ".join(res["other_yamori"]))
    for i in res["idle"]:
        lines.append("Agent idle (%s): %.2f CPU s in %.1f s (%.2f%% of a core), %s events uploaded meanwhile, "
                     "load %s -> %s" % (i["when"], i["agent_cpu_s"], i["wall_s"], 100 * i["cpu_per_s"],
                                        fmt(i["events_uploaded"]), i["loadavg_before"], i["loadavg_after"]))
    lines += ["", "| scenario | events uploaded (workload + other) | requests delivered (uplink_sent) "
              "| events per request (median) "
              "| wire bytes/event (out+in, TCP payload) | + Ethernet headers (est.) | gzip body bytes/event "
              "| raw JSON bytes/event | overhead bytes/request | agent CPU s per 10,000 events: gross (net of idle) "
              "| window s | load before -> after |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in res["scenarios"]:
        p = s["payload"]
        lines.append("| %s | %s (%s + %s) | %s | %s | %s | %s | %s | %s | %s | %s | %.1f | %s -> %s |" % (
            s["scenario"], fmt(s["events_uploaded"]), fmt(sum(s["workload_events_stored"].values())),
            fmt(sum(s["other_events_stored"].values())),
            "%s (%s)" % (fmt(s["requests_delivered"]), fmt(s["requests"])), fmt(p["events_per_record_median"]),
            fmt(s["wire_bytes_per_event"], 1), fmt(s["wire_bytes_per_event_with_ethernet_headers"], 1),
            fmt(p["body_bytes_per_event"], 1), fmt(p["raw_bytes_per_event"], 0),
            fmt(s["overhead_bytes_per_request"], 0), "%s (%s)" % (fmt(s["agent_cpu_s_per_10k_events_gross"], 3),
                                                                  fmt(s["agent_cpu_s_per_10k_events"], 3)),
            s["upload_window_s"], s["loadavg_before"], s["loadavg_after"]))
    last = res["scenarios"][-1] if res["scenarios"] else None
    if last and last.get("by_batch_size"):
        lines += ["", "Stored bulk events of the agent re-compressed in batches of n (body = gzip level 6 + "
                  "header member; wire adds the overhead per request measured in the %s scenario):" % last["scenario"],
                  "", "| events per batch | " + " | ".join(str(r["batch"]) for r in last["by_batch_size"]) + " |",
                  "|---|" + "---|" * len(last["by_batch_size"]),
                  "| body bytes/event | " + " | ".join(fmt(r["body_bytes_per_event"], 1)
                                                      for r in last["by_batch_size"]) + " |",
                  "| wire bytes/event | " + " | ".join(fmt(r.get("wire_bytes_per_event"), 1)
                                                      for r in last["by_batch_size"]) + " |"]
    lines.append("")
    for s in res["scenarios"]:
        lines.append("%s: wire %s; payload %s; %s" % (s["scenario"], s["wire"], s["payload"],
                                                     s["payload_coverage"]))
        if "spool_phase" in s:
            lines.append("%s: spool phase (console down) %s" % (s["scenario"], s["spool_phase"]))
        if s.get("warning"):
            lines.append("%s: WARNING %s" % (s["scenario"], s["warning"]))
        if (s.get("overhead_bytes_per_request") or 0) > 2000:
            lines.append("%s: the wire carried more than the records and check-ins explain (%s bytes per "
                         "request): a request was probably sent again (uplink_retries grew by %d, failed "
                         "connection attempts included); the wire figure includes it" % (
                             s["scenario"], fmt(s["overhead_bytes_per_request"], 0), s["retries"]))
    return "\n".join(lines)


def measure_idle(ag, seconds, when):
    k0 = ag.counters()
    l0 = loadavg()
    c0 = cpu_seconds(ag.p.pid)
    t0 = time.monotonic()
    time.sleep(seconds)
    c1 = cpu_seconds(ag.p.pid)
    t1 = time.monotonic()
    k1 = ag.counters()
    return {"when": when, "wall_s": round(t1 - t0, 2), "agent_cpu_s": round(c1 - c0, 3),
            "cpu_per_s": (c1 - c0) / (t1 - t0),
            "events_uploaded": k1.get("uplink_acked", 0) - k0.get("uplink_acked", 0),
            "loadavg_before": l0, "loadavg_after": loadavg()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10000, help="workload events per scenario (default 10,000)")
    ap.add_argument("--rate", type=float, default=0, help="live: workload events/s (default 0: unpaced)")
    ap.add_argument("--scenarios", default="live,backlog", help="live and/or backlog (default both)")
    ap.add_argument("--idle-seconds", type=float, default=30, help="agent idle baseline (default 30 s)")
    ap.add_argument("--flush-wait", type=float, default=3, help="backlog: wait after the workload (default 3 s)")
    ap.add_argument("--timeout", type=float, default=600, help="longest wait for a drained spool (default 600 s)")
    ap.add_argument("--build-dir", default=BUILD_DIR, help="build directory (default $YAMORI_BUILD_DIR or build)")
    ap.add_argument("--rules", default=os.path.join(REPO, "rules"), help="rules directory")
    ap.add_argument("--parent", default="/var/tmp", help="where the temporary directory is made (default /var/tmp)")
    ap.add_argument("--seed", type=int, default=1, help="random seed of the workload")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", help="write the results as JSON to this file")
    args = ap.parse_args()
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if any(s not in ("live", "backlog") for s in scenarios):
        log("--scenarios takes live and/or backlog")
        return 1
    if os.geteuid() != 0:
        log("needs root (the agent's sensors)")
        return 1
    binaries = {"console": os.path.join(args.build_dir, "console", "yamori-console"),
                "yamorid": os.path.join(args.build_dir, "agent", "yamorid"),
                "yamorictl": os.path.join(args.build_dir, "agent", "yamorictl")}
    for k, v in binaries.items():
        if not os.access(v, os.X_OK):
            log("no %s at %s (build first: scripts/build.sh)" % (k, v))
            return 1
    ss = shutil.which("ss")
    if ss is None:
        log("ss (iproute2) is needed")
        return 1

    def on_signal(signum, frame):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, on_signal)
    workdir = tempfile.mkdtemp(prefix="yamori-wire-", dir=args.parent)
    con = ag = None
    rc = 1
    try:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        con = Console(binaries["console"], workdir, port)
        con.start()
        con.cli("tenant", "add", "acme")
        token = con.cli("token", "create", "--tenant", "acme", "--max-uses", "0").strip().splitlines()[-1]
        conf = {"state_dir": os.path.join(workdir, "agent-state"), "output": "",
                "rules": {"dirs": [args.rules]}, "control": {"socket": os.path.join(workdir, "agent.sock")},
                "policy": {"exec": "off", "file": "detect"}, "scan": {"on_write": False},
                "exclude": {"paths": [con.data],
                            "executables": sorted({os.path.realpath(p) for p in
                                                   (binaries["console"], binaries["yamorictl"], ss)})}}
        ag = Agent(binaries["yamorid"], binaries["yamorictl"], workdir, conf)
        ag.start()
        r = ag.ctl("enroll", env=dict(os.environ, YAMORI_TOKEN=token))
        if r.returncode != 0:
            raise RuntimeError("yamorictl enroll failed: " + r.stderr.strip())
        with open(os.path.join(conf["state_dir"], "identity.json")) as f:
            agent_id = json.load(f)["agent_id"]
        wait_for(lambda: ag.counters().get("uplink_checkins", 0) >= 1 and ag.counters().get("spool_pending", 1) == 0,
                 120, what="first check-in")
        res = {"machine": machine_info(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "agent_conf": conf, "events": args.events, "rate": args.rate,
               "other_yamori": other_yamori({ag.p.pid, con.p.pid, os.getpid()}), "idle": [], "scenarios": []}
        log("agent %s enrolled; idle baseline %g s" % (agent_id, args.idle_seconds))
        res["idle"].append(measure_idle(ag, args.idle_seconds, "before"))
        idle_rate = res["idle"][0]["cpu_per_s"]
        for i, name in enumerate(scenarios):
            log("scenario %s: %d events" % (name, args.events))
            res["scenarios"].append(scenario(name, args, con, ag, agent_id, workdir, idle_rate, i))
        res["idle"].append(measure_idle(ag, args.idle_seconds, "after"))
        res["loadavg_end"] = loadavg()
        print(report(res), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)
        rc = 0
    except KeyboardInterrupt:
        log("interrupted")
    except Exception as e:
        log("failed: %s" % e)
        if ag is not None:
            log("agent stderr: " + ag.tail())
        if con is not None and con.p is not None:
            log("console stderr: " + con.tail())
    finally:
        if ag is not None:
            ag.stop()
        if con is not None:
            con.stop()
        if args.keep:
            log("kept " + workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
