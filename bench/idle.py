#!/usr/bin/env python3
"""Idle benchmark: the agent's memory and CPU while the PC is not doing much.

Starts the Yamori agent (yamorid) with its default configuration and the
repository's rules (the project's budget is "agent memory idle with the
default rules"); state, NDJSON output and control socket are private to the
run. Once the agent logs "sensors armed" (and --settle seconds more, default
0), it is measured for --seconds (default 60):

  CPU    utime+stime delta of /proc/PID/stat (all threads) divided by the
         wall time, as a percentage of one core;
  RSS    VmRSS at the end (split into RssAnon, the agent's own memory, and
         RssFile, mapped program and library pages shared with other
         processes), its minimum and maximum over one sample per
         --interval, and VmHWM, the peak since start (startup included).

"Idle" is the agent's side: the machine may not be. Everything the agent
reports during the window is counted by event.dataset and shown, and the
load average is recorded at the start and end, so that activity by other
work on a shared machine can be told apart from the agent's own cost.

This is a benchmark, not a test: it never fails on a figure. It exits 0
when it ran, 1 when it could not, and stops the agent and removes its
temporary directory on every exit path, including errors and SIGINT/SIGTERM.

    sudo bench/idle.py --seconds 60 --json idle.json
"""

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import (BUILD_DIR, CLK_TCK, REPO, SENSORS_ONLY, cpu_seconds, machine_info, merge, stop_proc)


def log(msg):
    print("[idle] " + msg, file=sys.stderr, flush=True)


def status_fields(pid):
    """VmRSS, VmHWM (kB) and Threads of /proc/PID/status."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k = line.split(":", 1)[0]
            if k in ("VmRSS", "VmHWM", "Threads", "RssAnon", "RssFile"):
                out[k] = int(line.split()[1])
    return out


def build_info(binary, copy):
    with open(copy, "rb") as f:
        info = {"binary": binary, "sha256": hashlib.sha256(f.read()).hexdigest(),
                "built": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(os.stat(binary).st_mtime))}
    try:
        info["version"] = subprocess.run([copy, "--version"], capture_output=True, text=True,
                                         timeout=10).stdout.split("\n")[0]
        info["git_head"] = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                          capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "agent",
                                "common"], capture_output=True, text=True).stdout.strip()
        info["sources_modified"] = len(dirty.splitlines()) if dirty else 0
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def count_events(path, start):
    """Events written after byte offset start, by event.dataset."""
    by = {}
    try:
        with open(path, "rb") as f:
            f.seek(start)
            for line in f:
                try:
                    e = json.loads(line.decode("utf-8", "surrogatepass"))
                except ValueError:
                    continue
                ev = e.get("event", {})
                k = ev.get("dataset", "?")
                if ev.get("action") == "gap":
                    k = "gap"
                by[k] = by.get(k, 0) + 1
    except FileNotFoundError:
        pass
    return by


def run_once(binary, workdir, conf, seconds, settle, interval):
    out = os.path.join(workdir, "agent.ndjson")
    err = os.path.join(workdir, "agent.err")
    conf_path = os.path.join(workdir, "agent.json")
    shutil.rmtree(conf["state_dir"], ignore_errors=True)
    for p in (out, err, conf["control"]["socket"]):
        if os.path.exists(p):
            os.unlink(p)
    with open(conf_path, "w") as f:
        json.dump(conf, f)
    rec = {"loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    errf = open(err, "wb")
    p = subprocess.Popen([binary, "--config", conf_path], stdout=subprocess.DEVNULL, stderr=errf,
                         stdin=subprocess.DEVNULL)
    try:
        t_start = time.monotonic()
        while True:
            with open(err, "rb") as f:
                if b"sensors armed" in f.read():
                    break
            if p.poll() is not None:
                raise RuntimeError("agent exited early: " + open(err).read()[-2000:])
            if time.monotonic() - t_start > 60:
                raise RuntimeError("agent not armed after 60 s")
            time.sleep(0.02)
        rec["armed_after_s"] = round(time.monotonic() - t_start, 3)
        time.sleep(settle)
        off0 = os.path.getsize(out) if os.path.exists(out) else 0
        c0, t0 = cpu_seconds(p.pid), time.monotonic()
        samples = []
        while time.monotonic() - t0 < seconds:
            time.sleep(min(interval, max(0.0, seconds - (time.monotonic() - t0))))
            samples.append(status_fields(p.pid)["VmRSS"])
        c1, t1 = cpu_seconds(p.pid), time.monotonic()
        st = status_fields(p.pid)
        rec.update({"wall_s": round(t1 - t0, 3), "cpu_s": round(c1 - c0, 3),
                    "cpu_percent": round(100.0 * (c1 - c0) / (t1 - t0), 4),
                    "vmrss_kb": st["VmRSS"], "vmhwm_kb": st["VmHWM"], "threads": st["Threads"],
                    "rss_anon_kb": st.get("RssAnon"), "rss_file_kb": st.get("RssFile"),
                    "vmrss_min_kb": min(samples), "vmrss_max_kb": max(samples),
                    "loadavg_end": [round(x, 2) for x in os.getloadavg()]})
        time.sleep(0.3)  # the agent flushes its output every 100 ms
        rec["events_in_window"] = count_events(out, off0)
    finally:
        rec["exited_on_sigterm"] = stop_proc(p)
        errf.close()
    notices = []
    with open(err, errors="replace") as f:
        for line in f:
            if "rules" in line or "sensors armed" in line:
                notices.append(line.strip().split(" ", 1)[-1])
    rec["agent_notices"] = notices[:6]
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60, help="measured window (default 60)")
    ap.add_argument("--runs", type=int, default=1, help="agent starts measured (default 1)")
    ap.add_argument("--settle", type=float, default=0,
                    help="seconds between 'sensors armed' and the window (default 0)")
    ap.add_argument("--interval", type=float, default=1.0, help="RSS sample interval (default 1 s)")
    ap.add_argument("--agent", default=os.path.join(BUILD_DIR, "agent", "yamorid"),
                    help="yamorid binary (default: $YAMORI_BUILD_DIR/agent/yamorid)")
    ap.add_argument("--rules", default=os.path.join(REPO, "rules"),
                    help="rules directory (default: the repository's rules/)")
    ap.add_argument("--sensors-only", action="store_true",
                    help="turn scanning on write and the exec guard off: "
                         + json.dumps(SENSORS_ONLY))
    ap.add_argument("--agent-conf", default="{}", help="JSON merged over the agent configuration")
    ap.add_argument("--parent", default="/var/tmp", help="where the work directory is made")
    ap.add_argument("--wait-load", type=float, default=0,
                    help="before each run, wait (up to --wait-max s) until the 1-minute load "
                         "average is below this (default 0: do not wait)")
    ap.add_argument("--wait-max", type=float, default=600, help="longest wait for --wait-load")
    ap.add_argument("--json", help="write the results as JSON to this file")
    args = ap.parse_args()

    # Stop cleanly (the finally blocks run) on SIGTERM and SIGINT, even when
    # SIGINT was ignored by the parent (background jobs of a script).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    if os.geteuid() != 0:
        print("idle: not run: the agent needs root")
        return 0
    if not os.access(args.agent, os.X_OK):
        print("idle: not run: %s not built (scripts/build.sh)" % args.agent)
        return 1
    machine = machine_info()
    workdir = tempfile.mkdtemp(prefix="yamori-bench-idle-", dir=args.parent)
    runs = []
    try:
        binary = os.path.join(workdir, "yamorid")
        shutil.copy2(args.agent, binary)
        info = build_info(args.agent, binary)
        conf = {"state_dir": os.path.join(workdir, "agent-state"),
                "output": os.path.join(workdir, "agent.ndjson"),
                "rules": {"dirs": [args.rules]},
                "control": {"socket": os.path.join(workdir, "ctl.sock")}}
        if args.sensors_only:
            merge(conf, json.loads(json.dumps(SENSORS_ONLY)))
        merge(conf, json.loads(args.agent_conf))
        for i in range(args.runs):
            log("run %d/%d: %.0f s (load %.2f)" % (i + 1, args.runs, args.seconds,
                                                   os.getloadavg()[0]))
            waited = 0.0
            if args.wait_load > 0:
                t = time.monotonic()
                while os.getloadavg()[0] >= args.wait_load and time.monotonic() - t < args.wait_max:
                    time.sleep(5)
                waited = time.monotonic() - t
                log("waited %.0f s for load %.2f" % (waited, os.getloadavg()[0]))
            rec = run_once(binary, workdir, conf, args.seconds, args.settle, args.interval)
            rec["waited_for_load_s"] = round(waited)
            runs.append(rec)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def med(k):
        return statistics.median(r[k] for r in runs)

    lines = ["Idle: agent measured for %.0f s after 'sensors armed' (+%.0f s settle); "
             "%d run%s%s." % (
        args.seconds, args.settle, len(runs), "" if len(runs) == 1 else "s",
        "" if len(runs) == 1 else ", medians"), "",
        "| VmRSS MiB (end) | of it anon / file MiB | VmRSS min-max MiB | VmHWM MiB | "
        "CPU % of one core | CPU s | threads | events written in the window | "
        "load avg 1m start/end |",
        "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append("| %.1f | %.1f / %.1f | %.1f-%.1f | %.1f | %.3f | %.2f | %d | %s | "
                     "%.2f / %.2f |" % (
            r["vmrss_kb"] / 1024, (r["rss_anon_kb"] or 0) / 1024, (r["rss_file_kb"] or 0) / 1024,
            r["vmrss_min_kb"] / 1024, r["vmrss_max_kb"] / 1024,
            r["vmhwm_kb"] / 1024, r["cpu_percent"], r["cpu_s"], r["threads"],
            ", ".join("%s %d" % kv for kv in sorted(r["events_in_window"].items())) or "none",
            r["loadavg_start"][0], r["loadavg_end"][0]))
    if len(runs) > 1:
        lines.append("| median %.1f | | | %.1f | %.3f | %.2f | | | |" % (
            med("vmrss_kb") / 1024, med("vmhwm_kb") / 1024, med("cpu_percent"), med("cpu_s")))
    shown = {k: v for k, v in conf.items() if k not in ("state_dir", "output", "control")}
    lines += ["", "Agent build: %s (built %s, git %s, %s modified files under agent/ and common/, "
              "binary sha256 %s)" % (info.get("version"), info.get("built"), info.get("git_head"),
                                     info.get("sources_modified"), info["sha256"][:12]),
              "Agent configuration (besides private state, output, socket): " + json.dumps(shown),
              "Agent log: " + " | ".join(runs[0]["agent_notices"]),
              "Agent ended on SIGTERM in %d of %d runs (else killed after 5 s)" % (
                  sum(r["exited_on_sigterm"] for r in runs), len(runs)),
              "Machine: %(nproc)s cores, %(cpu)s, %(mem_gib)s GiB, kernel %(kernel)s, "
              "Debian %(debian)s" % machine]
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "idle", "machine": machine, "time": time.strftime(
                "%Y-%m-%dT%H:%M:%S%z"), "args": vars(args), "agent_build": info, "agent_conf": conf,
                "runs": runs}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
