"""Alerts reach the console while the agent cannot write its state
directory: an enrolled agent whose state directory (a tmpfs) is remounted
read-only detects the EICAR test file; the alert waits in memory and the
uplink sends it from there, so the console has it while the filesystem is
still read-only. Once it is writable again the spool works as before and
the alert is stored once."""
import os
import subprocess
import time
import yit
import diskutil
import linkutil
from yit import get

yit.require_root()
t = yit.Test(__file__)
con = yit.Console(t, extra=["--checkin-s", "1"])
con.tenant("acme")
state = t.path("state")
diskutil.mount_tmpfs(t, state, "64m")
ag = linkutil.enrolled_agent(t, con, {"state_dir": state, "scan": {"on_write": True}})
work = t.path("work")
os.makedirs(work)
time.sleep(2)  # the first check-in and batches go through the disk


def remount(mode):
    for _ in range(100):
        r = subprocess.run(["mount", "-o", "remount,%s" % mode, state], capture_output=True)
        if r.returncode == 0:
            return True
        time.sleep(0.05)
    return t.check(False, "remount %s: %s" % (mode, r.stderr.decode().strip()))


t.check(remount("ro"), "the state filesystem is read-only")
with open(os.path.join(work, "a-change"), "w") as f:
    f.write("a file event, written when the next bulk batch is closed\n")
t.wait_for(lambda: diskutil.counters(ag).get("spool_failing") is True, timeout=30, interval=0.5,
           what="the spool failing on the read-only filesystem")
eicar = os.path.join(work, "eicar.com")
diskutil.write_eicar(eicar)
ag.wait_event(lambda e: get(e, "event.kind") == "alert" and get(e, "file.path") == eicar,
              timeout=30, what="the alert, locally")


def stored():
    return con.query("SELECT count(*) FROM events WHERE agent_id = ? AND action = "
                     "'malware-detected' AND json LIKE ?", ag.agent_id, "%" + eicar + "%")[0][0]


got = t.wait_for(lambda: stored() >= 1, timeout=60, interval=0.5, what="the alert in the console")
k = diskutil.counters(ag)
t.check(got and k.get("spool_failing") is True,
        "the console has the alert while the filesystem is still read-only (failing %r)"
        % k.get("spool_failing"))
t.check(remount("rw"), "writable again")
with open(os.path.join(work, "b-change"), "w") as f:
    f.write("another file event\n")
t.wait_for(lambda: diskutil.counters(ag).get("spool_failing") is False, timeout=60, interval=0.5,
           what="the spool written again")
t.check_eq(stored(), 1, "the alert is stored once")
t.done()
