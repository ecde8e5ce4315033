#!/usr/bin/env python3
"""Install time and installer size, in a fresh Debian 12 booted with systemd.

Boots a fresh container (systemd-nspawn --boot on the cached debootstrap root,
tests/integration/nspawn.py; every boot starts from the same untouched
system) for each run, with a real yamori-console on the host, and times the
company's own installer (`yamori-console installer`, token and help desk
embedded) run silently, from starting the installer until it exits saying
"connected": it exits only after the agent reports its first check-in
acknowledged by the console. Scenarios:

  fresh     the fresh system: the installer also adds the shared libraries
            the agent needs with apt-get (package lists and packages from the
            Debian archive over the network), then installs, enrolls, starts
            and waits for the console.
  libs      the same system with those libraries already present (added
            before the clock starts): the installer's own work.
  upgrade   on an installed system, a newer installer (same programs,
            version 99.0.1): stop, replace, restart, wait for the console.
  repair    the same installer run again on an installed system.
  uninstall --uninstall --silent.

Sizes: the generic installer, a company's installer, the .deb, and the
payload unpacked. Prints a Markdown table and a JSON line. Needs root,
systemd-nspawn and debootstrap (scripts/install-deps.sh), and a build
(YAMORI_BUILD_DIR, default build/).

    sudo bench/install_time.py [--runs 5]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import nspawn  # noqa: E402
import yit  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("install_time: needs root (systemd-nspawn)")
    if nspawn.missing_tools():
        sys.exit("install_time: missing tools: " + nspawn.missing_tools())
    generic = os.path.join(yit.BUILD_DIR, "installer", "yamori-installer.run")
    if not os.path.isfile(generic):
        sys.exit("install_time: build the installer first (cmake --build build --target installer)")
    nspawn.ensure_root()

    t = yit.Test(__file__)
    con = yit.Console(t)
    con.tenant("bench")

    def company(name, template):
        out = t.path(name)
        r = con.cli("installer", "--tenant", "bench", "--out", out, "--installer", template,
                    "--helpdesk", "help desk 03-0000-0000")
        if r.returncode != 0:
            sys.exit("install_time: " + r.stderr.decode())
        return out

    acme = company("bench.run", generic)
    v2 = os.path.join(t.dir, "v2")
    subprocess.run([os.path.join(HERE, "..", "installer", "mkinstaller.sh"), "--version", "99.0.1",
                    "--out", v2, "--yamorid", yit.binary("yamorid"),
                    "--yamorictl", yit.binary("yamorictl"),
                    "--rules", os.path.join(yit.SOURCE_DIR, "rules"), "--no-deb"],
                   check=True, capture_output=True)
    acme2 = company("bench2.run", os.path.join(v2, "yamori-installer.run"))
    deps = ""
    with open(generic, "rb") as f:
        for line in f.read(8192).split(b"\n"):
            if line.startswith(b"YM_DEPS="):
                deps = line[8:].decode().strip('"')

    times = {k: [] for k in ("fresh", "libs", "upgrade", "repair", "uninstall")}

    def timed(m, argv):
        t0 = time.monotonic()
        r = m.run(argv, timeout=600)
        dt = time.monotonic() - t0
        if r.returncode != 0 or ("--uninstall" not in argv and b"connected" not in r.stdout):
            print("run failed: %s\n%s%s" % (argv, r.stdout.decode()[-800:], r.stderr.decode()[-800:]))
            return None
        if os.environ.get("YAMORI_BENCH_VERBOSE"):
            print(r.stdout.decode())
        return dt

    for i in range(args.runs):
        for scenario in ("fresh", "libs"):
            m = nspawn.Machine(t, name="ymbench%d" % os.getpid())
            m.put(acme, "/root/bench.run", 0o600)
            m.put(acme2, "/root/bench2.run", 0o600)
            if scenario == "libs":
                m.run(["apt-get", "update", "-q"], timeout=600)
                m.run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] + deps.split(),
                      env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=600)
            dt = timed(m, ["sh", "/root/bench.run", "--silent"])
            if dt is not None:
                times[scenario].append(dt)
            if scenario == "libs" and dt is not None:
                for name, argv in (("repair", ["sh", "/root/bench.run", "--silent"]),
                                   ("upgrade", ["sh", "/root/bench2.run", "--silent"]),
                                   ("uninstall", ["sh", "/root/bench2.run", "--uninstall", "--silent"])):
                    d = timed(m, argv)
                    if d is not None:
                        times[name].append(d)
            m.stop()
            print("run %d %s: %s" % (i + 1, scenario,
                                     "%.2f s" % times[scenario][-1] if dt is not None else "failed"),
                  flush=True)

    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["sh", generic, "--extract", d], check=True)
        unpacked = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)
    debs = [f for f in os.listdir(os.path.dirname(generic)) if f.endswith(".deb")]
    sizes = {"generic_run": os.path.getsize(generic), "company_run": os.path.getsize(acme),
             "deb": os.path.getsize(os.path.join(os.path.dirname(generic), debs[0])) if debs else 0,
             "payload_unpacked": unpacked}

    print()
    print("| scenario | runs | median s | min s | max s |")
    print("|---|---|---|---|---|")
    res = {"runs": args.runs, "sizes": sizes, "times": {}}
    for k, v in times.items():
        if v:
            print("| %s | %d | %.2f | %.2f | %.2f |" % (k, len(v), statistics.median(v), min(v), max(v)))
            res["times"][k] = {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}
        else:
            print("| %s | 0 | - | - | - |" % k)
    print()
    print("| file | bytes |")
    print("|---|---|")
    for k, v in sizes.items():
        print("| %s | %d |" % (k, v))
    print(json.dumps(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f)
    t._finished = True
    for p in t.procs:
        p.stop()
    for fn in reversed(t.cleanups):
        fn()


if __name__ == "__main__":
    main()
