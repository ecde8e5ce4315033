"""The state directory's filesystem remounted read-only while the agent
runs: it keeps detecting and alerting locally, costs under 5% of a core,
writes no gap record per failed write, and after the filesystem is writable
again reports what it could not keep exactly once, with a count; SIGTERM
stops it within 3 s while the filesystem is read-only."""
import os
import subprocess
import time
import yit
import diskutil
from yit import get

yit.require_root()
t = yit.Test(__file__)
state = t.path("state")
diskutil.mount_tmpfs(t, state, "64m")
work = t.path("work")
ag = yit.Agent(t, {"state_dir": state, "policy": {"exec": "off", "file": "detect"}})
control = diskutil.control_agent(t)
act = diskutil.Activity(work)
time.sleep(2.5)  # a bulk batch is written while the filesystem is writable


def remount(mode):
    # A write in progress makes the remount busy for a moment.
    for _ in range(100):
        r = subprocess.run(["mount", "-o", "remount,%s" % mode, state], capture_output=True)
        if r.returncode == 0:
            return True
        time.sleep(0.05)
    return t.check(False, "remount %s: %s" % (mode, r.stderr.decode().strip()))


t.check(remount("ro"), "the state filesystem is read-only")
eicar = os.path.join(work, "eicar.com")
diskutil.write_eicar(eicar)
alert = ag.wait_event(lambda e: get(e, "event.kind") == "alert" and get(e, "file.path") == eicar,
                      timeout=30, what="an alert while the filesystem is read-only")
t.check(alert is not None, "detection and local alerts go on while the filesystem is read-only")
diskutil.burst(t.path("burst"), 12000)
k = t.wait_for(lambda: (lambda k: k if k.get("spool_unwritten", 0) > 0 else None)(
    diskutil.counters(ag)), timeout=90, interval=0.5, what="events counted as unwritten")
t.check(k is not None and k.get("spool_failing") is True, "status says the spool cannot be written")
time.sleep(3)  # the burst handled
diskutil.measure_cpu(t, ag, control, 10.0, "read-only")
t.check_eq(len(diskutil.write_gaps(ag)), 0, "no gap record while nothing can be written")
t.check_eq(ag.proc.stderr_text().count("cannot write the spool"), 1,
           "the failure is logged once")

t.check(remount("rw"), "the state filesystem is writable again")
gap = ag.wait_event(lambda e: get(e, "yamori.gap.reason") == "spool_write_failed", timeout=60,
                    what="the loss record once the filesystem is writable")
time.sleep(4)
k = diskutil.counters(ag)
t.check_eq(len(diskutil.write_gaps(ag)), 1, "exactly one loss record")
if gap is not None:
    t.check(get(gap, "yamori.gap.count", 0) > 0 and get(gap, "yamori.gap.count") == k.get(
        "spool_unwritten"), "the record counts the events lost (%r, status %r)"
            % (get(gap, "yamori.gap.count"), k.get("spool_unwritten")))
    t.check(get(gap, "event.start") is not None and get(gap, "event.start") <= get(gap, "event.end"),
            "the record has the time range of the loss")
t.check(k.get("spool_failing") is False, "the spool is written again")

t.check(remount("ro"), "read-only again")
t.wait_for(lambda: diskutil.counters(ag).get("spool_failing") is True, timeout=30, interval=0.5,
           what="the spool failing again")
diskutil.measure_stop(t, ag, "read-only")
act.stop()
remount("rw")
t.done()
