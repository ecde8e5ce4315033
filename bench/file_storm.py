#!/usr/bin/env python3
"""File storm benchmark: what watching files costs a PC that works hard on them.

A small C workload (bench/storm.c, compiled on the fly with gcc -O2) creates,
writes 4 KiB to, closes and deletes N files, one after the other, in a fresh
directory on the root filesystem (under /var/tmp, not a tmpfs). It runs under
these configurations, interleaved round by round, R times each:

  baseline   nothing started by this benchmark is watching;
  agent      the Yamori agent (yamorid, both sensors on, NDJSON output to a
             file outside the storm directory);
  inotify    peer: `inotifywait -m -r DIR`, its output sent to a file;
  auditd     peer: auditd with the rule `auditctl -w DIR -p wa -k yamoribench`.

Reported per configuration (medians over the runs): workload wall time (as
measured by the C program around its loop) and its ratio to the baseline;
the workload's CPU time (user+system from wait4; less sensitive than the
wall time to other work on the machine, and it shows the cost a watcher adds
in the workload's own context) and its ratio;
what the watcher captured against what was expected; the watcher's CPU
seconds (utime+stime deltas from /proc/PID/stat, from just before the
workload until its output stopped growing) and its peak RSS (VmHWM).

Expected captures:
  agent    3 events per file (creation, modification, deletion) whose
           file.path is under the storm directory; gap records (event.action
           "gap") are counted with their yamori.gap.source/reason/count.
  inotify  5 lines per file (CREATE, OPEN, MODIFY, CLOSE_WRITE,CLOSE,
           DELETE); the CREATE/CLOSE_WRITE/DELETE lines alone are also
           counted so they compare with the agent's 3, and Q_OVERFLOW lines
           (the kernel queue overflowed) are counted.
  auditd   2 SYSCALL records with the key per file (the open with O_CREAT and
           the unlink; a path watch does not see write() or close()), read
           from the audit log; the kernel's "lost" counter delta is reported.

auditd: when no audit daemon runs, one is started for the benchmark
(`auditd -n -c CONFDIR`) with a private configuration that logs to the
benchmark's work directory (Debian's auditd.conf otherwise, no log rotation),
and the kernel backlog settings Debian's audit.rules would load (-b 8192,
--backlog_wait_time 60000) are applied while it runs. Afterwards the rule is
removed, the daemon stopped and the kernel's enabled flag and backlog
settings restored. When a daemon already runs, it is used as it is and its
log file is read (rotation during a run would make the count a lower bound).

The load average is recorded before every run, and so are other watchers
running on the machine (processes named yamorid, inotifywait, auditd that
this benchmark did not start): other people's work on a shared machine makes
the figures noisy, and other fanotify/inotify watchers slow down every
configuration, the baseline included.

This is a benchmark, not a test: it never fails on a figure. It exits 0
when it ran, 1 when it could not (for example gcc missing), and cleans up
(agent, inotifywait, audit rule and daemon, temporary directories) on every
exit path, including errors and SIGINT/SIGTERM.

    sudo bench/file_storm.py --files 100000 --runs 3 --json results.json
"""

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import (BUILD_DIR, CLK_TCK, REPO, SENSORS_ONLY, agent_conf, agent_notices, cpu_seconds, machine_info, median, merge, snapshot_agent, status_kb, stop_proc)

STORM_C = os.path.join(REPO, "bench", "storm.c")
AUDIT_KEY = "yamoribench"
AGENT_PER_FILE = 3
INOTIFY_PER_FILE = 5
AUDIT_PER_FILE = 2
# Debian's /etc/audit/rules.d/audit.rules sets these when auditd starts.
DEBIAN_AUDIT_BACKLOG = 8192
DEBIAN_AUDIT_BACKLOG_WAIT = 60000
WATCHER_NAMES = ("yamorid", "inotifywait", "auditd")


def log(msg):
    print("[file_storm] " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- /proc


def other_watchers(own_pids):
    """Counts processes named like a file watcher that we did not start."""
    found = {}
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in own_pids:
            continue
        try:
            with open("/proc/%s/comm" % d) as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm in WATCHER_NAMES:
            found[comm] = found.get(comm, 0) + 1
    return found


# ---------------------------------------------------------------- helpers


def wait_file_quiet(path, settle, timeout):
    """Waits until the file's size has not changed for settle seconds.
    Returns the seconds waited."""
    t0 = time.monotonic()
    last, since = -1, time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            size = 0
        now = time.monotonic()
        if size != last:
            last, since = size, now
        elif now - since >= settle:
            break
        time.sleep(0.1)
    return time.monotonic() - t0


def compile_storm(workdir):
    exe = os.path.join(workdir, "storm")
    subprocess.run(["gcc", "-O2", "-o", exe, STORM_C], check=True)
    return exe


def run_storm(storm, directory, n):
    """Runs the workload; returns (its pid, its loop wall time in seconds, its
    CPU seconds, user+system from wait4). The CPU time is less sensitive than
    the wall time to other work on the machine, and shows the cost a watcher
    adds in the workload's own context (the kernel queuing its events)."""
    p = subprocess.Popen([storm, directory, str(n)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        _, status, ru = os.wait4(p.pid, 0)
    except BaseException:  # interrupted: do not leave the workload running
        p.kill()
        p.wait()
        raise
    p.returncode = os.waitstatus_to_exitcode(status)
    out, err = p.stdout.read(), p.stderr.read()
    p.stdout.close()
    p.stderr.close()
    if p.returncode != 0:
        raise RuntimeError("storm failed: " + err.strip())
    m = re.search(r"pid=(\d+) elapsed_ns=(\d+)", out)
    return int(m.group(1)), int(m.group(2)) / 1e9, ru.ru_utime + ru.ru_stime


# ---------------------------------------------------------------- watchers


class AgentWatcher:
    """A yamorid started for one run, with its own state dir and output."""

    name = "agent"

    def __init__(self, binary, workdir, settle, rules_dir, extra_conf):
        self.binary = binary
        self.dir = workdir
        self.settle = settle
        self.rules_dir = rules_dir
        self.extra_conf = extra_conf
        self.p = None

    def start(self, storm_dir):
        self.storm_dir = storm_dir
        self.out = os.path.join(self.dir, "agent.ndjson")
        self.err = os.path.join(self.dir, "agent.err")
        conf = os.path.join(self.dir, "agent.json")
        shutil.rmtree(os.path.join(self.dir, "agent-state"), ignore_errors=True)
        for p in (self.out, self.err):
            if os.path.exists(p):
                os.unlink(p)
        self.conf = agent_conf(self.dir, self.out, self.rules_dir, self.extra_conf)
        with open(conf, "w") as f:
            json.dump(self.conf, f)
        self._err = open(self.err, "wb")
        self.p = subprocess.Popen([self.binary, "--config", conf], stdout=subprocess.DEVNULL,
                                  stderr=self._err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with open(self.err, "rb") as f:
                if b"sensors armed" in f.read():
                    break
            if self.p.poll() is not None:
                raise RuntimeError("agent exited early: " + open(self.err).read()[-2000:])
            time.sleep(0.05)
        else:
            raise RuntimeError("agent not armed after 60 s")
        self.cpu0 = cpu_seconds(self.p.pid)

    def pids(self):
        return {self.p.pid} if self.p else set()

    def wait_drained(self, expected, timeout=600):
        """Waits until the storm's events are all written, or none has come
        for settle seconds. The agent also reports the rest of the machine,
        so its output as a whole may never go quiet on a busy machine; only
        events under the storm directory count here. Returns seconds waited
        until the last storm event was seen."""
        pattern = ('"path":"%s/' % self.storm_dir).encode()
        t0 = time.monotonic()
        seen, last_progress, off, tail = 0, t0, 0, b""
        while time.monotonic() - t0 < timeout:
            try:
                with open(self.out, "rb") as f:
                    f.seek(off)
                    data = f.read()
            except FileNotFoundError:
                data = b""
            off += len(data)
            data = tail + data
            cut = data.rfind(b"\n") + 1
            tail = data[cut:]
            n = data[:cut].count(pattern)
            now = time.monotonic()
            if n:
                seen += n
                last_progress = now
            if seen >= expected or now - last_progress >= self.settle:
                break
            time.sleep(0.1)
        return last_progress - t0

    def finish(self, expected):
        """After the workload: waits for the storm's events, measures, stops,
        and counts the events."""
        drain = self.wait_drained(expected)
        res = {"cpu_s": cpu_seconds(self.p.pid) - self.cpu0,
               "peak_rss_kb": status_kb(self.p.pid, "VmHWM"),
               "drain_s": round(drain, 2)}
        res["exited_on_sigterm"] = stop_proc(self.p)
        self._err.close()
        res["agent_notices"] = agent_notices(self.err)
        res.update(self.count())
        res["output_bytes"] = os.path.getsize(self.out) if os.path.exists(self.out) else 0
        os.unlink(self.out)
        return res

    def count(self):
        prefix = (self.storm_dir + "/").encode()
        actions = {}
        gaps, gap_lost, gap_kinds, unresolved = 0, 0, {}, 0
        if not os.path.exists(self.out):
            return {"actions": {}, "captured": 0, "gap_records": 0}
        with open(self.out, "rb") as f:
            for line in f:
                if prefix not in line and b'"gap"' not in line and b"yamori.file" not in line:
                    continue
                e = json.loads(line.decode("utf-8", "surrogatepass"))
                ev = e.get("event", {})
                act = ev.get("action")
                if act == "gap":
                    y = e.get("yamori", {}).get("gap", {})
                    gaps += 1
                    if "count" in y:
                        gap_lost += y["count"]
                    k = "%s/%s" % (y.get("source"), y.get("reason"))
                    gap_kinds[k] = gap_kinds.get(k, 0) + 1
                    continue
                if ev.get("dataset") != "yamori.file":
                    continue
                path = e.get("file", {}).get("path")
                if path is None:
                    if "file.path" in e.get("yamori", {}).get("missing", []):
                        unresolved += 1
                    continue
                if path.startswith(self.storm_dir + "/"):
                    actions[act] = actions.get(act, 0) + 1
        captured = sum(actions.get(a, 0) for a in ("creation", "modification", "deletion"))
        return {"actions": actions, "captured": captured, "gap_records": gaps,
                "gap_count_known": gap_lost, "gap_kinds": gap_kinds,
                "unresolved_file_events": unresolved}

    def stop(self):
        stop_proc(self.p)


class InotifyWatcher:
    """`inotifywait -m -r DIR` with its output in a file, per run."""

    name = "inotify"

    def __init__(self, workdir, settle):
        self.dir = workdir
        self.settle = settle
        self.p = None

    def start(self, storm_dir):
        self.out = os.path.join(self.dir, "inotify.out")
        self.err = os.path.join(self.dir, "inotify.err")
        self._out = open(self.out, "wb")
        self._err = open(self.err, "wb")
        self.p = subprocess.Popen(["inotifywait", "-m", "-r", storm_dir], stdout=self._out,
                                  stderr=self._err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(self.err, "rb") as f:
                if b"Watches established" in f.read():
                    break
            if self.p.poll() is not None:
                raise RuntimeError("inotifywait exited: " + open(self.err).read()[-2000:])
            time.sleep(0.02)
        else:
            raise RuntimeError("inotifywait not ready after 30 s")
        self.cpu0 = cpu_seconds(self.p.pid)

    def pids(self):
        return {self.p.pid} if self.p else set()

    def finish(self, expected):
        drain = wait_file_quiet(self.out, self.settle, 600)
        res = {"cpu_s": cpu_seconds(self.p.pid) - self.cpu0,
               "peak_rss_kb": status_kb(self.p.pid, "VmHWM"),
               "drain_s": round(drain - self.settle, 2)}
        stop_proc(self.p)
        self._out.close()
        self._err.close()
        lines = comparable = overflow = 0
        with open(self.out, "rb") as f:
            for line in f:
                lines += 1
                parts = line.split(b" ")
                ev = parts[1] if len(parts) > 1 else b""
                if b"Q_OVERFLOW" in line:
                    overflow += 1
                elif ev in (b"CREATE", b"DELETE") or ev.startswith(b"CLOSE_WRITE"):
                    comparable += 1
        res.update({"captured": lines, "create_close_write_delete": comparable,
                    "q_overflow": overflow})
        os.unlink(self.out)
        return res

    def stop(self):
        stop_proc(self.p)


def auditctl(*args, check=True):
    r = subprocess.run(["auditctl"] + list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("auditctl %s: %s" % (" ".join(args), r.stderr.strip()))
    return r


def audit_status():
    out = auditctl("-s").stdout
    st = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            try:
                st[parts[0]] = int(parts[1])
            except ValueError:
                st[parts[0]] = parts[1]
    return st


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class AuditWatcher:
    """auditd with a path watch on the storm directory.

    setup() starts a private auditd when none runs (and records what to put
    back); start()/finish() add and remove the rule around each run;
    teardown() restores the previous state."""

    name = "auditd"

    def __init__(self, workdir, settle):
        self.dir = os.path.join(workdir, "audit")
        self.settle = settle
        self.p = None
        self.rule_dir = None
        self.prev = None
        self.own = False
        self.daemon_pid = None

    def setup(self):
        self.own = False
        self.prev = audit_status()
        if self.prev.get("enabled") == 2:
            raise RuntimeError("audit configuration is locked (enabled 2)")
        pid = self.prev.get("pid", 0)
        if pid and pid_alive(pid):
            self.daemon_pid = pid
            self.log_file = "/var/log/audit/audit.log"
            try:
                with open("/etc/audit/auditd.conf") as f:
                    for line in f:
                        m = re.match(r"\s*log_file\s*=\s*(\S+)", line)
                        if m:
                            self.log_file = m.group(1)
            except OSError:
                pass
            log("auditd already running (pid %d): using it and %s" % (pid, self.log_file))
            return
        os.makedirs(self.dir, exist_ok=True)
        conf_dir = os.path.join(self.dir, "conf")
        os.makedirs(conf_dir, exist_ok=True)
        self.log_file = os.path.join(self.dir, "audit.log")
        base = "/etc/audit/auditd.conf"
        lines = []
        with open(base) as f:
            for line in f:
                key = line.split("=", 1)[0].strip()
                if key in ("log_file", "max_log_file_action", "space_left", "admin_space_left",
                           "space_left_action", "admin_space_left_action", "disk_full_action",
                           "disk_error_action"):
                    continue
                lines.append(line)
        lines += ["log_file = %s\n" % self.log_file, "max_log_file_action = IGNORE\n",
                  "space_left = 75\n", "space_left_action = SYSLOG\n",
                  "admin_space_left = 50\n", "admin_space_left_action = SYSLOG\n",
                  "disk_full_action = SYSLOG\n", "disk_error_action = SYSLOG\n"]
        conf = os.path.join(conf_dir, "auditd.conf")
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w") as f:
            f.writelines(lines)
        self._err = open(os.path.join(self.dir, "auditd.err"), "wb")
        self.p = subprocess.Popen(["auditd", "-n", "-c", conf_dir], stdout=self._err,
                                  stderr=self._err, stdin=subprocess.DEVNULL)
        self.own = True
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError("auditd exited: " +
                                   open(os.path.join(self.dir, "auditd.err")).read()[-2000:])
            if audit_status().get("pid") == self.p.pid:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("auditd did not register with the kernel in 20 s")
        self.daemon_pid = self.p.pid
        auditctl("-b", str(DEBIAN_AUDIT_BACKLOG), "--backlog_wait_time",
                 str(DEBIAN_AUDIT_BACKLOG_WAIT))
        log("started auditd (pid %d), log %s" % (self.p.pid, self.log_file))

    def start(self, storm_dir):
        self.rule_dir = storm_dir
        auditctl("-w", storm_dir, "-p", "wa", "-k", AUDIT_KEY)
        self.offset = os.path.getsize(self.log_file) if os.path.exists(self.log_file) else 0
        self.inode = os.stat(self.log_file).st_ino if os.path.exists(self.log_file) else None
        self.lost0 = audit_status().get("lost", 0)
        self.cpu0 = cpu_seconds(self.daemon_pid)

    def pids(self):
        return {self.daemon_pid} if self.daemon_pid else set()

    def remove_rule(self):
        if self.rule_dir is not None:
            auditctl("-W", self.rule_dir, "-p", "wa", "-k", AUDIT_KEY, check=False)
            self.rule_dir = None

    def finish(self, expected):
        drain = wait_file_quiet(self.log_file, self.settle, 900)
        res = {"cpu_s": cpu_seconds(self.daemon_pid) - self.cpu0,
               "peak_rss_kb": status_kb(self.daemon_pid, "VmHWM"),
               "drain_s": round(drain - self.settle, 2),
               "kernel_lost": audit_status().get("lost", 0) - self.lost0}
        self.remove_rule()
        key = ('key="%s"' % AUDIT_KEY).encode()
        records = syscalls = 0
        rotated = self.inode is not None and os.stat(self.log_file).st_ino != self.inode
        with open(self.log_file, "rb") as f:
            if not rotated:
                f.seek(self.offset)
            for line in f:
                if key in line:
                    records += 1
                    if line.startswith(b"type=SYSCALL"):
                        syscalls += 1
        res.update({"captured": syscalls, "records_with_key": records,
                    "log_rotated": rotated})
        if self.own:  # our private log: start the next run from an empty file
            with open(self.log_file, "r+b") as f:
                f.truncate(0)
        return res

    def stop(self):
        self.remove_rule()

    def teardown(self):
        """Puts back what setup() changed; safe to call more than once."""
        self.remove_rule()
        if not self.own:
            self.daemon_pid = None
            return
        try:
            auditctl("-b", str(self.prev.get("backlog_limit", 64)), check=False)
            auditctl("--backlog_wait_time", str(self.prev.get("backlog_wait_time", 15000)),
                     check=False)
        finally:
            stop_proc(self.p, timeout=30)
            self._err.close()
            auditctl("-e", str(self.prev.get("enabled", 0)), check=False)
            self.own = False
            self.p = None
            self.daemon_pid = None
            log("stopped auditd, audit state restored (enabled %s)" % self.prev.get("enabled"))


# ---------------------------------------------------------------- main


def run_one(cfg, storm, parent, n, watcher, own_pids):
    storm_dir = tempfile.mkdtemp(prefix="storm-", dir=parent)
    rec = {"config": cfg, "files": n, "loadavg": [round(x, 2) for x in os.getloadavg()],
           "other_watchers": other_watchers(own_pids | (watcher.pids() if watcher else set()))}
    try:
        if watcher is not None:
            watcher.start(storm_dir)
        pid, wall, cpu = run_storm(storm, storm_dir, n)
        rec["wall_s"] = wall
        rec["workload_cpu_s"] = cpu
        rec["storm_pid"] = pid
        if watcher is not None:
            per_file = {"agent": AGENT_PER_FILE, "inotify": INOTIFY_PER_FILE,
                        "auditd": AUDIT_PER_FILE}
            rec.update(watcher.finish(per_file[cfg] * n))
    finally:
        if watcher is not None:
            watcher.stop()
        shutil.rmtree(storm_dir, ignore_errors=True)
    return rec


def summarize(runs, configs, n_for):
    base, base_cpu = {}, {}
    for cfg in configs:
        if cfg.startswith("baseline"):
            base[n_for[cfg]] = median(r["wall_s"] for r in runs if r["config"] == cfg)
            base_cpu[n_for[cfg]] = median(r["workload_cpu_s"] for r in runs if r["config"] == cfg)
    out = {}
    for cfg in configs:
        rs = [r for r in runs if r["config"] == cfg]
        if not rs:
            continue
        n = n_for[cfg]
        s = {"files": n, "runs": len(rs), "wall_s": median(r["wall_s"] for r in rs),
             "wall_s_all": [round(r["wall_s"], 3) for r in rs],
             "loadavg_1m_all": [r["loadavg"][0] for r in rs]}
        s["workload_cpu_s"] = median(r["workload_cpu_s"] for r in rs)
        s["workload_cpu_s_all"] = [round(r["workload_cpu_s"], 2) for r in rs]
        if base.get(n):
            s["ratio"] = s["wall_s"] / base[n]
        if base_cpu.get(n):
            s["cpu_ratio"] = s["workload_cpu_s"] / base_cpu[n]
        if "captured" in rs[0]:
            s["captured"] = median(r["captured"] for r in rs)
            s["captured_all"] = [r["captured"] for r in rs]
            s["cpu_s"] = median(r["cpu_s"] for r in rs)
            s["peak_rss_kb"] = median(r["peak_rss_kb"] for r in rs)
            s["drain_s"] = median(r["drain_s"] for r in rs)
        if cfg == "agent":
            s["expected"] = AGENT_PER_FILE * n
            s["gap_records_all"] = [r["gap_records"] for r in rs]
            s["gap_count_known_all"] = [r["gap_count_known"] for r in rs]
            kinds = {}
            for r in rs:
                for k, v in r["gap_kinds"].items():
                    kinds[k] = kinds.get(k, 0) + v
            s["gap_kinds_total"] = kinds
            s["unresolved_all"] = [r["unresolved_file_events"] for r in rs]
            s["exited_on_sigterm_all"] = [r["exited_on_sigterm"] for r in rs]
            s["drain_s_all"] = [r["drain_s"] for r in rs]
        elif cfg == "inotify":
            s["expected"] = INOTIFY_PER_FILE * n
            s["comparable"] = median(r["create_close_write_delete"] for r in rs)
            s["q_overflow_all"] = [r["q_overflow"] for r in rs]
        elif cfg == "auditd":
            s["expected"] = AUDIT_PER_FILE * n
            s["kernel_lost_all"] = [r["kernel_lost"] for r in rs]
        out[cfg] = s
    return out


def fmt_pct(got, want):
    return "%d / %d (%.1f%%)" % (got, want, 100.0 * got / want) if want else "-"


def markdown(summary, args, machine):
    lines = [
        "File storm: create, write 4 KiB, close, delete; %d runs per configuration, medians."
        % args.runs, "",
        "| configuration | files | wall s (median) | ratio vs baseline | workload CPU s (ratio) | "
        "captured / expected | loss records | watcher CPU s | watcher peak RSS MiB | "
        "load avg 1m (per run) |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for cfg, s in summary.items():
        ratio = "%.2fx" % s["ratio"] if s.get("ratio") else "-"
        cap = loss = cpu = rss = "-"
        if cfg == "agent":
            cap = fmt_pct(s["captured"], s["expected"]) + " events"
            loss = "%s gap records (%s)" % (
                "/".join(str(x) for x in s["gap_records_all"]),
                ", ".join("%s: %d" % kv for kv in sorted(s["gap_kinds_total"].items())) or "none")
        elif cfg == "inotify":
            cap = fmt_pct(s["captured"], s["expected"]) + " lines; create/close_write/delete " + \
                fmt_pct(s["comparable"], AGENT_PER_FILE * s["files"])
            loss = "Q_OVERFLOW " + "/".join(str(x) for x in s["q_overflow_all"])
        elif cfg == "auditd":
            cap = fmt_pct(s["captured"], s["expected"]) + " SYSCALL records"
            loss = "kernel lost " + "/".join(str(x) for x in s["kernel_lost_all"])
        if "cpu_s" in s:
            cpu = "%.2f" % s["cpu_s"]
            rss = "%.1f" % (s["peak_rss_kb"] / 1024) if s["peak_rss_kb"] else "-"
        wcpu = "%.2f (%s)" % (s["workload_cpu_s"],
                              "%.2fx" % s["cpu_ratio"] if s.get("cpu_ratio") else "-")
        lines.append("| %s | %d | %.2f | %s | %s | %s | %s | %s | %s | %s |" % (
            cfg, s["files"], s["wall_s"], ratio, wcpu, cap, loss, cpu, rss,
            " ".join("%.2f" % x for x in s["loadavg_1m_all"])))
    lines += ["", "Wall times per run (s): " + "; ".join(
        "%s %s" % (cfg, " ".join("%.2f" % x for x in s["wall_s_all"]))
        for cfg, s in summary.items()),
        "Workload CPU per run (s): " + "; ".join(
        "%s %s" % (cfg, " ".join("%.2f" % x for x in s["workload_cpu_s_all"]))
        for cfg, s in summary.items()),
        "Machine: %(nproc)s cores, %(cpu)s, %(mem_gib)s GiB, kernel %(kernel)s, Debian %(debian)s"
        % machine]
    if "agent" in summary:
        a = summary["agent"]
        lines.append("Agent: storm events written %s s after the workload ended (per run); "
                     "file events without a path (unresolved) %s; ended on SIGTERM in %d of %d "
                     "runs (else killed after 5 s)" % (
                         " ".join(str(x) for x in a["drain_s_all"]),
                         " ".join(str(x) for x in a["unresolved_all"]),
                         sum(a["exited_on_sigterm_all"]), a["runs"]))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100000, help="files per run (default 100000)")
    ap.add_argument("--audit-files", type=int, default=None,
                    help="files per auditd run (default: --files); a baseline at this count is "
                         "added when it differs")
    ap.add_argument("--runs", type=int, default=3, help="runs per configuration (default 3)")
    ap.add_argument("--configs", default="baseline,agent,inotify,auditd",
                    help="comma-separated subset of baseline,agent,inotify,auditd")
    ap.add_argument("--agent", default=os.path.join(BUILD_DIR, "agent", "yamorid"),
                    help="yamorid binary (default: $YAMORI_BUILD_DIR/agent/yamorid)")
    ap.add_argument("--rules", default=os.path.join(REPO, "rules"),
                    help="rules directory for the agent (default: the repository's rules/)")
    ap.add_argument("--agent-conf", default="{}",
                    help="JSON merged over the agent configuration (default sensors only: "
                         + json.dumps(SENSORS_ONLY) + ")")
    ap.add_argument("--parent", default="/var/tmp",
                    help="where the work and storm directories are made (default /var/tmp)")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds a watcher's output must stay unchanged to count as drained")
    ap.add_argument("--warmup", type=int, default=1, help="untimed baseline runs first (default 1)")
    ap.add_argument("--json", help="write the results as JSON to this file")
    args = ap.parse_args()

    # Stop cleanly (the finally blocks run) on SIGTERM and SIGINT, even when
    # SIGINT was ignored by the parent (background jobs of a script).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        if c not in ("baseline", "agent", "inotify", "auditd"):
            ap.error("unknown configuration " + c)
    notes = []
    if os.geteuid() != 0:
        for c in ("agent", "auditd"):
            if c in configs:
                configs.remove(c)
                notes.append("%s skipped: needs root" % c)
    if "agent" in configs and not os.access(args.agent, os.X_OK):
        configs.remove("agent")
        notes.append("agent skipped: %s not built (scripts/build.sh)" % args.agent)
    for c, tool in (("inotify", "inotifywait"), ("auditd", "auditd")):
        if c in configs and shutil.which(tool) is None:
            configs.remove(c)
            notes.append("%s skipped: %s not installed (apt-get install %s)" %
                         (c, tool, "inotify-tools" if c == "inotify" else "auditd"))
    audit_n = args.audit_files or args.files
    n_for = {c: args.files for c in configs}
    if "auditd" in configs:
        n_for["auditd"] = audit_n
        if audit_n != args.files:
            configs.insert(configs.index("auditd"), "baseline-%d" % audit_n)
            n_for["baseline-%d" % audit_n] = audit_n
    if "baseline" not in configs:
        configs.insert(0, "baseline")
        n_for["baseline"] = args.files
    for n in notes:
        log(n)

    machine = machine_info()
    workdir = tempfile.mkdtemp(prefix="yamori-bench-files-", dir=args.parent)
    own = {os.getpid()}
    watchers = {}
    runs = []
    build_info = None
    try:
        storm = compile_storm(workdir)
        if "agent" in configs:
            binary, build_info = snapshot_agent(args.agent, workdir)
            watchers["agent"] = AgentWatcher(binary, workdir, args.settle, args.rules,
                                             json.loads(args.agent_conf))
        if "inotify" in configs:
            watchers["inotify"] = InotifyWatcher(workdir, args.settle)
        if "auditd" in configs:
            watchers["auditd"] = AuditWatcher(workdir, args.settle)
        for i in range(args.warmup):
            log("warmup baseline run %d" % (i + 1))
            run_one("warmup", storm, workdir, args.files, None, own)
        for rnd in range(args.runs):
            for cfg in configs:
                w = watchers.get(cfg)
                if cfg == "auditd" and w.daemon_pid is None:
                    w.setup()
                log("round %d/%d: %s (%d files, load %.2f)" %
                    (rnd + 1, args.runs, cfg, n_for[cfg], os.getloadavg()[0]))
                rec = run_one(cfg, storm, workdir, n_for[cfg], w, own)
                rec["round"] = rnd + 1
                runs.append(rec)
                log("  wall %.2f s%s" % (rec["wall_s"], "" if "captured" not in rec else
                                        ", captured %d, cpu %.2f s" %
                                        (rec["captured"], rec["cpu_s"])))
                if cfg == "auditd":
                    # Stop the daemon between rounds: it must not run during the others.
                    w.teardown()
                time.sleep(1)
    finally:
        for w in watchers.values():
            try:
                w.stop()
                if isinstance(w, AuditWatcher):
                    w.teardown()
            except Exception as e:  # cleanup must go on
                log("cleanup: %s" % e)
        shutil.rmtree(workdir, ignore_errors=True)

    summary = summarize(runs, configs, n_for)
    print(markdown(summary, args, machine))
    if build_info:
        print("Agent build: %s (built %s, git %s, %s modified files under agent/ and common/, "
              "binary sha256 %s)" % (build_info.get("version"), build_info.get("built"),
                                     build_info.get("git_head"), build_info.get("sources_modified"),
                                     build_info["sha256"][:12]))
    if "agent" in watchers:
        a = watchers["agent"]
        shown = {k: v for k, v in a.conf.items() if k not in ("state_dir", "output", "control")}
        print("Agent configuration (besides private state, output, socket): " + json.dumps(shown))
    notices = [r["agent_notices"] for r in runs if r.get("agent_notices")]
    if notices:
        print("Agent log (first run): " + " | ".join(notices[0]))
    for n in notes:
        print("\nNote: " + n)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "file_storm", "machine": machine, "time": time.strftime(
                "%Y-%m-%dT%H:%M:%S%z"), "args": vars(args), "notes": notes,
                "agent_build": build_info,
                "agent_conf": watchers["agent"].conf if "agent" in watchers else None,
                "summary": summary, "runs": runs}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
