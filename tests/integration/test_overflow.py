"""A forced overflow: the agent is stopped (SIGSTOP) during a storm of
file events; after SIGCONT it reports a gap for the lost events and keeps
running and reporting."""
import os
import signal
import yit
from yit import get

yit.require_root()
t = yit.Test(__file__)
# No exec guard here: while the agent is stopped with SIGSTOP the kernel
# would hold every program start on the machine.
ag = yit.Agent(t, {"policy": {"exec": "off"}, "scan": {"on_write": False}})
d = t.path("storm")
os.mkdir(d)

ag.proc.signal(signal.SIGSTOP)
# The kernel queue holds 16,384 events; this makes about 60,000.
for i in range(20000):
    p = os.path.join(d, "f%d" % i)
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, b"x")
    os.close(fd)
    os.unlink(p)
ag.proc.signal(signal.SIGCONT)

gap = ag.wait_event(lambda e: get(e, "event.action") == "gap" and get(e, "yamori.gap.source") == "fanotify",
                    timeout=60, what="fanotify gap record")
t.check(gap is not None and get(gap, "yamori.gap.reason") == "queue_overflow", "gap names the overflow")
t.check(gap is not None and get(gap, "yamori.gap.count") is None, "gap does not invent a count")
t.check(ag.proc.poll() is None, "agent still running after the overflow")
after = t.path("after-overflow")
open(after, "w").close()
t.check(ag.wait_event(lambda e: get(e, "file.path") == after, timeout=60, what="event after overflow")
        is not None, "events flow again after the overflow")
t.done()
