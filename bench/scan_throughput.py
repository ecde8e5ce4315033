#!/usr/bin/env python3
"""On-demand scan throughput: yamorictl against the yara command line tool.

Same rules (every rules/*.yar file, each in its own namespace named after the
file, as the agent compiles them), same files (default /usr/bin and
/usr/include), page cache warmed first so that both read from memory.

  yara      yara -r -N -p THREADS -c -w -z MAXBYTES
                 -d filename= -d filepath= -d extension= -d filetype= -d owner=
                 -d is_executable=false
                 NS1:FILE1 NS2:FILE2 ... --scan-list LIST
            (yara takes one target; the targets go in a scan list, which
            yara 4.2 walks like directories given on the command line).
            The external variables are all empty: the agent's scanner sets
            them per file, but for throughput the values do not matter.
            -z skips files larger than the limit yamorictl's own scanner
            applies (64 MiB), so that both scan the same files.
  yara -f   the same in fast-matching mode, which is the mode our scanner
            uses (SCAN_FLAGS_FAST_MODE); reported as a second reference.
  yamorictl yamorictl --rules RULES --json scan TARGET...
            (no agent; its own scanner threads, one per core; every file is
            also hashed with SHA-256).

The three run interleaved, R times (default 3); the median wall time (and
the child's CPU seconds from wait4) is reported, with the ratio
yara_time / yamori_time (>= 1.0 means yamorictl is at least as fast). The
fixed cost of one invocation (start and rules compilation: each tool on one
empty file, median of 3) is reported next to it.

The rule files are copied into the temporary directory first, so that every
tool and agent of the run uses the same version of them.

Files scanned are counted from the tools' output (yara -c prints one line
per file scanned; yamorictl one JSON line per file), matches likewise. On a
clean system both find nothing, so the matching sets are also compared on
the project's synthetic positive samples (tests/rules/cases.json, cases with
"expect": "match", decoded one per sub-directory under their file names):
yara runs once per sample with the per-file external variables the agent
would define (filename, filepath, extension, filetype, owner), and once
recursively with empty externals to show which matches depend on them.
The samples are written to a private ramfs mount when possible: the agent's
sensors skip ramfs by design, so agents other people run on the machine do
not alert on or quarantine them; otherwise to a temporary directory.

Second pass over unchanged files (the agent's verdict cache): a fresh agent
(policy.exec off, policy.file detect, scan.on_write false) is started,
`yamorictl --config CONF --json scan TARGET...` runs twice through it, and
the wall times of both passes, their speedup, and the agent's files_scanned
and scan_cache_hits counter deltas are reported. Repeated --agent-rounds
times with a fresh agent each time, for the targets and then for each
--agent-subset tree (default /usr/bin and /usr/include/linux: far fewer
files than the cache has slots, large and small files). The second-pass hits the cache can give are also predicted from its
slot function (scanner.c: a direct-mapped table of 8,192 slots keyed by
device, inode and mtime; when both passes visit the files in the same order
only the files alone in their slot can hit).

The load average (os.getloadavg()) is recorded before every run, and so are
Yamori agents running on the machine that this benchmark did not start.

This is a benchmark, not a test: it never fails on a figure. It exits 0 when
it ran, 1 when it could not, and stops the agent, unmounts the ramfs and
removes its temporary directory on every exit path.

    sudo bench/scan_throughput.py --runs 3 --json scan_throughput.json
"""

import argparse
import base64
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

LOCAL_MAX_FILE_BYTES = 64 * 1024 * 1024  # yamorictl's own scanner (scan_local)
CACHE_SLOTS = 8192  # the scanner's verdict cache (scanner.c)
AGENT_MAX_FILE_BYTES = 33554432  # scan.max_file_bytes default
MACHO_MAGICS = (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf",
                b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe")


def log(msg):
    print("[scan_throughput] " + msg, file=sys.stderr, flush=True)


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


def timed(argv, out_path):
    """Runs argv with stdout to out_path; returns (rc, wall s, child CPU s)."""
    err_path = out_path + ".err"
    with open(out_path, "wb") as out, open(err_path, "wb") as errf:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=out, stderr=errf, stdin=subprocess.DEVNULL)
        try:
            _, status, ru = os.wait4(p.pid, 0)
        except BaseException:
            stop_proc(p)
            raise
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    with open(err_path, "rb") as f:
        err = f.read().decode("utf-8", "replace")
    os.unlink(err_path)
    if err.strip():
        log("%s stderr: %s" % (os.path.basename(argv[0]), err.strip()[-500:]))
    return p.returncode, wall, ru.ru_utime + ru.ru_stime


# ---------------------------------------------------------------- files


def walk_files(targets):
    """Regular files under targets, symlinks not followed, with sizes."""
    files = {}
    for t in targets:
        for root, dirs, names in os.walk(t, followlinks=False):
            for n in names:
                p = os.path.join(root, n)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if (st.st_mode & 0o170000) == 0o100000:
                    files[p] = st.st_size
    return files


def warm(files):
    """Reads every file once so both tools read from the page cache."""
    total = 0
    buf = bytearray(1 << 20)
    for p in files:
        try:
            with open(p, "rb", buffering=0) as f:
                while True:
                    n = f.readinto(buf)
                    if not n:
                        break
                    total += n
        except OSError:
            pass
    return total


# ---------------------------------------------------------------- parsers


def parse_yara_count(path):
    """yara -c output: 'PATH: N' per file scanned. Returns {path: N}."""
    res = {}
    with open(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\n").decode("utf-8", "surrogateescape")
            if ": " not in line:
                continue
            p, n = line.rsplit(": ", 1)
            try:
                res[p] = int(n)
            except ValueError:
                pass
    return res


def parse_yara_matches(path):
    """Plain yara output: 'RULE PATH' per match. Returns {path: set(rules)}."""
    res = {}
    with open(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\n").decode("utf-8", "surrogateescape")
            if " " not in line:
                continue
            rule, p = line.split(" ", 1)
            res.setdefault(p, set()).add(rule)
    return res


def parse_ctl(path):
    """yamorictl --json scan output. Returns {path: (verdict, rule, error)}."""
    res = {}
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            o = json.loads(line.decode("utf-8", "surrogatepass"))
            if "path" in o:
                res[o["path"]] = (o.get("verdict"), o.get("rule"), o.get("error"))
    return res


# ---------------------------------------------------------------- externals


def extension_of(filename):
    stem = os.path.basename(filename).lstrip(".")
    if "." not in stem:
        return ""
    return stem.rsplit(".", 1)[1].lower()


def filetype_of(data):
    if data[:4] == b"\x7fELF":
        return "elf"
    if data[:2] == b"MZ":
        return "pe"
    if data[:4] in MACHO_MAGICS:
        return "macho"
    if data[:2] == b"#!":
        return "script"
    head = data[:4096]
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "text"
    if b"\x00" in head:
        return "data"
    if not head:
        return "text"
    textual = sum(1 for b in head if b >= 0x20 or b in (0x09, 0x0a, 0x0c, 0x0d, 0x1a, 0x1b))
    return "text" if textual * 100 >= len(head) * 95 else "data"


# ---------------------------------------------------------------- agent


class Agent:
    """A yamorid with its own state dir, output and control socket."""

    def __init__(self, binary, ctl, workdir, rules_dir, name="agent"):
        self.ctl_bin = ctl
        self.dir = tempfile.mkdtemp(prefix=name + "-", dir=workdir)
        self.conf_path = os.path.join(self.dir, "agent.json")
        # No event output: not needed here.
        conf = {"state_dir": os.path.join(self.dir, "state"), "output": "",
                "rules": {"dirs": [rules_dir]},
                "control": {"socket": os.path.join(self.dir, "ctl.sock")},
                # Only on-demand scans here: no exec checks, no write scans,
                # and nothing is moved should a system file ever match.
                "policy": {"exec": "off", "file": "detect"},
                "scan": {"on_write": False}}
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
                raise RuntimeError("agent exited early: " + self.stderr()[-2000:])
            time.sleep(0.05)
        raise RuntimeError("agent not armed after 60 s")

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def status(self):
        r = subprocess.run([self.ctl_bin, "--config", self.conf_path, "--json", "status"],
                           capture_output=True, timeout=60)
        for line in r.stdout.decode().splitlines():
            if line.strip():
                return json.loads(line)
        raise RuntimeError("no status: " + r.stderr.decode())

    def stop(self):
        """Stops the agent; True when it exited on SIGTERM."""
        ok = stop_proc(self.p)
        if not self._err.closed:
            self._err.close()
        return ok


# ---------------------------------------------------------------- main


def yara_base(rules_files, threads, skip_larger, fast):
    argv = ["yara", "-r", "-N", "-w", "-p", str(threads)]
    if fast:
        argv.append("-f")
    if skip_larger > 0:
        argv += ["-z", str(skip_larger)]
    for var in ("filename", "filepath", "extension", "filetype", "owner"):
        argv += ["-d", var + "="]
    argv += ["-d", "is_executable=false"]
    for f in rules_files:
        argv.append("%s:%s" % (os.path.splitext(os.path.basename(f))[0], f))
    return argv


def rules_files_of(rules_dir):
    return sorted(os.path.join(rules_dir, n) for n in os.listdir(rules_dir)
                  if n.endswith((".yar", ".yara")) and os.path.isfile(os.path.join(rules_dir, n)))


def throughput(args, work, rules_files, own_pids):
    targets = [os.path.abspath(t) for t in args.targets]
    scan_list = os.path.join(work, "targets.list")
    with open(scan_list, "w") as f:
        for t in targets:
            f.write(t + "\n")
    files = walk_files(targets)
    expected = {p for p, s in files.items() if args.skip_larger <= 0 or s <= args.skip_larger}
    log("warming the page cache: %d files" % len(files))
    warm_bytes = warm(files)
    tools = {
        "yara": yara_base(rules_files, args.threads, args.skip_larger, False) + ["-c", "--scan-list", scan_list],
        "yara_fast": yara_base(rules_files, args.threads, args.skip_larger, True) + ["-c", "--scan-list", scan_list],
        "yamorictl": [args.ctl, "--rules", args.rules, "--json", "scan"] + targets,
    }
    # Fixed cost per invocation (starting, compiling the rules): each tool
    # on one empty file.
    empty = os.path.join(work, "empty")
    open(empty, "w").close()
    startup = {}
    for name, argv in tools.items():
        if name == "yamorictl":
            a = argv[:-len(targets)] + [empty]
        else:
            a = argv[:-2] + [empty]
        t = [timed(a, os.path.join(work, "startup.out"))[1] for _ in range(3)]
        startup[name] = round(statistics.median(t), 3)
    log("startup (one empty file): %s" % startup)
    runs = {k: [] for k in tools}
    result_sets = {}
    for r in range(args.runs):
        for name, argv in tools.items():
            la = loadavg()
            out = os.path.join(work, "%s.%d.out" % (name, r))
            rc, wall, cpu = timed(argv, out)
            if name == "yamorictl":
                res = parse_ctl(out)
                scanned = {p for p, v in res.items() if v[0] in ("clean", "malicious")}
                errors = {p: v[2] for p, v in res.items() if v[0] == "error"}
                matched = {p: v[1] for p, v in res.items() if v[0] == "malicious"}
            else:
                res = parse_yara_count(out)
                scanned = set(res)
                errors = {}
                matched = {p: n for p, n in res.items() if n > 0}
            runs[name].append({"wall_s": round(wall, 3), "cpu_s": round(cpu, 2), "rc": rc,
                               "files": len(scanned), "errors": len(errors),
                               "matches": len(matched), "loadavg": la,
                               "other_agents": other_agents(own_pids)})
            result_sets[name] = (scanned, errors, matched)
            log("run %d %-9s %6.2f s wall %6.2f s cpu  files=%d errors=%d matches=%d load=%s"
                % (r + 1, name, wall, cpu, len(scanned), len(errors), len(matched), la))
            os.unlink(out)
    summary = {}
    for name, rs in runs.items():
        summary[name] = {"median_wall_s": round(statistics.median(x["wall_s"] for x in rs), 3),
                         "median_cpu_s": round(statistics.median(x["cpu_s"] for x in rs), 2),
                         "files": rs[-1]["files"], "errors": rs[-1]["errors"],
                         "matches": rs[-1]["matches"]}
    ym = summary["yamorictl"]["median_wall_s"]
    for name in ("yara", "yara_fast"):
        summary[name]["ratio_vs_yamorictl"] = round(summary[name]["median_wall_s"] / ym, 2)
    ys, _, ymatch = result_sets["yara"]
    cs, cerr, cmatch = result_sets["yamorictl"]
    comparison = {
        "walked_regular_files": len(files),
        "walked_bytes": sum(files.values()),
        "within_size_limit": len(expected),
        "warmed_bytes": warm_bytes,
        "yara_only_files": sorted(ys - cs)[:20],
        "yamorictl_only_files": sorted(cs - ys)[:20],
        "yamorictl_errors": dict(sorted(cerr.items())[:20]),
        "same_files": ys == cs,
        "same_matches": set(ymatch) == set(cmatch),
        "yara_matches": sorted(ymatch)[:50],
        "yamorictl_matches": sorted(cmatch)[:50],
    }
    for name in tools:
        summary[name]["startup_s"] = startup[name]
    return {"targets": targets, "runs": runs, "summary": summary, "comparison": comparison}


def mount_ramfs(path):
    r = subprocess.run(["mount", "-t", "ramfs", "-o", "mode=0700", "ramfs", path],
                       capture_output=True, text=True)
    return r.returncode == 0


def positives(args, work, rules_files):
    with open(args.cases) as f:
        cases = [c for c in json.load(f) if c.get("expect") == "match"]
    sdir = os.path.join(work, "samples")
    os.makedirs(sdir)
    mounted = mount_ramfs(sdir)
    try:
        samples = {}
        executable = set()
        for i, c in enumerate(cases):
            d = os.path.join(sdir, "%03d" % i)
            os.makedirs(d)
            p = os.path.join(d, c.get("filename") or "sample.bin")
            data = base64.b64decode(c["content_b64"])
            with open(p, "wb") as f:
                f.write(data)
            samples[p] = (c["rule"], data, c.get("name"))
            if c.get("executable"):
                os.chmod(p, 0o755)
                executable.add(p)
        # yara per file, with the externals the agent defines
        per_file = {}
        t0 = time.monotonic()
        for p, (rule, data, _) in samples.items():
            argv = ["yara", "-w"]
            ext = {"filename": os.path.basename(p), "filepath": p,
                   "extension": extension_of(p), "filetype": filetype_of(data), "owner": "root",
                   "is_executable": "true" if p in executable else "false"}
            for k, v in ext.items():
                argv += ["-d", "%s=%s" % (k, v)]
            argv += ["%s:%s" % (os.path.splitext(os.path.basename(f))[0], f) for f in rules_files]
            argv.append(p)
            r = subprocess.run(argv, capture_output=True)
            rs = {line.split(" ", 1)[0] for line in r.stdout.decode("utf-8", "replace").splitlines() if line}
            if rs:
                per_file[p] = rs
        yara_pf_s = time.monotonic() - t0
        # yara recursive, empty externals
        out = os.path.join(work, "samples.yara.out")
        yargv = yara_base(rules_files, args.threads, 0, False) + [sdir]
        timed(yargv, out)
        yara_empty = parse_yara_matches(out)
        # yamorictl
        out2 = os.path.join(work, "samples.ctl.out")
        rc, _, _ = timed([args.ctl, "--rules", args.rules, "--json", "scan", sdir], out2)
        ctl = parse_ctl(out2)
        still_there = sum(1 for p in samples if os.path.exists(p))
    finally:
        if mounted:
            subprocess.run(["umount", sdir], capture_output=True)
    ctl_match = {p for p, v in ctl.items() if v[0] == "malicious"}
    yara_match = set(per_file)
    expected_hit = {p for p, (rule, _, _) in samples.items() if rule in per_file.get(p, set())}
    ctl_expected_hit = {p for p, (rule, _, _) in samples.items()
                        if ctl.get(p, (None, None, None))[1] == rule}
    res = {
        "cases": len(samples),
        "ramfs": mounted,
        "samples_present_after_scans": still_there,
        "yara_per_file_matched": len(yara_match),
        "yara_per_file_expected_rule": len(expected_hit),
        "yara_per_file_s": round(yara_pf_s, 2),
        "yara_empty_externals_matched": len(yara_empty),
        "needs_externals": sorted(os.path.relpath(p, sdir) for p in yara_match - set(yara_empty)),
        "yamorictl_matched": len(ctl_match),
        "yamorictl_rc": rc,
        "yamorictl_first_rule_is_expected": len(ctl_expected_hit),
        "yamorictl_first_rule_other": sorted(
            "%s: %s (expected %s)" % (os.path.relpath(p, sdir), ctl[p][1], samples[p][0])
            for p in ctl_match - ctl_expected_hit),
        "same_set": yara_match == ctl_match,
        "yara_only": sorted(os.path.relpath(p, sdir) for p in yara_match - ctl_match),
        "yamorictl_only": sorted(os.path.relpath(p, sdir) for p in ctl_match - yara_match),
        "not_matched_by_either": sorted("%s (%s)" % (os.path.relpath(p, sdir), samples[p][2])
                                        for p in set(samples) - yara_match - ctl_match),
    }
    log("positives: %d cases, yara %d, yamorictl %d, same set: %s"
        % (len(samples), len(yara_match), len(ctl_match), res["same_set"]))
    return res


def predicted_hits(targets, max_bytes):
    """Second-pass cache hits expected from the scanner's direct-mapped
    verdict cache (scanner.c slot_of) when both passes visit the files in
    the same order: a slot that two or more files share is overwritten by
    each of them in turn, so only files alone in their slot hit."""
    slots = {}
    for p, _ in walk_files(targets).items():
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if st.st_size > max_bytes:
            continue
        x = ((st.st_ino * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) ^ st.st_dev
        x ^= (st.st_mtime_ns * 31) & 0xFFFFFFFFFFFFFFFF
        slot = x % CACHE_SLOTS
        slots.setdefault(slot, {})[(st.st_dev, st.st_ino)] = st.st_size
    single = [f for f in slots.values() if len(f) == 1]
    return {"files": sum(len(f) for f in slots.values()), "slots_used": len(slots),
            "singleton_slots": len(single),
            "bytes": sum(sum(f.values()) for f in slots.values()),
            "bytes_rescanned": sum(sum(f.values()) for f in slots.values() if len(f) > 1)}


def agent_passes(args, work, own_pids, targets):
    targets = [os.path.abspath(t) for t in targets]
    rounds = []
    for r in range(args.agent_rounds):
        name = "agent-%s-%d" % ("+".join(os.path.basename(t) for t in targets), r)
        agent = Agent(args.yamorid, args.ctl, work, args.rules, name=name)
        own_pids.add(agent.p.pid)
        try:
            passes = []
            for i in range(2):
                st0 = agent.status()["counters"]
                cpu0 = cpu_seconds(agent.p.pid)
                la = loadavg()
                out = os.path.join(work, "%s.pass%d.out" % (name, i))
                rc, wall, _ = timed([args.ctl, "--config", agent.conf_path, "--json", "scan"] + targets, out)
                cpu = cpu_seconds(agent.p.pid) - cpu0
                st1 = agent.status()["counters"]
                res = parse_ctl(out)
                os.unlink(out)
                d = {k: st1[k] - st0[k] for k in ("files_scanned", "scan_cache_hits", "scan_errors")}
                passes.append({"wall_s": round(wall, 3), "agent_cpu_s": round(cpu, 2), "rc": rc,
                               "files": len(res),
                               "malicious": sum(1 for v in res.values() if v[0] == "malicious"),
                               "errors": sum(1 for v in res.values() if v[0] == "error"),
                               "counters": d, "loadavg": la,
                               "other_agents": other_agents(own_pids)})
                log("agent %s round %d pass %d: %.2f s wall, agent cpu %.2f s, files=%d, "
                    "cache hits %d, load=%s" % (" ".join(targets), r + 1, i + 1, wall, cpu, len(res),
                                                d["scan_cache_hits"], la))
            rounds.append({"passes": passes,
                           "speedup": round(passes[0]["wall_s"] / passes[1]["wall_s"], 2)})
        finally:
            sigterm_ok = agent.stop()
            own_pids.discard(agent.p.pid)
        rounds[-1]["agent_exited_on_sigterm"] = sigterm_ok
    first = statistics.median(x["passes"][0]["wall_s"] for x in rounds)
    second = statistics.median(x["passes"][1]["wall_s"] for x in rounds)
    hits = statistics.median(x["passes"][1]["counters"]["scan_cache_hits"] for x in rounds)
    files = rounds[-1]["passes"][1]["files"]
    return {"targets": targets, "rounds": rounds,
            "predicted": predicted_hits(targets, AGENT_MAX_FILE_BYTES),
            "summary": {"median_first_s": first, "median_second_s": second,
                        "speedup": round(first / second, 2),
                        "second_pass_cache_hits": hits, "second_pass_files": files,
                        "cache_slots": CACHE_SLOTS}}


def print_tables(res):
    t = res["throughput"]
    s = t["summary"]
    print("\n### On-demand scan, %s (median of %d runs)\n" % (" ".join(t["targets"]), len(t["runs"]["yara"])))
    print("| tool | files scanned | errors | matches | wall s | CPU s | yara / yamorictl | startup s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    labels = {"yara": "yara -r -N -p %d" % res["args"]["threads"],
              "yara_fast": "yara -r -N -p %d -f" % res["args"]["threads"],
              "yamorictl": "yamorictl --rules (no agent)"}
    for name in ("yara", "yara_fast", "yamorictl"):
        x = s[name]
        ratio = "%.2f" % x["ratio_vs_yamorictl"] if "ratio_vs_yamorictl" in x else "1.00"
        print("| %s | %d | %d | %d | %.2f | %.2f | %s | %.2f |" % (
            labels[name], x["files"], x["errors"], x["matches"], x["median_wall_s"],
            x["median_cpu_s"], ratio, x["startup_s"]))
    print("\nload averages before the runs: " +
          ", ".join("%s" % r["loadavg"][0] for n in ("yara", "yara_fast", "yamorictl") for r in t["runs"][n]))
    if "positives" in res:
        p = res["positives"]
        print("\n### Synthetic positives (%d cases)\n" % p["cases"])
        print("| | matched files |")
        print("|---|---:|")
        print("| yara, per-file externals | %d |" % p["yara_per_file_matched"])
        print("| yara, empty externals | %d |" % p["yara_empty_externals_matched"])
        print("| yamorictl | %d |" % p["yamorictl_matched"])
        print("\nsame set (yara per-file vs yamorictl): %s" % p["same_set"])
    for a in res.get("agent", []):
        print("\n### Through the agent, %s: first and second pass (%d rounds)\n"
              % (" ".join(a["targets"]), len(a["rounds"])))
        print("| round | pass 1 s | pass 2 s | speedup | pass 2 cache hits / files | load before |")
        print("|---:|---:|---:|---:|---:|---|")
        for i, r in enumerate(a["rounds"]):
            p1, p2 = r["passes"]
            print("| %d | %.2f | %.2f | %.2f | %d / %d | %s, %s |" % (
                i + 1, p1["wall_s"], p2["wall_s"], r["speedup"], p2["counters"]["scan_cache_hits"],
                p2["files"], p1["loadavg"][0], p2["loadavg"][0]))
        m = a["summary"]
        print("| median | %.2f | %.2f | %.2f | | |" % (m["median_first_s"], m["median_second_s"], m["speedup"]))
        pr = a["predicted"]
        print("\npredicted second-pass hits with the %d-slot direct-mapped cache (same order): "
              "%d of %d files (%d slots used); bytes to rescan %.1f of %.1f MiB"
              % (CACHE_SLOTS, pr["singleton_slots"], pr["files"], pr["slots_used"],
                 pr["bytes_rescanned"] / 2**20, pr["bytes"] / 2**20))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("targets", nargs="*", default=["/usr/bin", "/usr/include"])
    ap.add_argument("--rules", default=os.path.join(REPO, "rules"))
    ap.add_argument("--cases", default=os.path.join(REPO, "tests", "rules", "cases.json"))
    ap.add_argument("--build-dir", default=BUILD_DIR)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--agent-rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="yara -p")
    ap.add_argument("--skip-larger", type=int, default=LOCAL_MAX_FILE_BYTES,
                    help="yara -z (bytes; 0: none); default yamorictl's own limit")
    ap.add_argument("--agent-subset", action="append", default=None,
                    help="also measure the two agent passes on this smaller tree "
                         "(repeatable; default /usr/bin and /usr/include/linux, trees with "
                         "far fewer files than the cache has slots, of large and of small files)")
    ap.add_argument("--no-positives", action="store_true")
    ap.add_argument("--no-agent", action="store_true")
    ap.add_argument("--workdir", default="/var/tmp")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    args.rules = os.path.abspath(args.rules)
    if args.agent_subset is None:
        args.agent_subset = ["/usr/bin", "/usr/include/linux"]
    args.ctl = os.path.join(args.build_dir, "agent", "yamorictl")
    args.yamorid = os.path.join(args.build_dir, "agent", "yamorid")
    for b in (args.ctl, args.yamorid):
        if not os.access(b, os.X_OK):
            log("missing %s (build first)" % b)
            return 1
    if shutil.which("yara") is None:
        log("the yara command line tool is missing (apt-get install yara)")
        return 1
    if os.geteuid() != 0 and not args.no_agent:
        log("the agent needs root (or use --no-agent)")
        return 1
    yv = subprocess.run(["yara", "--version"], capture_output=True, text=True).stdout.strip()
    work = tempfile.mkdtemp(prefix="yamori-scanbench-", dir=args.workdir)
    own_pids = {os.getpid()}
    try:
        args.rules, rule_sums = snapshot_rules(args.rules, work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    rules_files = rules_files_of(args.rules)
    res = {"machine": machine_info(), "git": git_state(), "yara_version": yv, "rules_sha256": rule_sums,
           "args": {"runs": args.runs, "threads": args.threads, "skip_larger": args.skip_larger,
                    "agent_rounds": args.agent_rounds},
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "loadavg_start": loadavg()}
    try:
        res["throughput"] = throughput(args, work, rules_files, own_pids)
        if not args.no_positives:
            res["positives"] = positives(args, work, rules_files)
        if not args.no_agent:
            res["agent"] = [agent_passes(args, work, own_pids, args.targets)]
            for sub in args.agent_subset:
                res["agent"].append(agent_passes(args, work, own_pids, [sub]))
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        log("error: %s" % e)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["loadavg_end"] = loadavg()
    print_tables(res)
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
