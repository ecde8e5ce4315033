#!/usr/bin/env python3
"""Records a workload with the real agent, for the checks of the default Sigma
behaviour rules on real events (docs/behaviour.md, "Real events").

Starts the built yamorid (root: fanotify) with its NDJSON output in a
temporary directory, runs the workload in a shell, stops the agent and
keeps the events of the workload's own process tree (programs it started,
and the files they touched): other activity on the machine at the same time
is left out. The result is written gzip-compressed.

The "clean" workload is what a small company's Linux machine does on a
normal day:
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

The "attack" workload runs, harmlessly, the techniques the default rules
are about, the way an intruder would type them: a decoded script and a
download piped into a shell, a pty spawned from Python, /dev/tcp, a cron
file, a shell-profile line, an authorized key, a user systemd timer, a
set-user-ID copy of a shell and a capability in a temporary directory,
history wiping, kernel-thread names, a discovery burst, reads of the
shadow file and of a private key, archive-and-encrypt, a burst of renames
to .locked and a ransom note. Everything it makes is under its temporary
directory, except a file in /etc/cron.d and one in /dev/shm, both removed
at once.

Usage (root, from the source tree, after a build):
  tests/rules/record_workload.py clean|attack [--build DIR] [--packages "p1 p2"] [-o FILE]
Then check them:
  build/tests/sigma_check replay --fail-above low \\
      build/rules/sigma/linux.json tests/data/sigma-clean-workload.ndjson.gz
  build/tests/sigma_check replay --expect tests/rules/sigma_attack_expect.txt \\
      build/rules/sigma/linux.json tests/data/sigma-attack-workload.ndjson.gz
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

CLEAN = r"""
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



ATTACK = r"""
set -u
W="$1"
cd "$W"
PY=/usr/bin/python3
CRON=/etc/cron.d/yamori-sigma-test
SHM=/dev/shm/yamori-sigma-test
trap 'rm -f "$CRON" "$SHM"' EXIT
mkdir -p home/.ssh home/.config/systemd/user docs .x
step() { sleep 1; }
# Execution.
bash -c 'echo dHJ1ZQo= | base64 -d | sh'; step
bash -c 'curl -s file:///dev/null | sh'; step
$PY -c 'import pty; pty.spawn("/bin/true")'; step
$PY -c 'import subprocess; subprocess.run(["/bin/sh", "-i"], input=b"exit\n", stderr=subprocess.DEVNULL)'; step
script -qc /bin/true /dev/null >/dev/null; step
bash -c ': < /dev/tcp/127.0.0.1/1' 2>/dev/null; step
cp /usr/bin/bash "$W/apache2"; "$W/apache2" -c 'sh -c true; true'; step
cp /usr/bin/true "$SHM"; "$SHM"; rm -f "$SHM"; step
# Persistence.
echo '* * * * * root true' > "$CRON"; rm -f "$CRON"; step
echo 'alias ls="ls; true"' >> "$W/home/.bashrc"; step
ssh-keygen -q -t ed25519 -N '' -f "$W/home/.ssh/id_ed25519"
cat "$W/home/.ssh/id_ed25519.pub" >> "$W/home/.ssh/authorized_keys"; step
printf '[Timer]\nOnCalendar=hourly\n' > "$W/home/.config/systemd/user/sync.timer"; step
# Privilege escalation.
cp /usr/bin/dash "$W/sh"; chmod u+s "$W/sh"; step
cp /usr/bin/true "$W/tool"; setcap cap_setuid+ep "$W/tool"; step
bash -c "echo 'nobody ALL=(ALL) NOPASSWD: ALL' > $W/sudoers.test"; step
# Defence evasion.
bash -c 'unset HISTFILE; true'; step
touch "$W/home/.bash_history"; rm -f "$W/home/.bash_history"; step
touch -r /etc/hostname "$W/tool"; step
cp /usr/bin/true "$W/.x/kworker"; "$W/.x/kworker"; step
bash -c 'exec -a "[kworker/1:2]" /usr/bin/sleep 0.1'; step
# Credential access.
cat /etc/shadow > /dev/null; step
cat "$W/home/.ssh/id_ed25519" > /dev/null; step
find "$W" -name id_rsa; step
grep -ri password "$W/home" > /dev/null; step
# Discovery.
bash -c 'id; uname -a; cat /etc/passwd; hostname; ip a; w; last' > /dev/null 2>&1; step
find "$W" -perm -4000 > /dev/null; step
# Collection.
bash -c "tar cf - -C $W home | openssl enc -aes-256-cbc -pbkdf2 -k x -out $W/a.bin"; step
tar czf "$W/b.tgz" -C "$W" home
openssl enc -aes-256-cbc -pbkdf2 -k x -in "$W/b.tgz" -out "$W/b.bin"; step
# Impact.
for i in $(seq 1 30); do echo "document $i" > "$W/docs/report$i.docx"; done
$PY -c '
import os, sys
d = sys.argv[1]
for n in sorted(os.listdir(d)):
    os.rename(os.path.join(d, n), os.path.join(d, n + ".locked"))
with open(os.path.join(d, "HOW_TO_DECRYPT.txt"), "w") as f:
    f.write("harmless test note\n")
' "$W/docs"
sleep 1
"""

WORKLOADS = {"clean": CLEAN, "attack": ATTACK}

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workload", choices=sorted(WORKLOADS))
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--packages", default="e2fsprogs man-db procps base-files passwd")
    ap.add_argument("-o", "--output")
    args = ap.parse_args()
    if args.output is None:
        args.output = os.path.join(REPO, "tests", "data",
                                   "sigma-%s-workload.ndjson.gz" % args.workload)
    if os.geteuid() != 0:
        sys.exit("record_workload: needs root (the agent uses fanotify)")
    tmp = tempfile.mkdtemp(prefix="yamori-wl-")
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
            sys.exit("record_workload: the agent did not start; see " + err.name)
        time.sleep(0.2)
    work = os.path.join(tmp, "work")
    os.mkdir(work)
    script = os.path.join(tmp, "workload.sh")
    with open(script, "w") as f:
        f.write(WORKLOADS[args.workload])
    t0 = time.monotonic()
    wl = subprocess.Popen(["bash", script, work, REPO, args.packages])
    rc = wl.wait()
    time.sleep(3)
    agent.terminate()
    agent.wait(timeout=60)
    if rc != 0:
        sys.exit("record_workload: the workload failed (exit %d); kept %s" % (rc, tmp))

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
        sys.exit("record_workload: the workload's own start was not recorded")
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
