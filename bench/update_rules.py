#!/usr/bin/env python3
"""Time from a new rules bundle to the first scan that uses it.

Starts a private yamori-console (check-in interval 10 s) and a real agent
enrolled to it (run by the launcher; sensors off), then publishes bundles
one after another with `yamori-console rules publish`: the whole default
rule set (rules/, 7 files) plus a file with one new rule that matches a
marker unique to that bundle. Right after publishing, the benchmark scans
the marker file with `yamorictl --json scan` in a loop. Measured per
bundle, from the agent's check-in that received the offer (its "fetching
rules bundle" log line; the wait for the check-in is the check-in interval
and is excluded):

  live        the agent's "is live" log line: download, SHA-256, unpack,
              compile (off the loop), swap
  first_scan  the end of the first scan that reported the new rule

    sudo bench/update_rules.py [--runs N] [--json OUT]
"""
import argparse
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.path.insert(0, HERE)
os.environ.setdefault("YAMORI_BUILD_DIR", os.path.join(HERE, "..", "build"))
os.environ.setdefault("YAMORI_SOURCE_DIR", os.path.join(HERE, ".."))
import yit  # noqa: E402
import updutil  # noqa: E402
from update_release import log_time  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json")
    a = ap.parse_args()
    yit.require_root()
    t = yit.Test(__file__)
    s = updutil.Setup(t, window=120)
    s.wait_running("0.1.0", timeout=30)
    t.wait_for(lambda: s.console_state().get("running") == "0.1.0", timeout=60,
               what="first check-in", interval=0.1)
    results = []
    for i in range(a.runs):
        marker = "yamori-bench-marker-%d-%d" % (os.getpid(), i)
        d = t.path("bundle%d" % i)
        shutil.copytree(os.path.join(yit.SOURCE_DIR, "rules"), d,
                        ignore=shutil.ignore_patterns("*.md", "cases", "tests"))
        with open(os.path.join(d, "zz_bench.yar"), "w") as f:
            f.write('rule Bench_Marker_%d { strings: $a = "%s" condition: $a }\n' % (i, marker))
        target = t.path("marker%d.txt" % i)
        with open(target, "w") as f:
            f.write(marker)
        t0 = time.time()
        r = s.con.cli("rules", "publish", "--key", os.path.join(s.keys, "release.key"), d)
        version = r.stdout.decode().split()[1]
        first = None
        deadline = time.time() + 60
        while time.time() < deadline:
            p = t.run(["yamorictl", "--config", s.conf_path, "--json", "scan", target])
            if ("Bench_Marker_%d" % i).encode() in p.stdout:
                first = time.time()
                break
        err = s.launcher.stderr_text()
        offered = log_time(err, "fetching rules bundle %s " % version)
        live = log_time(err, "rules bundle %s " % version + "(default")
        live = log_time(err, "is live") if live is None else live
        if None in (first, offered, live):
            print("bundle %s: did not complete" % version)
            continue
        res = {"version": version, "wait_for_checkin_s": round(offered - t0, 3),
               "offer_to_live_s": round(live - offered, 3),
               "offer_to_first_scan_s": round(first - offered, 3)}
        results.append(res)
        print("bundle %s: offer->live %.3f s, offer->first scan with it %.3f s "
              "(waited %.1f s for the check-in)" % (version, res["offer_to_live_s"],
                                                     res["offer_to_first_scan_s"],
                                                     res["wait_for_checkin_s"]), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    t.check(len(results) == a.runs, "every bundle measured")
    t.done()


if __name__ == "__main__":
    main()
