#!/usr/bin/env python3
"""Behaviour rules inside the running agent: what they cost and how fast an
alert reaches the console.

1. CPU. One agent at a time (both sensors on, the project's rules/ with its
   default behaviour rules, NDJSON output, no console), with
   `behaviour.enabled` true ("on") or false ("off"), rounds interleaved.
   The workload is paced at about --rate events per second for --seconds:
   files created, written and deleted in a fresh directory under /var/tmp
   (three file events each) and programs started (/bin/true, a start and an
   end event each), so that about 80% of the events are file events and the
   rest process events, as on a busy PC. The agent's CPU (utime+stime from
   /proc) is read around the workload; the engine's cost is the difference
   of the medians on and off, in % of one core. The agent's own count of
   evaluated events (behaviour_evaluated) says the engine saw them.

2. Latency. An agent enrolled to a real console on 127.0.0.1 (check-in
   every second), default configuration apart from the test's paths. Each
   round runs a command a default rule matches (a base64-decoded script
   piped to a shell, with a marker) and polls the console's store until the
   alert with that marker is there; the time is from just before the
   command starts to the poll that saw it (poll every 10 ms, so the figure
   is at most 10 ms late).

    sudo bench/behaviour_agent.py [--rate 5000] [--seconds 10] [--runs 3] [--alerts 50]

This is a benchmark, not a test: it never fails on a figure.
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))
from benchlib import cpu_seconds, loadavg, machine_info, median  # noqa: E402
import yit  # noqa: E402
import linkutil  # noqa: E402


def workload(rate, seconds, workdir):
    """Paced file and exec storm; returns (file events, process events)."""
    files_per_s = rate * 0.8 / 3
    execs_per_s = rate * 0.2 / 2
    start = time.monotonic()
    nf = ne = 0
    devnull = os.open(os.devnull, os.O_WRONLY)
    while True:
        el = time.monotonic() - start
        if el >= seconds:
            break
        while nf < files_per_s * el:
            p = os.path.join(workdir, "f%d" % nf)
            fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o600)
            os.write(fd, b"x" * 64)
            os.close(fd)
            os.unlink(p)
            nf += 1
        while ne < execs_per_s * el:
            pid = os.posix_spawn("/bin/true", ["true"], os.environ,
                                 file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 1)])
            os.waitpid(pid, 0)
            ne += 1
        time.sleep(0.002)
    os.close(devnull)
    return nf * 3, ne * 2


def counters(ag):
    rc, st = ag.ctl_json("status")
    return st[0]["counters"] if rc == 0 and st else {}


def cpu_round(t, args, on, r):
    work = tempfile.mkdtemp(prefix="yamori-bench-behave-", dir="/var/tmp")
    try:
        ag = yit.Agent(t, {"policy": {"exec": "off", "file": "detect"}, "scan": {"on_write": False},
                           "spool": {"enabled": False}, "behaviour": {"enabled": on}},
                       name="cpu-%s-%d" % ("on" if on else "off", r))
        time.sleep(1)
        c0 = cpu_seconds(ag.proc.p.pid)
        k0 = counters(ag)
        load = loadavg()
        t0 = time.monotonic()
        fe, pe = workload(args.rate, args.seconds, work)
        wall = time.monotonic() - t0
        time.sleep(1)  # the last events
        c1 = cpu_seconds(ag.proc.p.pid)
        k1 = counters(ag)
        ag.proc.stop()
        return {"on": on, "cpu_s": c1 - c0, "wall_s": wall, "file_events": fe,
                "process_events": pe, "events_per_s": (fe + pe) / wall,
                "agent_events": k1.get("events", 0) - k0.get("events", 0),
                "evaluated": k1.get("behaviour_evaluated", 0) - k0.get("behaviour_evaluated", 0),
                "alerts": k1.get("behaviour_alerts", 0) - k0.get("behaviour_alerts", 0),
                "load": load}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def latency(t, n):
    con = yit.Console(t, extra=["--checkin-s", "1"])
    con.tenant("acme")
    ag = linkutil.enrolled_agent(t, con, {"behaviour": {"rate_limit_s": 0}})
    t.wait_for(lambda: counters(ag).get("uplink_checkins", 0) > 0, timeout=30,
               what="first check-in")
    times = []
    for i in range(n):
        mark = "bench%d-%d" % (os.getpid(), i)
        script = base64.b64encode(("true %s\n" % mark).encode()).decode()
        t0 = time.monotonic()
        subprocess.run(["/bin/bash", "-c", "echo %s | base64 -d | sh; : %s" % (script, mark)])
        seen = None
        while time.monotonic() - t0 < 10:
            rows = con.query("SELECT 1 FROM events WHERE agent_id = ? AND kind = 'alert'"
                             " AND json LIKE ?", ag.agent_id, "%" + mark + "%")
            if rows:
                seen = time.monotonic() - t0
                break
            time.sleep(0.01)
        times.append(seen)
        time.sleep(0.2)
    return times


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--alerts", type=int, default=50)
    ap.add_argument("--json")
    args = ap.parse_args()
    yit.require_root()
    t = yit.Test(__file__)
    res = {"machine": machine_info(), "rate": args.rate, "seconds": args.seconds, "rounds": []}
    for r in range(args.runs):
        for on in (False, True):
            x = cpu_round(t, args, on, r)
            res["rounds"].append(x)
            print("round %d %-3s: agent %.3f CPU s over %.1f s (%.0f events/s, agent wrote %d, "
                  "evaluated %d, alerts %d, load %s)" % (
                      r, "on" if on else "off", x["cpu_s"], x["wall_s"], x["events_per_s"],
                      x["agent_events"], x["evaluated"], x["alerts"], x["load"]), flush=True)
    for on in (False, True):
        xs = [x for x in res["rounds"] if x["on"] == on]
        res["on" if on else "off"] = {
            "cpu_pct": median([100.0 * x["cpu_s"] / x["wall_s"] for x in xs]),
            "events_per_s": median([x["events_per_s"] for x in xs])}
    res["engine_cpu_pct"] = res["on"]["cpu_pct"] - res["off"]["cpu_pct"]
    print("agent CPU, median: off %.2f%%, on %.2f%% of one core: the engine adds %.2f%%" % (
        res["off"]["cpu_pct"], res["on"]["cpu_pct"], res["engine_cpu_pct"]))
    lat = latency(t, args.alerts)
    ok = [x for x in lat if x is not None]
    res["latency_s"] = lat
    if ok:
        res["latency_p50_ms"] = 1000 * pct(ok, 50)
        res["latency_p99_ms"] = 1000 * pct(ok, 99)
        print("command to alert at the console: %d of %d seen, p50 %.0f ms, p99 %.0f ms, "
              "max %.0f ms" % (len(ok), len(lat), res["latency_p50_ms"], res["latency_p99_ms"],
                               1000 * max(ok)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    t.failures = 0
    t.done()


if __name__ == "__main__":
    main()
