"""Detection on write: a user process writes the EICAR test file; the agent
alerts, quarantines it, and a restore brings it back byte for byte with its
owner and mode. The self-test passes."""
import json
import os
import pwd
import subprocess
import time
import yit
from yit import get

yit.require_root()
t = yit.Test(__file__)
ag = yit.Agent(t)

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
nobody = pwd.getpwnam("nobody")
os.chmod(t.dir, 0o755)
d = t.path("userdir")
os.mkdir(d)
os.chown(d, nobody.pw_uid, nobody.pw_gid)
target = os.path.join(d, "eicar.com")

# The write is made by an unprivileged process.
start = time.time()
r = subprocess.run(["setpriv", "--reuid", str(nobody.pw_uid), "--regid", str(nobody.pw_gid),
                    "--clear-groups", "sh", "-c", "umask 027; cat > '%s'" % target], input=EICAR)
t.check_eq(r.returncode, 0, "unprivileged process wrote the test file")
alert = ag.wait_event(lambda e: get(e, "event.kind") == "alert" and get(e, "file.path") == target,
                      what="alert for the EICAR file", timeout=60)
if alert:
    t.check_eq(get(alert, "rule.name"), "Yamori_EICAR_Test_File", "rule name")
    t.check_eq(get(alert, "event.category"), ["malware"], "category malware")
    t.check_eq(get(alert, "yamori.scan.trigger"), "write", "trigger is the write")
    t.check_eq(get(alert, "file.uid"), str(nobody.pw_uid), "file owner recorded")
    t.check(get(alert, "file.hash.sha256") is not None, "hash recorded")
    t.check(isinstance(get(alert, "yamori.yara.matches"), list), "matched strings recorded")
    t.check_eq(get(alert, "process.user.id", str(nobody.pw_uid)), str(nobody.pw_uid), "actor")
    # Latency from the write being closed to the alert, as the agent saw it.
    mod = [e for e in ag.events() if get(e, "file.path") == target and get(e, "event.action") == "modification"]
    if mod:
        import datetime
        def ts(s):
            return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
        lat = ts(get(alert, "event.created")) - ts(get(mod[0], "@timestamp"))
        print("write-to-alert latency: %.3f s" % lat)
        t.check(lat < 1.0, "alert within a second of the write (%.3f s)" % lat)

q = ag.wait_event(lambda e: get(e, "event.action") == "quarantine" and get(e, "file.path") == target,
                  what="quarantine response", timeout=60)
t.check(q is not None and get(q, "event.outcome") == "success", "quarantined")
t.check(not os.path.exists(target), "the file is gone from its directory")

rc, lines = ag.ctl_json("quarantine", "list")
entries = lines[0]["entries"] if lines else []
mine = [e for e in entries if e["path"] == target]
t.check_eq(len(mine), 1, "quarantine list shows the file")
qdir = os.path.join(ag.conf["state_dir"], "quarantine")
for f in os.listdir(qdir):
    st = os.stat(os.path.join(qdir, f))
    t.check(st.st_mode & 0o777 == 0o600, "quarantine file %s is 0600 (not executable)" % f)

if mine:
    rc, lines = ag.ctl_json("quarantine", "restore", mine[0]["id"])
    t.check(rc == 0 and lines and lines[0]["ok"], "restore succeeded")
    with open(target, "rb") as f:
        t.check_eq(f.read(), EICAR, "restored byte for byte")
    st = os.stat(target)
    t.check_eq((st.st_uid, st.st_gid), (nobody.pw_uid, nobody.pw_gid), "owner restored")
    t.check_eq(st.st_mode & 0o777, 0o640, "mode restored")
    t.check(ag.wait_event(lambda e: get(e, "event.action") == "restore" and get(e, "event.outcome") == "success",
                          what="restore event") is not None, "restore produces an event")
    os.unlink(target)

# On-demand scan through the agent, with the file policy set to detect.
with open(t.path("demand.txt"), "wb") as f:
    f.write(b"harmless")
r = ag.ctl("scan", t.path("demand.txt"))
t.check_eq(r.returncode, 0, "clean on-demand scan exits 0")

r = ag.ctl("selftest")
print(r.stdout.decode().strip())
t.check_eq(r.returncode, 0, "selftest passes")
t.check(b"Protection works" in r.stdout, "selftest says protection works")

r = ag.ctl("status")
t.check_eq(r.returncode, 0, "status exits 0 while running")
t.done()
