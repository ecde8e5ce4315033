#!/usr/bin/env python3
"""File storm with scanning on: what scan-on-write costs a PC that works hard
on files.

A small C driver (embedded below, compiled on the fly with gcc -O2) writes N
files (default 100,000), one after the other, in a fresh directory under
/var/tmp (the root filesystem, not a tmpfs): open(O_CREAT), write 4 KiB,
close, and in the "delete" workload unlink right away. It runs without an
agent and with the agent at its default scanning settings (scan.on_write
on, scan.debounce_ms 200, scan.max_queue 10000, scan.cpu_budget_percent 25,
one scanner thread per core; both sensors on; NDJSON output to a file
outside the storm directory), interleaved, R rounds (default 3, a fresh
agent per round).

Responses: by default the agent runs with policy.exec "detect" and
policy.file "detect". It watches the whole machine, and on a shared machine
it must not deny other people's program starts or move their test files
away; the scanning work is the same (the storm's files are clean, so the
responses never come into play). --default-responses runs it with the
defaults (block, quarantine).

The file system matters more than anything else here. Debian's root file
system on the machine these figures were taken on is ext4 without a
journal, and without a journal ext4 does not reuse an inode freed in the
last 60 s (360 s while its inode-table block is dirty): each file creation
checks the freed inodes it passes over (fs/ext4/ialloc.c recently_deleted,
visible with perf), so after a mass deletion creating files costs several
times more kernel time, depending on what was deleted in the last minutes,
by this benchmark's own earlier runs or by anyone else. --fs-image MIB runs
the storm on a fresh ext4 file system with a journal instead (an image
file in the work directory, loop-mounted for the run, unmounted and removed
afterwards); the agent watches it like any file system mounted while it
runs.

Workloads (--workloads, default both):
  delete  create, write 4 KiB, close, unlink: the workload of the sensor
          benchmark, now with scanning on. A write-triggered scan opens the
          path when its debounce ends, so files deleted before that are not
          scanned at all (not counted anywhere either: the open just fails).
  keep    create, write 4 KiB, close; the files stay until the agent has
          drained and been stopped (then they are removed, untimed), so
          every file is a scan candidate: this is where scanning costs.

Reported per workload (medians over the rounds): the workload's wall time
(measured by the C driver around its loop) and its ratio to the baseline,
with the writer's own CPU seconds and context switches (getrusage);
the agent's CPU seconds (utime+stime delta from /proc/PID/stat, from just
before the workload until it drained) and peak RSS (VmHWM); the agent's
counters from `yamorictl --config CONF --json status` (deltas):
files_scanned, scan_cache_hits, scan_errors, write_scans_dropped, alerts;
gap records in the agent's output (event.action "gap", by source/reason)
and the file events under the storm directory (by event.action). The
counters are agent-wide: files written at the same time by other work on
the machine are scanned and counted too.

"Drained" means: all the storm's file events are in the output (3 per file
for delete, 2 for keep) and, for keep, files_scanned + write_scans_dropped
grew by N; or that progress stopped for --settle seconds (default 10:
program-start scans, which go first, can hold background scans up for
seconds on a busy machine). The CPU and RSS figures are read then.

The load average (os.getloadavg()) is recorded before every run, and so are
Yamori agents running on the machine that this benchmark did not start
(their sensors and scans slow every configuration, the baseline included).

The agent is stopped with SIGTERM (SIGKILL when it has not exited 10 s
later); whether it exited on SIGTERM is recorded.

This is a benchmark, not a test: it never fails on a figure. It exits 0 when
it ran, 1 when it could not, and stops the agent and removes its temporary
directories on every exit path.

    sudo bench/scan_storm.py --files 100000 --rounds 3 --json scan_storm.json
"""

import argparse
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

from benchlib import (BUILD_DIR, CLK_TCK, REPO, cpu_seconds, git_state, loadavg, machine_info, other_agents, snapshot_rules, status_kb)

COUNTERS = ("files_scanned", "scan_cache_hits", "scan_errors", "write_scans_dropped", "alerts",
            "quarantined", "gaps")

DRIVER_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* fstorm DIR COUNT delete|keep */
int main(int argc, char **argv) {
  static char data[4096];
  char path[4096];
  if (argc != 4)
    return 2;
  long n = atol(argv[2]);
  int del = strcmp(argv[3], "delete") == 0;
  memset(data, 'y', sizeof(data));
  long long t0 = now_ns();
  for (long i = 0; i < n; i++) {
    snprintf(path, sizeof(path), "%s/f%08ld.dat", argv[1], i);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      fprintf(stderr, "fstorm: open %s: %s\n", path, strerror(errno));
      return 1;
    }
    if (write(fd, data, sizeof(data)) != (ssize_t)sizeof(data)) {
      fprintf(stderr, "fstorm: write %s: %s\n", path, strerror(errno));
      return 1;
    }
    if (close(fd) != 0 || (del && unlink(path) != 0)) {
      fprintf(stderr, "fstorm: close/unlink %s: %s\n", path, strerror(errno));
      return 1;
    }
  }
  long long t1 = now_ns();
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("elapsed_ns=%lld utime_us=%lld stime_us=%lld nvcsw=%ld nivcsw=%ld\n", t1 - t0,
         (long long)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec,
         (long long)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec, ru.ru_nvcsw, ru.ru_nivcsw);
  return 0;
}
"""


def log(msg):
    print("[scan_storm] " + msg, file=sys.stderr, flush=True)


def stop_proc(p, timeout=10.0):
    """SIGTERM, then SIGKILL after timeout seconds. Returns True when the
    process ended on SIGTERM (or had ended), False when it had to be killed."""
    if p is None or p.poll() is not None:
        return True
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        log("pid %d did not exit %.0f s after SIGTERM: SIGKILL" % (p.pid, timeout))
        p.kill()
        p.wait()
        return False


class Agent:
    """yamorid at its default policies, with its own state, output, socket."""

    def __init__(self, binary, ctl, workdir, name, responses, rules_dir):
        self.ctl_bin = ctl
        self.dir = tempfile.mkdtemp(prefix=name + "-", dir=workdir)
        self.conf_path = os.path.join(self.dir, "agent.json")
        self.out = os.path.join(self.dir, "events.ndjson")
        conf = {"state_dir": os.path.join(self.dir, "state"), "output": self.out,
                "rules": {"dirs": [rules_dir]},
                "control": {"socket": os.path.join(self.dir, "ctl.sock")}}
        if not responses:
            # Same scanning work, no responses to malicious content that
            # other work on the machine writes or starts meanwhile.
            conf["policy"] = {"exec": "detect", "file": "detect"}
        with open(self.conf_path, "w") as f:
            json.dump(conf, f)
        self.err_path = os.path.join(self.dir, "agent.err")
        self._err = open(self.err_path, "wb")
        self.p = subprocess.Popen([binary, "--config", self.conf_path], stdout=subprocess.DEVNULL,
                                  stderr=self._err, stdin=subprocess.DEVNULL)
        self._off = 0
        self._tail = b""
        self.storm_events = 0
        try:
            self._wait_armed()
        except BaseException:
            self.stop()
            raise

    def _wait_armed(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with open(self.err_path, "rb") as f:
                if b"sensors armed" in f.read():
                    return
            if self.p.poll() is not None:
                with open(self.err_path, "rb") as f:
                    raise RuntimeError("agent exited early: " + f.read().decode()[-2000:])
            time.sleep(0.05)
        raise RuntimeError("agent not armed after 60 s")

    def counters(self):
        r = subprocess.run([self.ctl_bin, "--config", self.conf_path, "--json", "status"],
                           capture_output=True, timeout=60)
        for line in r.stdout.decode().splitlines():
            if line.strip():
                c = json.loads(line).get("counters", {})
                return {k: c.get(k, 0) for k in COUNTERS}
        raise RuntimeError("no status: " + r.stderr.decode())

    def count_new(self, pattern):
        """Storm events written since the last call (incremental)."""
        try:
            with open(self.out, "rb") as f:
                f.seek(self._off)
                data = f.read()
        except FileNotFoundError:
            return self.storm_events
        self._off += len(data)
        data = self._tail + data
        cut = data.rfind(b"\n") + 1
        self._tail = data[cut:]
        self.storm_events += data[:cut].count(pattern)
        return self.storm_events

    def summarize_output(self, storm_dir):
        actions, gaps, gap_kinds, alerts = {}, 0, {}, 0
        prefix = storm_dir + "/"
        if not os.path.exists(self.out):
            return {}
        with open(self.out, "rb") as f:
            for line in f:
                if prefix.encode() not in line and b'"gap"' not in line:
                    continue
                e = json.loads(line.decode("utf-8", "surrogatepass"))
                ev = e.get("event", {})
                if ev.get("action") == "gap":
                    y = e.get("yamori", {}).get("gap", {})
                    gaps += 1
                    k = "%s/%s" % (y.get("source"), y.get("reason"))
                    gap_kinds[k] = gap_kinds.get(k, 0) + int(y.get("count", 0) or 0)
                    continue
                if ev.get("kind") == "alert":
                    alerts += 1
                path = e.get("file", {}).get("path", "")
                if path.startswith(prefix):
                    a = ev.get("action")
                    actions[a] = actions.get(a, 0) + 1
        return {"storm_events": actions, "gap_records": gaps, "gap_counts": gap_kinds,
                "storm_alerts": alerts, "output_bytes": os.path.getsize(self.out)}

    def stop(self):
        """Stops the agent; True when it exited on SIGTERM."""
        ok = stop_proc(self.p)
        if not self._err.closed:
            self._err.close()
        return ok


def compile_driver(work):
    src = os.path.join(work, "fstorm.c")
    with open(src, "w") as f:
        f.write(DRIVER_C)
    exe = os.path.join(work, "fstorm")
    subprocess.run(["gcc", "-O2", "-o", exe, src], check=True)
    return exe


def run_storm(exe, directory, n, mode):
    r = subprocess.run([exe, directory, str(n), mode], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("storm failed: " + r.stderr.strip())
    m = dict(re.findall(r"(\w+)=(\d+)", r.stdout))
    return (int(m["elapsed_ns"]) / 1e9,
            {"cpu_s": round((int(m["utime_us"]) + int(m["stime_us"])) / 1e6, 2),
             "sys_s": round(int(m["stime_us"]) / 1e6, 2),
             "voluntary_switches": int(m["nvcsw"]), "involuntary_switches": int(m["nivcsw"])})


def wait_drained(agent, storm_dir, c0, n, workload, settle, timeout):
    """Waits until the agent has handled the storm: all its file events are
    written (3 per file for delete: creation, modification, deletion; 2 for
    keep) and, for keep, every file was scanned or its scan dropped; or until
    nothing of that moved for settle seconds. The counters are agent-wide,
    so on a busy machine they may never stand still; only the storm's own
    progress counts here. Returns the seconds until the last progress."""
    pattern = ('"path":"%s/' % storm_dir).encode()
    want_events = n * (3 if workload == "delete" else 2)
    t0 = time.monotonic()
    last, since = None, time.monotonic()
    while time.monotonic() - t0 < timeout:
        c = agent.counters()
        handled = (c["files_scanned"] - c0["files_scanned"]
                   + c["write_scans_dropped"] - c0["write_scans_dropped"])
        events = agent.count_new(pattern)
        now = time.monotonic()
        if workload == "delete":
            state, done = events, events >= want_events
        else:
            state, done = (events, handled), events >= want_events and handled >= n
        if state != last:
            last, since = state, now
        if done:
            break
        if now - since >= settle:
            break
        time.sleep(0.1)
    return since - t0


def mount_image(work, mib):
    """Creates an ext4 file system (with its journal, inode tables written
    out now) in a sparse image file and loop-mounts it; returns the mount
    point."""
    img = os.path.join(work, "fs.img")
    with open(img, "wb") as f:
        f.truncate(mib * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-N", "400000", "-E",
                    "lazy_itable_init=0,lazy_journal_init=0,nodiscard", img],
                   check=True, capture_output=True)
    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt)
    subprocess.run(["mount", "-o", "loop", img, mnt], check=True, capture_output=True)
    return mnt


def unmount_image(mnt):
    r = subprocess.run(["umount", mnt], capture_output=True, text=True)
    if r.returncode != 0:
        log("umount %s: %s; detaching lazily" % (mnt, r.stderr.strip()))
        subprocess.run(["umount", "-l", mnt], capture_output=True)


def summarize(runs, workloads):
    """Medians over the rounds, per workload; the wall-time ratio both as the
    ratio of the medians and as the median of the per-round ratios (the two
    runs of a round ran one right after the other)."""
    summary = {}
    for wl in workloads:
        base = [x for x in runs if x["workload"] == wl and x["config"] == "none"]
        ag = [x for x in runs if x["workload"] == wl and x["config"] == "agent"]
        bw = statistics.median(x["wall_s"] for x in base)
        aw = statistics.median(x["wall_s"] for x in ag)
        bwr = {x["round"]: x["wall_s"] for x in base}
        summary[wl] = {
            "baseline_wall_s": bw, "agent_wall_s": aw, "ratio": round(aw / bw, 2),
            "ratio_paired": round(statistics.median(x["wall_s"] / bwr[x["round"]] for x in ag), 2),
            "agent_cpu_s": statistics.median(x["agent_cpu_s"] for x in ag),
            "peak_rss_kb": statistics.median(x["peak_rss_kb"] for x in ag),
            "drain_s": statistics.median(x["drain_s"] for x in ag),
            "gap_records": statistics.median(x.get("gap_records", 0) for x in ag),
            "writer_cpu_s_none": statistics.median(x["writer"]["cpu_s"] for x in base),
            "writer_cpu_s_agent": statistics.median(x["writer"]["cpu_s"] for x in ag),
            "exited_on_sigterm": all(x.get("agent_exited_on_sigterm") for x in ag),
        }
        for k in COUNTERS:
            summary[wl][k] = statistics.median(x["counters"][k] for x in ag)
    return summary


def print_report(res):
    a = res["args"]
    summary = res["summary"]
    print("\n### File storm with scanning on, %d files of 4 KiB (medians of %d rounds)\n"
          % (a["files"], a["rounds"]))
    print("| workload | no agent s | agent s | ratio of medians | median of round ratios "
          "| writer CPU s (no agent / agent) | agent CPU s | peak RSS MiB | files scanned "
          "| write scans dropped | gap records | exited on SIGTERM |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for wl, s in summary.items():
        print("| %s | %.2f | %.2f | %.2f | %.2f | %.2f / %.2f | %.2f | %.1f | %d | %d | %d | %s |" % (
            wl, s["baseline_wall_s"], s["agent_wall_s"], s["ratio"], s["ratio_paired"],
            s["writer_cpu_s_none"], s["writer_cpu_s_agent"], s["agent_cpu_s"],
            s["peak_rss_kb"] / 1024, s["files_scanned"], s["write_scans_dropped"],
            s["gap_records"], "yes" if s["exited_on_sigterm"] else "no (SIGKILL)"))
    print("\nPer round (agent counters are agent-wide deltas):\n")
    print("| workload | round | no agent s | agent s | ratio | writer CPU s (no agent / agent) "
          "| agent CPU s | peak RSS MiB | files scanned | write scans dropped | gap records "
          "| alerts (other files) | load before (no agent / agent) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for x in res["runs"]:
        if x["config"] != "agent":
            continue
        b = [y for y in res["runs"] if y["config"] == "none" and y["workload"] == x["workload"]
             and y["round"] == x["round"]][0]
        c = x["counters"]
        print("| %s | %d | %.2f | %.2f | %.2f | %.2f / %.2f | %.2f | %.1f | %d | %d | %d | %d | %s / %s |"
              % (x["workload"], x["round"], b["wall_s"], x["wall_s"], x["wall_s"] / b["wall_s"],
                 b["writer"]["cpu_s"], x["writer"]["cpu_s"], x["agent_cpu_s"],
                 x["peak_rss_kb"] / 1024, c["files_scanned"], c["write_scans_dropped"],
                 x.get("gap_records", 0), c["alerts"], b["loadavg"][0], x["loadavg"][0]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workloads", default="delete,keep")
    ap.add_argument("--settle", type=float, default=10.0)
    ap.add_argument("--default-responses", action="store_true",
                    help="policy.exec block and policy.file quarantine (the defaults) instead "
                         "of detect/detect")
    ap.add_argument("--drain-timeout", type=float, default=900.0)
    ap.add_argument("--build-dir", default=BUILD_DIR)
    ap.add_argument("--rules", default=os.path.join(REPO, "rules"))
    ap.add_argument("--workdir", default="/var/tmp")
    ap.add_argument("--fs-image", type=int, default=0, metavar="MIB",
                    help="run the storm on a fresh ext4 file system with a journal, in an image "
                         "file of this size under the work directory, loop-mounted for the run")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--report", metavar="FILE",
                    help="print the tables of a result saved with --json, and run nothing")
    args = ap.parse_args()
    if args.report:
        with open(args.report) as f:
            saved = json.load(f)
        saved["summary"] = summarize(saved["runs"], [w for w in saved["args"]["workloads"].split(",") if w])
        print_report(saved)
        return 0
    yamorid = os.path.join(args.build_dir, "agent", "yamorid")
    ctl = os.path.join(args.build_dir, "agent", "yamorictl")
    for b in (yamorid, ctl):
        if not os.access(b, os.X_OK):
            log("missing %s (build first)" % b)
            return 1
    if os.geteuid() != 0:
        log("needs root (the agent)")
        return 1
    if shutil.which("gcc") is None:
        log("gcc is missing")
        return 1
    os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    if args.fs_image and shutil.which("mkfs.ext4") is None:
        log("mkfs.ext4 is missing (apt-get install e2fsprogs)")
        return 1
    workloads = [w for w in args.workloads.split(",") if w]
    for w in workloads:
        if w not in ("delete", "keep"):
            log("unknown workload %s" % w)
            return 1
    work = tempfile.mkdtemp(prefix="yamori-scanstorm-", dir=args.workdir)
    own = {os.getpid()}
    agent = None
    mounted = None
    res = {"machine": machine_info(), "git": git_state(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "args": vars(args), "loadavg_start": loadavg(), "runs": []}
    try:
        rules_dir, res["rules_sha256"] = snapshot_rules(args.rules, work)
        exe = compile_driver(work)
        storm_base = work
        if args.fs_image:
            storm_base = mount_image(work, args.fs_image)
            mounted = storm_base
            res["fs_image_mib"] = args.fs_image
        for r in range(args.rounds):
            for wl in workloads:
                for cfg in ("none", "agent"):
                    storm_dir = os.path.join(storm_base, "storm-%s-%s-%d" % (wl, cfg, r))
                    os.makedirs(storm_dir)
                    run = {"round": r + 1, "workload": wl, "config": cfg}
                    if cfg == "agent":
                        agent = Agent(yamorid, ctl, work, "agent-%s-%d" % (wl, r),
                                      args.default_responses, rules_dir)
                        own.add(agent.p.pid)
                        c0 = agent.counters()
                        cpu0 = cpu_seconds(agent.p.pid)
                    run["loadavg"] = loadavg()
                    run["other_agents"] = other_agents(own)
                    wall, run["writer"] = run_storm(exe, storm_dir, args.files, wl)
                    run["wall_s"] = round(wall, 3)
                    if agent is not None:
                        run["drain_s"] = round(wait_drained(agent, storm_dir, c0, args.files, wl,
                                                            args.settle, args.drain_timeout), 2)
                        run["agent_cpu_s"] = round(cpu_seconds(agent.p.pid) - cpu0, 2)
                        run["peak_rss_kb"] = status_kb(agent.p.pid, "VmHWM")
                        c1 = agent.counters()
                        run["counters"] = {k: c1[k] - c0[k] for k in COUNTERS}
                        run["agent_exited_on_sigterm"] = agent.stop()
                        own.discard(agent.p.pid)
                        run.update(agent.summarize_output(storm_dir))
                        shutil.rmtree(agent.dir, ignore_errors=True)
                        agent = None
                    shutil.rmtree(storm_dir, ignore_errors=True)
                    res["runs"].append(run)
                    log("round %d %-6s %-5s wall %.2f s writer %s %s load=%s" % (
                        r + 1, wl, cfg, run["wall_s"], run["writer"],
                        "" if cfg == "none" else "cpu %.2f s rss %d kB %s gaps %d drain %.1f s" % (
                            run["agent_cpu_s"], run["peak_rss_kb"], run["counters"],
                            run.get("gap_records", 0), run["drain_s"]),
                        run["loadavg"]))
        res["summary"] = summarize(res["runs"], workloads)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        log("error: %s" % e)
        return 1
    finally:
        if agent is not None:
            agent.stop()
        if mounted is not None:
            unmount_image(mounted)
        shutil.rmtree(work, ignore_errors=True)
    res["loadavg_end"] = loadavg()

    print_report(res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    def _term(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _term)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(1)
