"""Crashes on both sides during a storm: the agent killed with SIGKILL 20
times, then the console killed repeatedly (also between commit and
reply). Every event the spool accepted is stored once; none twice."""
import os
import signal
import threading
import time
import yit
import linkutil

yit.require_root()
t = yit.Test(__file__)
con = yit.Console(t)
con.tenant("acme")
ag = linkutil.enrolled_agent(t, con)
d = t.path("crash")
os.mkdir(d)

stop = threading.Event()


def writer():
    i = 0
    while not stop.is_set():
        linkutil.storm(d, 200, tag="w%d_" % i)
        i += 1


th = threading.Thread(target=writer)
th.start()
for k in range(20):
    time.sleep(0.7)
    ag.proc.signal(signal.SIGKILL)
    ag.proc.p.wait()
    ag.proc = t.start([yit.binary("yamorid"), "--config", ag.conf_path], name="agent%d" % k)
    t.wait_for(lambda: "sensors armed" in ag.proc.stderr_text(), what="agent restarted")
t.check(True, "agent killed and restarted 20 times")
for k in range(8):
    time.sleep(1.0)
    con.stop(signal.SIGKILL)
    con.start()
t.check(True, "console killed and restarted 8 times")
stop.set()
th.join()
linkutil.drained(t, ag)
linkutil.stream_check(t, con, ag.agent_id, "after crashes")
t.done()
