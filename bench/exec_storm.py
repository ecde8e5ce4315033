#!/usr/bin/env python3
"""Exec storm benchmark: what watching process starts costs, and whether every
start is reported.

A small C driver (bench/storm.c, compiled on the fly with gcc -O2) runs
/bin/true N times (default 10,000) from one process: fork, execve, waitpid,
one after the other. It runs without the agent and with the agent once per
process source (`process.sensor`: `proc`, the netlink proc connector with
/proc read afterwards, and `ebpf`, the BPF programs), interleaved, R times
each (a fresh agent per run).

Reported (medians over the runs): the driver's loop wall time and its ratio
to the baseline; the CPU time of the driver and its children (user+system
from wait4, less sensitive than the wall time to other work on the machine)
and its ratio; for the agent, the start events captured (event.action
"exec" with process.parent.pid == the driver's pid and process.executable ==
the program's real path, /usr/bin/true on Debian 12) and end events
(event.action "end" for the children's pids) against N each, the starts
without their arguments (no process.args), gap records
(event.action "gap", with yamori.gap.source/reason/count), the agent's CPU
seconds (utime+stime deltas from /proc/PID/stat, from just before the
workload until its events were written) and peak RSS (VmHWM).

The load average is recorded before every run, and so are other Yamori
agents running on the machine that this benchmark did not start: other
people's work on a shared machine makes the figures noisy.

This is a benchmark, not a test: it never fails on a figure. It exits 0
when it ran, 1 when it could not, and stops the agent and removes its
temporary directory on every exit path, including errors and SIGINT/SIGTERM.

    sudo bench/exec_storm.py --count 10000 --runs 3 --json results.json
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

from benchlib import (BUILD_DIR, CLK_TCK, REPO, SENSORS_ONLY, agent_conf, agent_notices, cpu_seconds, machine_info, median, merge, other_agents, snapshot_agent, status_kb, stop_proc)

STORM_C = os.path.join(REPO, "bench", "storm.c")


def log(msg):
    print("[exec_storm] " + msg, file=sys.stderr, flush=True)


class Driver:
    """The compiled C driver; run() returns (driver pid, wall s, child pids)."""

    def __init__(self, workdir, program, count):
        self.exe = os.path.join(workdir, "storm")
        subprocess.run(["gcc", "-O2", "-o", self.exe, STORM_C], check=True)
        self.pidfile = os.path.join(workdir, "children.txt")
        self.program = program
        self.count = count

    def start(self):
        return subprocess.Popen([self.exe, "--exec", self.program, str(self.count), self.pidfile],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self, p):
        """Waits for the driver. Returns its pid, its loop wall time, its CPU
        seconds (user+system from wait4, the children it waited for
        included) and the children's pids."""
        try:
            _, status, ru = os.wait4(p.pid, 0)
        except BaseException:  # interrupted: do not leave the driver running
            p.kill()
            p.wait()
            raise
        p.returncode = os.waitstatus_to_exitcode(status)
        out, err = p.stdout.read(), p.stderr.read()
        p.stdout.close()
        p.stderr.close()
        if p.returncode != 0:
            raise RuntimeError("driver failed: " + err.strip())
        m = re.search(r"pid=(\d+) elapsed_ns=(\d+)", out)
        with open(self.pidfile) as f:
            children = [int(x) for x in f.read().split()]
        os.unlink(self.pidfile)
        return int(m.group(1)), int(m.group(2)) / 1e9, ru.ru_utime + ru.ru_stime, children


class Agent:
    """A yamorid started for one run, with its own state dir and output."""

    def __init__(self, binary, workdir, rules_dir, extra_conf):
        self.binary = binary
        self.dir = workdir
        self.rules_dir = rules_dir
        self.extra_conf = extra_conf
        self.p = None

    def start(self):
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
        self.off = 0
        self.tail = b""

    def new_process_events(self):
        """Process and gap events written since the last call."""
        try:
            with open(self.out, "rb") as f:
                f.seek(self.off)
                data = f.read()
        except FileNotFoundError:
            return []
        self.off += len(data)
        data = self.tail + data
        cut = data.rfind(b"\n") + 1
        self.tail = data[cut:]
        evs = []
        for line in data[:cut].split(b"\n"):
            if b"yamori.process" in line or b'"gap"' in line:
                evs.append(json.loads(line.decode("utf-8", "surrogatepass")))
        return evs

    def stop(self):
        """Stops the agent; returns False when SIGTERM did not end it."""
        ok = stop_proc(self.p)
        if self.p is not None and not self._err.closed:
            self._err.close()
        return ok


class Counts:
    """Start/end events of the driver's children and gap records, counted
    incrementally as events are read."""

    def __init__(self, driver_pid, children, exe):
        self.driver_pid = driver_pid
        self.kids = set(children)
        self.exe = exe
        self.c = {"exec": 0, "exec_any_exe": 0, "exec_no_args": 0, "end": 0, "gap_records": 0,
                  "gap_count_known": 0, "gap_kinds": {}, "exec_missing_fields": 0,
                  "missing_fields": {}}

    def add(self, evs):
        c = self.c
        for e in evs:
            ev = e.get("event", {})
            act = ev.get("action")
            if act == "gap":
                y = e.get("yamori", {}).get("gap", {})
                c["gap_records"] += 1
                c["gap_count_known"] += y.get("count", 0)
                k = "%s/%s" % (y.get("source"), y.get("reason"))
                c["gap_kinds"][k] = c["gap_kinds"].get(k, 0) + 1
                continue
            proc = e.get("process", {})
            pid = proc.get("pid")
            if act == "exec" and proc.get("parent", {}).get("pid") == self.driver_pid \
                    and pid in self.kids:
                c["exec_any_exe"] += 1
                if proc.get("executable") == self.exe:
                    c["exec"] += 1
                if not proc.get("args"):
                    c["exec_no_args"] += 1
                missing = e.get("yamori", {}).get("missing")
                if missing:
                    c["exec_missing_fields"] += 1
                    for m in missing:
                        c["missing_fields"][m] = c["missing_fields"].get(m, 0) + 1
            elif act == "end" and pid in self.kids:
                c["end"] += 1
        return c["exec_any_exe"] + c["end"]


def run_one(cfg, driver, agent, exe, settle, own):
    rec = {"config": cfg, "count": driver.count, "loadavg": [round(x, 2) for x in os.getloadavg()],
           "other_agents": other_agents(own | ({agent.p.pid} if agent and agent.p else set()))}
    try:
        if agent is not None:
            agent.start()
        p = driver.start()
        pid, wall, cpu, children = driver.result(p)
        rec.update({"wall_s": wall, "workload_cpu_s": cpu, "driver_pid": pid})
        if agent is not None:
            # Wait until every child's start and end are written, or nothing
            # new about them came for settle seconds.
            counts = Counts(pid, children, exe)
            t0 = time.monotonic()
            last, progress = -1, t0
            while time.monotonic() - t0 < 600:
                n = counts.add(agent.new_process_events())
                now = time.monotonic()
                if n != last:
                    last, progress = n, now
                if n >= 2 * len(children) or now - progress >= settle:
                    break
                time.sleep(0.2)
            rec["drain_s"] = round(progress - t0, 2)
            rec["cpu_s"] = cpu_seconds(agent.p.pid) - agent.cpu0
            rec["peak_rss_kb"] = status_kb(agent.p.pid, "VmHWM")
            rec["exited_on_sigterm"] = agent.stop()
            rec["agent_notices"] = agent_notices(agent.err)
            counts.add(agent.new_process_events())
            rec.update(counts.c)
    finally:
        if agent is not None:
            agent.stop()
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=10000, help="program runs per run (default 10000)")
    ap.add_argument("--runs", type=int, default=3, help="runs per configuration (default 3)")
    ap.add_argument("--program", default="/bin/true", help="program to run (default /bin/true)")
    ap.add_argument("--agent", default=os.path.join(BUILD_DIR, "agent", "yamorid"),
                    help="yamorid binary (default: $YAMORI_BUILD_DIR/agent/yamorid)")
    ap.add_argument("--rules", default=os.path.join(REPO, "rules"),
                    help="rules directory for the agent (default: the repository's rules/)")
    ap.add_argument("--agent-conf", default="{}",
                    help="JSON merged over the agent configuration (default sensors only: "
                         + json.dumps(SENSORS_ONLY) + ")")
    ap.add_argument("--parent", default="/var/tmp", help="where the work directory is made")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds without new events of the run before counting (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed baseline runs first (default 1)")
    ap.add_argument("--sensors", default="proc,ebpf",
                    help="process sources to run the agent with, comma-separated "
                         "(process.sensor values; default proc,ebpf)")
    ap.add_argument("--json", help="write the results as JSON to this file")
    args = ap.parse_args()

    # Stop cleanly (the finally blocks run) on SIGTERM and SIGINT, even when
    # SIGINT was ignored by the parent (background jobs of a script).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    sources = [x for x in args.sensors.split(",") if x]
    configs = ["baseline"] + ["agent-" + x for x in sources]
    notes = []
    if os.geteuid() != 0:
        configs = ["baseline"]
        notes.append("agent skipped: needs root")
    elif not os.access(args.agent, os.X_OK):
        configs = ["baseline"]
        notes.append("agent skipped: %s not built (scripts/build.sh)" % args.agent)
    exe = os.path.realpath(args.program)
    machine = machine_info()
    workdir = tempfile.mkdtemp(prefix="yamori-bench-exec-", dir=args.parent)
    agents = {}
    build_info = None
    runs = []
    own = {os.getpid()}
    try:
        driver = Driver(workdir, args.program, args.count)
        if len(configs) > 1:
            binary, build_info = snapshot_agent(args.agent, workdir)
            for cfg in configs[1:]:
                extra = merge({"process": {"sensor": cfg[len("agent-"):]}},
                              json.loads(args.agent_conf))
                agents[cfg] = Agent(binary, workdir, args.rules, extra)
        for i in range(args.warmup):
            log("warmup baseline run %d" % (i + 1))
            driver.result(driver.start())
        for rnd in range(args.runs):
            for cfg in configs:
                log("round %d/%d: %s (load %.2f)" % (rnd + 1, args.runs, cfg, os.getloadavg()[0]))
                rec = run_one(cfg, driver, agents.get(cfg), exe, args.settle, own)
                rec["round"] = rnd + 1
                runs.append(rec)
                log("  wall %.2f s%s" % (rec["wall_s"], "" if cfg not in agents else
                                        ", exec %d (%d without args), end %d, gaps %d" %
                                        (rec["exec"], rec["exec_no_args"], rec["end"],
                                         rec["gap_records"])))
                time.sleep(1)
    finally:
        for agent in agents.values():
            agent.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    summary = {}
    base = median(r["wall_s"] for r in runs if r["config"] == "baseline")
    base_cpu = median(r["workload_cpu_s"] for r in runs if r["config"] == "baseline")
    for cfg in configs:
        rs = [r for r in runs if r["config"] == cfg]
        s = {"count": args.count, "runs": len(rs), "wall_s": median(r["wall_s"] for r in rs),
             "wall_s_all": [round(r["wall_s"], 3) for r in rs],
             "loadavg_1m_all": [r["loadavg"][0] for r in rs]}
        s["ratio"] = s["wall_s"] / base if base else None
        s["workload_cpu_s"] = median(r["workload_cpu_s"] for r in rs)
        s["workload_cpu_s_all"] = [round(r["workload_cpu_s"], 2) for r in rs]
        s["cpu_ratio"] = s["workload_cpu_s"] / base_cpu if base_cpu else None
        if cfg in agents:
            for k in ("exec", "exec_no_args", "end", "cpu_s", "peak_rss_kb", "drain_s"):
                s[k] = median(r[k] for r in rs)
            for k in ("exec", "exec_any_exe", "exec_no_args", "end", "gap_records",
                      "gap_count_known", "exec_missing_fields"):
                s[k + "_all"] = [r[k] for r in rs]
            kinds = {}
            for r in rs:
                for k, v in r["gap_kinds"].items():
                    kinds[k] = kinds.get(k, 0) + v
            s["gap_kinds_total"] = kinds
            s["exited_on_sigterm_all"] = [r["exited_on_sigterm"] for r in rs]
            missing = {}
            for r in rs:
                for k, v in r["missing_fields"].items():
                    missing[k] = missing.get(k, 0) + v
            s["missing_fields_total"] = missing
        summary[cfg] = s

    n = args.count
    lines = ["Exec storm: %d runs of %s from one process (fork, execve, waitpid); %d runs per "
             "configuration, medians." % (n, args.program, args.runs), "",
             "| configuration | wall s (median) | ratio vs baseline | workload CPU s (ratio) | "
             "exec events | starts without args | end events | gap records | agent CPU s | "
             "agent peak RSS MiB | load avg 1m (per run) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for cfg, s in summary.items():
        ratio = "%.2fx" % s["ratio"] if s.get("ratio") else "-"
        ratio = (ratio, "%.2f (%s)" % (s["workload_cpu_s"], "%.2fx" % s["cpu_ratio"]
                                       if s.get("cpu_ratio") else "-"))
        if cfg in agents:
            row = ratio + ("%d / %d (%.1f%%)" % (s["exec"], n, 100.0 * s["exec"] / n),
                   "%d (%s)" % (s["exec_no_args"], "/".join(str(x) for x in s["exec_no_args_all"])),
                   "%d / %d (%.1f%%)" % (s["end"], n, 100.0 * s["end"] / n),
                   "%s (%s)" % ("/".join(str(x) for x in s["gap_records_all"]),
                                ", ".join("%s: %d" % kv
                                          for kv in sorted(s["gap_kinds_total"].items()))
                                or "none"),
                   "%.2f" % s["cpu_s"], "%.1f" % (s["peak_rss_kb"] / 1024))
        else:
            row = ratio + ("-", "-", "-", "-", "-", "-")
        lines.append("| %s | %.2f | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            (cfg, s["wall_s"]) + row + (" ".join("%.2f" % x for x in s["loadavg_1m_all"]),)))
    lines += ["", "Wall times per run (s): " + "; ".join(
        "%s %s" % (cfg, " ".join("%.2f" % x for x in s["wall_s_all"]))
        for cfg, s in summary.items()),
        "Workload CPU per run (s, /bin/true children included): " + "; ".join(
            "%s %s" % (cfg, " ".join("%.2f" % x for x in s["workload_cpu_s_all"]))
            for cfg, s in summary.items())]
    for cfg in agents:
        a = summary[cfg]
        lines.append(cfg + ": per run: exec %s, end %s, gap records %s; exec events with "
                     "yamori.missing %s (fields, all runs: %s)" % (
                         a["exec_all"], a["end_all"], a["gap_records_all"],
                         a["exec_missing_fields_all"],
                         ", ".join("%s %d" % kv for kv in sorted(a["missing_fields_total"].items()))
                         or "none"))
        lines.append("Agent ended on SIGTERM in %d of %d runs (else killed after 5 s)" % (
            sum(a["exited_on_sigterm_all"]), a["runs"]))
    lines.append("Machine: %(nproc)s cores, %(cpu)s, %(mem_gib)s GiB, kernel %(kernel)s, "
                 "Debian %(debian)s" % machine)
    print("\n".join(lines))
    if build_info:
        print("Agent build: %s (built %s, git %s, %s modified files under agent/ and common/, "
              "binary sha256 %s)" % (build_info.get("version"), build_info.get("built"),
                                     build_info.get("git_head"), build_info.get("sources_modified"),
                                     build_info["sha256"][:12]))
    for cfg, a in agents.items():
        shown = {k: v for k, v in a.conf.items() if k not in ("state_dir", "output", "control")}
        print("Agent configuration %s (besides private state, output, socket): %s"
              % (cfg, json.dumps(shown)))
    notices = [r["agent_notices"] for r in runs if r.get("agent_notices")]
    if notices:
        print("Agent log (first run): " + " | ".join(notices[0]))
    for note in notes:
        print("\nNote: " + note)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "exec_storm", "machine": machine,
                       "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "args": vars(args),
                       "notes": notes, "agent_build": build_info,
                       "agent_conf": {cfg: a.conf for cfg, a in agents.items()},
                       "summary": summary, "runs": runs}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
