#!/usr/bin/env python3
"""Time from a release being rolled out to the agent running it.

Starts a private yamori-console (check-in interval 10 s), a real agent
enrolled to it and run by the real yamori-launcher from a temporary
versions directory (sensors off: only the update path is measured), then
rolls out releases one after another (`rollout set --pin`) and measures,
per release, from the agent's check-in that received the offer (its
"downloading release" log line; the wait for that check-in is the
check-in interval and is excluded):

  running    the new version's yamorid is the launcher's child (polled
             every 5 ms in /proc): download, SHA-256, unpack, fsync,
             rename, switch (SIGTERM to the old agent, start of the new)
  committed  state.json says active = new version (its first healthy
             check-in and the commit)

Packages: `small` is bin/yamorid only (the build's binary, gzip'd);
`large` adds 48 MiB of random bytes (incompressible), to show the cost per
byte. --runs releases of each (default 3).

    sudo bench/update_release.py [--runs N] [--json OUT]
"""
import argparse
import datetime
import json
import os
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("YAMORI_BUILD_DIR", os.path.join(HERE, "..", "build"))
os.environ.setdefault("YAMORI_SOURCE_DIR", os.path.join(HERE, ".."))
import yit  # noqa: E402
import updutil  # noqa: E402


def log_time(text, needle):
    """Unix time of the last log line containing needle."""
    for line in reversed(text.splitlines()):
        if needle in line:
            stamp = line.split(" ", 1)[0].rstrip("Z")
            return datetime.datetime.fromisoformat(stamp).replace(
                tzinfo=datetime.timezone.utc).timestamp()
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    yit.require_root()
    t = yit.Test(__file__)
    s = updutil.Setup(t, window=120)
    s.wait_running("0.1.0", timeout=30)
    blob = os.urandom(48 * 1024 * 1024)
    results = []
    n = 1
    for kind in ("small", "large"):
        for _ in range(a.runs):
            n += 1
            version = "0.%d.0" % n
            extra = []
            if kind == "large":
                ti = tarfile.TarInfo("data/blob")
                ti.size = len(blob)
                ti.mode = 0o644
                extra = [(ti, blob)]
            pkg = s.package(version, extra=extra)
            size = os.path.getsize(pkg)
            t0 = time.time()
            s.release(version, pkg=pkg)
            running = None
            deadline = time.time() + 120
            while time.time() < deadline:
                if s.child()[1] == version:
                    running = time.time()
                    break
                time.sleep(0.005)
            committed = None
            while time.time() < deadline:
                st = s.state()
                if st.get("active") == version and not st.get("pending"):
                    committed = time.time()
                    break
                time.sleep(0.005)
            offered = log_time(s.launcher.stderr_text(), "downloading release %s " % version)
            if None in (running, committed, offered):
                print("release %s: did not complete" % version)
                continue
            r = {"package": kind, "bytes": size, "version": version,
                 "wait_for_checkin_s": round(offered - t0, 3),
                 "offer_to_running_s": round(running - offered, 3),
                 "offer_to_committed_s": round(committed - offered, 3)}
            results.append(r)
            if os.environ.get("TIMELINE"):
                for line in s.launcher.stderr_text().splitlines()[-40:]:
                    print("    " + line[:160])
            print("%-5s %9d bytes  offer->running %6.3f s  offer->committed %6.3f s  "
                  "(waited %.1f s for the check-in)" % (kind, size, r["offer_to_running_s"],
                                                        r["offer_to_committed_s"],
                                                        r["wait_for_checkin_s"]), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    t.check(len(results) == 2 * a.runs, "every release measured")
    t.done()


if __name__ == "__main__":
    main()
