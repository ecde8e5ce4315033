#!/usr/bin/env python3
"""Added latency per program start with the agent's exec guard in block mode.

A tiny C driver (embedded below, compiled on the fly with gcc -O2 into a
temporary directory) starts a program N times per configuration (default
5,000), one after the other: fork, execve, waitpid. Each start's wall time
(from before fork() to after waitpid(), CLOCK_MONOTONIC) is written to a
file; W untimed starts (default 200) come first in every run so that the
program is in the page cache and, with the agent, in its verdict cache.
Programs (default both):

  tiny   a C program that only returns 0, linked statically (gcc -O2
         -static; dynamically when static linking is not available): one
         exec permission request per start;
  true   /usr/bin/true, dynamically linked: the kernel also opens the
         dynamic loader for execution, so two requests per start.

Configurations:

  none   no agent started by this benchmark;
  off    the agent with policy.exec "off": its sensors (fanotify file
         events, proc connector) run, program starts are not checked;
  block  the agent with policy.exec "block" (--exec-policy detect takes the
         same path for clean programs and never denies anyone's program
         start) and the default rules: every program start waits for the
         exec guard's answer.

The N starts are split over R rounds (default 10, so 500 starts per run);
each round runs none, off, block one after the other, with a fresh agent
for each agent configuration, so that a load that drifts over minutes hits
all three alike. The samples of all rounds are pooled.

Both agent configurations set policy.file "detect" (no quarantine): the
agent watches the whole machine, and files other people's tests write must
not be moved away; it changes nothing on the program-start path. In block
mode the agent does deny malicious-looking program starts anywhere on the
machine while it runs (its exec_denied counter is recorded).

Reported per configuration and program: median and p99 of the per-start
time in microseconds, and the added median and p99 against "none" (goals:
under 50 us median and under 1 ms p99 added for a cached program start);
also the added median paired by round (median over the rounds of the
round's median minus that round's "none" median).

First start of a new binary (a verdict-cache miss, so the guard has the file
scanned before it answers): before each agent starts, K fresh copies
(default 6 per round) of each program are made in the temporary directory
(new inodes, so no cached verdict); after the agent is armed each copy is
started once and timed. The same is done without the agent for the
baseline.

The agent's exec_checked counter (status) is read around the loops as a
sanity check that the guard saw the starts (it counts every start on the
machine); the agent's CPU seconds during the loops are reported, and per
start after subtracting the agent's CPU rate over a --idle-sample window
(default 2 s) just before, when this benchmark was idle (the agent handles
everything else happening on the machine too). The load average
(os.getloadavg()) is recorded before every run, and so are Yamori agents
running on the machine that this benchmark did not start (another agent's
exec guard slows every configuration, the baseline included).

This is a benchmark, not a test: it never fails on a figure. It exits 0 when
it ran, 1 when it could not, and stops the agent and removes its temporary
directory on every exit path.

    sudo bench/exec_latency.py --count 5000 --rounds 10 --json exec_latency.json
"""

import argparse
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

from benchlib import (BUILD_DIR, CLK_TCK, REPO, cpu_seconds, git_state, loadavg, machine_info, other_agents, snapshot_rules)

CONFIGS = ("none", "off", "block")

DRIVER_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* One start: fork, execve, waitpid. Returns the wall time in ns, or -1. */
static long long one(const char *prog) {
  char *argv[] = {(char *)prog, NULL};
  long long t0 = now_ns();
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "execlat: fork: %s\n", strerror(errno));
    return -1;
  }
  if (pid == 0) {
    execve(prog, argv, environ);
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      fprintf(stderr, "execlat: waitpid: %s\n", strerror(errno));
      return -1;
    }
  }
  long long t1 = now_ns();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "execlat: %s did not exit 0 (status 0x%x)\n", prog, (unsigned)status);
    return -1;
  }
  return t1 - t0;
}

int main(int argc, char **argv) {
  if (argc == 6 && strcmp(argv[1], "loop") == 0) {
    /* execlat loop PROG COUNT WARMUP OUTFILE */
    long n = atol(argv[3]), w = atol(argv[4]);
    if (n <= 0 || w < 0)
      return 2;
    long long *t = calloc((size_t)n, sizeof(*t));
    if (t == NULL)
      return 1;
    for (long i = 0; i < w; i++)
      if (one(argv[2]) < 0)
        return 1;
    for (long i = 0; i < n; i++)
      if ((t[i] = one(argv[2])) < 0)
        return 1;
    FILE *f = fopen(argv[5], "w");
    if (f == NULL)
      return 1;
    for (long i = 0; i < n; i++)
      fprintf(f, "%lld\n", t[i]);
    return fclose(f) == 0 ? 0 : 1;
  }
  if (argc >= 4 && strcmp(argv[1], "each") == 0) {
    /* execlat each OUTFILE PROG... : each program once */
    int n = argc - 3;
    long long *t = calloc((size_t)n, sizeof(*t));
    if (t == NULL)
      return 1;
    for (int i = 0; i < n; i++)
      if ((t[i] = one(argv[3 + i])) < 0)
        return 1;
    FILE *f = fopen(argv[2], "w");
    if (f == NULL)
      return 1;
    for (int i = 0; i < n; i++)
      fprintf(f, "%lld\n", t[i]);
    return fclose(f) == 0 ? 0 : 1;
  }
  fprintf(stderr, "usage: execlat loop PROG COUNT WARMUP OUT | execlat each OUT PROG...\n");
  return 2;
}
"""

TINY_C = "int main(void) { return 0; }\n"


def log(msg):
    print("[exec_latency] " + msg, file=sys.stderr, flush=True)


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


def percentile(sorted_vals, q):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(-(-q * len(sorted_vals) // 100)) - 1))
    return sorted_vals[k]


def stats_us(ns_values):
    v = sorted(x / 1000.0 for x in ns_values)
    return {"n": len(v), "median_us": round(statistics.median(v), 1),
            "p90_us": round(percentile(v, 90), 1), "p99_us": round(percentile(v, 99), 1),
            "max_us": round(v[-1], 1), "mean_us": round(statistics.fmean(v), 1)}


class Agent:
    def __init__(self, binary, ctl, workdir, name, policy_exec, rules_dir):
        self.ctl_bin = ctl
        self.dir = tempfile.mkdtemp(prefix=name + "-", dir=workdir)
        self.conf_path = os.path.join(self.dir, "agent.json")
        # No event output: gaps and unscanned starts are read from the
        # status counters.
        conf = {"state_dir": os.path.join(self.dir, "state"), "output": "",
                "rules": {"dirs": [rules_dir]},
                "control": {"socket": os.path.join(self.dir, "ctl.sock")},
                # Program starts as configured; malicious files written by
                # other work on the machine meanwhile are only reported.
                "policy": {"exec": policy_exec, "file": "detect"}}
        with open(self.conf_path, "w") as f:
            json.dump(conf, f)
        self.err_path = os.path.join(self.dir, "agent.err")
        self._err = open(self.err_path, "wb")
        self.p = subprocess.Popen([binary, "--config", self.conf_path], stdout=subprocess.DEVNULL,
                                  stderr=self._err, stdin=subprocess.DEVNULL)
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
                return json.loads(line).get("counters", {})
        return {}

    def stop(self):
        """Stops the agent; True when it exited on SIGTERM."""
        ok = stop_proc(self.p)
        if not self._err.closed:
            self._err.close()
        return ok


def run_driver(argv):
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("driver failed (%d): %s" % (r.returncode, r.stderr.strip()))


def read_ns(path):
    with open(path) as f:
        return [int(x) for x in f.read().split()]


def build(work):
    drv_c = os.path.join(work, "execlat.c")
    with open(drv_c, "w") as f:
        f.write(DRIVER_C)
    drv = os.path.join(work, "execlat")
    subprocess.run(["gcc", "-O2", "-o", drv, drv_c], check=True)
    tiny_c = os.path.join(work, "tiny.c")
    with open(tiny_c, "w") as f:
        f.write(TINY_C)
    tiny = os.path.join(work, "tiny")
    static = subprocess.run(["gcc", "-O2", "-static", "-o", tiny, tiny_c], capture_output=True)
    if static.returncode != 0:
        log("static linking failed, tiny is dynamically linked")
        subprocess.run(["gcc", "-O2", "-o", tiny, tiny_c], check=True)
    return drv, tiny, static.returncode == 0


def fresh_copies(work, programs, k, tag):
    """K copies of each program under new names (new inodes: no cached verdict)."""
    d = os.path.join(work, "fresh-" + tag)
    os.makedirs(d)
    out = {}
    for name, prog in programs.items():
        out[name] = []
        for i in range(k):
            p = os.path.join(d, "%s-%02d" % (name, i))
            shutil.copyfile(prog, p)
            os.chmod(p, 0o755)
            out[name].append(p)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=5000,
                    help="timed starts per configuration and program, split over the rounds")
    ap.add_argument("--warmup", type=int, default=200, help="untimed starts before each run")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--exec-policy", default="block", choices=("block", "detect"),
                    help="policy.exec of the third configuration (detect: same path for "
                         "clean programs, never denies other people's program starts)")
    ap.add_argument("--idle-sample", type=float, default=2.0,
                    help="seconds to sample the agent's CPU rate before the starts")
    ap.add_argument("--fresh", type=int, default=6,
                    help="fresh copies per program and round for first starts")
    ap.add_argument("--programs", default="tiny,true",
                    help="comma-separated: tiny (static C program), true (/usr/bin/true), or paths")
    ap.add_argument("--build-dir", default=BUILD_DIR)
    ap.add_argument("--rules", default=os.path.join(REPO, "rules"))
    ap.add_argument("--workdir", default="/var/tmp")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
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
    work = tempfile.mkdtemp(prefix="yamori-execlat-", dir=args.workdir)
    own = {os.getpid()}
    agent = None
    res = {"machine": machine_info(), "git": git_state(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "args": vars(args), "loadavg_start": loadavg()}
    try:
        rules_dir, res["rules_sha256"] = snapshot_rules(args.rules, work)
        drv, tiny, static = build(work)
        programs = {}
        for p in args.programs.split(","):
            if p == "tiny":
                programs["tiny"] = tiny
            elif p == "true":
                programs["true"] = os.path.realpath("/usr/bin/true")
            else:
                programs[os.path.basename(p)] = os.path.realpath(p)
        res["programs"] = programs
        res["tiny_static"] = static
        per_round = max(1, args.count // args.rounds)
        res["starts_per_round"] = per_round
        samples = {c: {n: [] for n in programs} for c in CONFIGS}
        first = {c: {n: [] for n in programs} for c in CONFIGS}
        runs = []
        for r in range(args.rounds):
            for cfg in CONFIGS:
                copies = fresh_copies(work, programs, args.fresh, "%s-%d" % (cfg, r))
                if cfg != "none":
                    agent = Agent(yamorid, ctl, work, "agent-%s-%d" % (cfg, r),
                                  "off" if cfg == "off" else args.exec_policy, rules_dir)
                    own.add(agent.p.pid)
                run = {"round": r + 1, "config": cfg, "loadavg": loadavg(),
                       "time": time.strftime("%H:%M:%S", time.gmtime()),
                       "other_agents": other_agents(own), "programs": {}}
                if agent:
                    # The agent also handles everything else happening on the
                    # machine: its CPU rate while this benchmark is idle.
                    c0, t0 = cpu_seconds(agent.p.pid), time.monotonic()
                    time.sleep(args.idle_sample)
                    run["agent_idle_cpu_rate"] = round(
                        (cpu_seconds(agent.p.pid) - c0) / (time.monotonic() - t0), 3)
                # first starts of fresh binaries, right after the agent is armed
                for name in programs:
                    out = os.path.join(work, "first.out")
                    run_driver([drv, "each", out] + copies[name])
                    v = read_ns(out)
                    first[cfg][name] += v
                    run["programs"].setdefault(name, {})["first_us"] = [round(x / 1000, 1) for x in v]
                for name, prog in programs.items():
                    c0 = agent.counters() if agent else {}
                    cpu0 = cpu_seconds(agent.p.pid) if agent else 0.0
                    out = os.path.join(work, "loop.out")
                    t0 = time.monotonic()
                    run_driver([drv, "loop", prog, str(per_round), str(args.warmup), out])
                    loop_s = time.monotonic() - t0
                    v = read_ns(out)
                    samples[cfg][name] += v
                    st = stats_us(v)
                    if agent:
                        c1 = agent.counters()
                        st["agent_cpu_s"] = round(cpu_seconds(agent.p.pid) - cpu0, 2)
                        st["loop_s"] = round(loop_s, 2)
                        st["agent_cpu_us_per_start_net"] = round(
                            (st["agent_cpu_s"] - run["agent_idle_cpu_rate"] * loop_s) * 1e6
                            / (per_round + args.warmup), 1)
                        st["exec_checked"] = c1.get("exec_checked", 0) - c0.get("exec_checked", 0)
                        st["exec_deadline_allowed"] = (c1.get("exec_deadline_allowed", 0)
                                                       - c0.get("exec_deadline_allowed", 0))
                    run["programs"][name].update(st)
                    log("round %d %-5s %-4s median %7.1f us  p99 %8.1f us  first(median) %8.1f us  "
                        "checked=%s load=%s" % (r + 1, cfg, name, st["median_us"], st["p99_us"],
                                                statistics.median(run["programs"][name]["first_us"]),
                                                st.get("exec_checked", "-"), run["loadavg"]))
                if agent:
                    c = agent.counters()
                    run["agent_counters"] = {k: c.get(k) for k in (
                        "gaps", "exec_checked", "exec_denied", "exec_deadline_allowed",
                        "files_scanned", "scan_cache_hits", "alerts")}
                    run["agent_exited_on_sigterm"] = agent.stop()
                    own.discard(agent.p.pid)
                    agent = None
                shutil.rmtree(os.path.join(work, "fresh-%s-%d" % (cfg, r)), ignore_errors=True)
                runs.append(run)
        res["runs"] = runs
        summary = {}
        for name in programs:
            base = stats_us(samples["none"][name])
            fbase = statistics.median(first["none"][name]) / 1000.0
            for cfg in CONFIGS:
                s = stats_us(samples[cfg][name])
                f = sorted(x / 1000.0 for x in first[cfg][name])
                s["first_start_median_us"] = round(statistics.median(f), 1)
                s["first_start_max_us"] = round(f[-1], 1)
                s["added_median_us"] = round(s["median_us"] - base["median_us"], 1)
                s["added_p99_us"] = round(s["p99_us"] - base["p99_us"], 1)
                s["first_start_added_median_us"] = round(s["first_start_median_us"] - fbase, 1)
                # Paired by round (the configurations of a round ran within a
                # minute of each other): robust to the load drifting.
                rb = {x["round"]: x["programs"][name]["median_us"] for x in runs if x["config"] == "none"}
                diffs = [x["programs"][name]["median_us"] - rb[x["round"]] for x in runs
                         if x["config"] == cfg]
                s["added_median_us_paired"] = round(statistics.median(diffs), 1)
                if cfg != "none":
                    s["agent_cpu_us_per_start_net"] = statistics.median(
                        x["programs"][name]["agent_cpu_us_per_start_net"] for x in runs
                        if x["config"] == cfg)
                summary.setdefault(name, {})[cfg] = s
        res["summary"] = summary
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        log("error: %s" % e)
        return 1
    finally:
        if agent is not None:
            agent.stop()
        shutil.rmtree(work, ignore_errors=True)
    res["loadavg_end"] = loadavg()

    print("\n### Per program start, microseconds (%d rounds x %d starts pooled)\n"
          % (args.rounds, per_round))
    print("| program | config | median | p99 | added median | added median, paired by round "
          "| added p99 | first start (median of %d) | first start added | agent CPU us per start |"
          % (args.fresh * args.rounds))
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in programs:
        for cfg in CONFIGS:
            s = summary[name][cfg]
            add = ("%+.1f" % s["added_median_us"], "%+.1f" % s["added_p99_us"],
                   "%+.1f" % s["first_start_added_median_us"],
                   "%+.1f" % s["added_median_us_paired"]) if cfg != "none" else ("", "", "", "")
            label = args.exec_policy if cfg == "block" else cfg
            print("| %s | %s | %.1f | %.1f | %s | %s | %s | %.1f | %s | %s |"
                  % (name, label, s["median_us"], s["p99_us"], add[0], add[3], add[1],
                     s["first_start_median_us"], add[2],
                     "%.0f" % s["agent_cpu_us_per_start_net"] if cfg != "none" else ""))
    print("\nload averages before the runs: " + ", ".join(
        "%s %s" % (r["config"], r["loadavg"][0]) for r in runs))
    print("other agents running: " + ", ".join(str(r["other_agents"]) for r in runs))
    denied = [(r["time"], r["agent_counters"]["exec_denied"]) for r in runs
              if r.get("agent_counters", {}).get("exec_denied")]
    if denied:
        print("program starts denied machine-wide by the agent (UTC time of the run, count): %s"
              % denied)
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
