#!/usr/bin/env python3
"""Records a clean workload with the real agent, for the false-positive check
of the default Sigma behaviour rules (docs/behaviour.md, "False positives").

Starts the built yamorid (root: fanotify) with its NDJSON output in a
temporary directory, runs the workload below in a shell, stops the agent and
keeps the events of the workload's own process tree (programs it started,
and the files they touched): other activity on the machine at the same time
is left out. The result is written gzip-compressed.

The workload is what a small company's Linux machine does on a normal day:
  - package maintenance: apt-get install --reinstall of installed packages
    whose maintainer scripts touch cron, systemd units, init scripts,
    profile.d and the account files (from Debian's archive);
  - building: configuring this project with cmake into a fresh directory and
    building a few targets; running a few of its unit tests with ctest;
  - administration typed by hand: looking around (ps, df, ip, ss, id,
    uname, journalctl, systemctl status...), editing and copying files,
    archiving with tar and gzip, a checksum, an SSH key pair made and shown,
    a crontab listed, a web request; one command every few seconds, as a
    person types.

Usage (root, from the source tree, after a build):
  tests/rules/record_clean_workload.py [--build DIR] [--packages "p1 p2"]
                                        [-o tests/data/sigma-clean-workload.ndjson.gz]
Then check it:  build/tests/sigma_check replay --fail-above low \\
                  build/rules/sigma/linux.json tests/data/sigma-clean-workload.ndjson.gz
"""

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))

WORKLOAD = r"""
set -u
export DEBIAN_FRONTEND=noninteractive
W="$1"; SRC="$2"; PKGS="$3"
cd "$W"
# Package maintenance.
apt-get -q update >/dev/null
apt-get -q -y -o Dpkg::Options::=--force-confold install --reinstall $PKGS >/dev/null
# Building this project and running some of its tests.
cmake -S "$SRC" -B "$W/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$W/build" -j2 --target test_buf test_json test_err test_sha256 >/dev/null
ctest --test-dir "$W/build" -R 'unit\.test_(buf|json|err|sha256)$' >/dev/null
# Administration, one command at a time.
admin() { "$@" >/dev/null 2>&1; sleep 2.5; }
admin uptime
admin ps aux
admin df -h
admin free -m
admin ip a
admin ss -tlnp
admin systemctl status --no-pager systemd-journald
admin journalctl -n 20 --no-pager
admin id
admin uname -a
admin hostname
admin cat /etc/os-release
admin grep root /etc/passwd
admin ls -la /etc/cron.d /etc/systemd/system
admin crontab -l
admin dpkg -l
admin apt-cache policy bash
admin find /etc -name '*.conf' -newer /etc/hostname
admin du -sh /var/log
admin tail -n 50 /var/log/dpkg.log
admin cp /etc/hosts "$W/hosts.copy"
admin sed -i 's/localhost/localhost.localdomain/' "$W/hosts.copy"
admin mv "$W/hosts.copy" "$W/hosts.edited"
admin tar czf "$W/etc-backup.tgz" -C / etc/hostname etc/hosts etc/os-release
admin gzip -k "$W/hosts.edited"
admin sha256sum "$W/etc-backup.tgz"
admin openssl dgst -sha256 "$W/etc-backup.tgz"
admin ssh-keygen -q -t ed25519 -N '' -f "$W/id_deploy"
admin cat "$W/id_deploy.pub"
admin chmod 600 "$W/id_deploy"
admin chmod +x "$W/hosts.edited"
admin touch "$W/stamp"
admin curl -sSfI https://deb.debian.org/debian/
admin git -C "$SRC" log --oneline -3
admin rm -f "$W/hosts.edited.gz" "$W/stamp"
admin bash -c 'for f in "$0"/*.tgz; do ls -l "$f"; done' "$W"
admin who
admin last -n 5
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--packages", default="e2fsprogs man-db procps base-files passwd")
    ap.add_argument("-o", "--output",
                    default=os.path.join(REPO, "tests", "data", "sigma-clean-workload.ndjson.gz"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("record_clean_workload: needs root (the agent uses fanotify)")
    tmp = tempfile.mkdtemp(prefix="yamori-cleanwl-")
    out = os.path.join(tmp, "events.ndjson")
    conf = {"state_dir": os.path.join(tmp, "state"), "output": out,
            "rules": {"dirs": [os.path.join(REPO, "rules")]},
            "control": {"socket": os.path.join(tmp, "agent.sock")}}
    with open(os.path.join(tmp, "agent.json"), "w") as f:
        json.dump(conf, f)
    err = open(os.path.join(tmp, "agent.err"), "w+")
    agent = subprocess.Popen([os.path.join(args.build, "agent", "yamorid"), "--config",
                              os.path.join(tmp, "agent.json")], stderr=err)
    deadline = time.monotonic() + 60
    while True:
        err.seek(0)
        if "sensors armed" in err.read():
            break
        if agent.poll() is not None or time.monotonic() > deadline:
            sys.exit("record_clean_workload: the agent did not start; see " + err.name)
        time.sleep(0.2)
    work = os.path.join(tmp, "work")
    os.mkdir(work)
    script = os.path.join(tmp, "workload.sh")
    with open(script, "w") as f:
        f.write(WORKLOAD)
    t0 = time.monotonic()
    wl = subprocess.Popen(["bash", script, work, REPO, args.packages])
    rc = wl.wait()
    time.sleep(3)
    agent.terminate()
    agent.wait(timeout=60)
    if rc != 0:
        sys.exit("record_clean_workload: the workload failed (exit %d); kept %s" % (rc, tmp))

    # Keep the workload's process tree: its root is the shell started above.
    # Processes are followed by entity id; a pid alone (an event without
    # entity ids) counts only while that pid belongs to the tree, since
    # other programs on the machine reuse pids.
    entities, tree_pids, kept = set(), set(), []
    with open(out, "rb") as f:
        events = [json.loads(l.decode("utf-8", "surrogatepass")) for l in f if l.strip()]
    for e in events:
        p = e.get("process", {})
        ds = e.get("event", {}).get("dataset")
        if ds == "yamori.process" and e["event"].get("action") == "exec":
            parent = p.get("parent", {})
            pe = parent.get("entity_id")
            if (p.get("pid") == wl.pid or (pe is not None and pe in entities)
                    or (pe is None and parent.get("pid") in tree_pids)):
                entities.add(p.get("entity_id"))
                tree_pids.add(p.get("pid"))
                kept.append(e)
            else:
                tree_pids.discard(p.get("pid"))
        elif ds in ("yamori.file", "yamori.process"):
            ent = p.get("entity_id")
            if (ent is not None and ent in entities) or (ent is None and p.get("pid") in tree_pids):
                kept.append(e)
    if not any(e.get("process", {}).get("pid") == wl.pid for e in kept):
        sys.exit("record_clean_workload: the workload's own start was not recorded")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with gzip.open(args.output, "wb", compresslevel=9) as f:
        for e in kept:
            f.write(json.dumps(e, ensure_ascii=False, separators=(",", ":"))
                    .encode("utf-8", "surrogatepass") + b"\n")
    print("%d events kept of %d recorded in %.0f s; written to %s (%d bytes)" %
          (len(kept), len(events), time.monotonic() - t0, args.output,
           os.path.getsize(args.output)))
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
