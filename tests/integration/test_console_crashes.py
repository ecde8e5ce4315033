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
before = linkutil.produced(t, ag)
killed = restarted = 0
for k in range(20):
    time.sleep(0.7)
    t.check(ag.proc.poll() is None, "agent %d running when killed" % k)
    ag.proc.signal(signal.SIGKILL)
    ag.proc.p.wait()
    killed += ag.proc.p.returncode == -signal.SIGKILL
    ag.proc = t.start([yit.binary("yamorid"), "--config", ag.conf_path], name="agent%d" % k)
    if t.wait_for(lambda: "sensors armed" in ag.proc.stderr_text(), what="agent restarted"):
        restarted += 1
t.check_eq((killed, restarted), (20, 20), "agent killed by SIGKILL and restarted")
mid = linkutil.produced(t, ag)
t.check(mid["bulk"] > before["bulk"], "the storm went on across the agent's crashes (bulk %d -> %d)"
        % (before["bulk"], mid["bulk"]))


def stored_now():
    return con.query("SELECT count(*) FROM events WHERE agent_id = ?", ag.agent_id)[0][0]


killed = up = 0
n0 = stored_now()
for k in range(8):
    time.sleep(1.0)
    killed += con.stop(signal.SIGKILL) == -signal.SIGKILL
    con.start()
    up += con.proc.poll() is None
t.check_eq((killed, up), (8, 8), "console killed by SIGKILL and up again")
t.check(stored_now() > n0, "events were being stored while the console was killed (%d -> %d)"
        % (n0, stored_now()))
stop.set()
th.join()
linkutil.drained(t, ag)
linkutil.stream_check(t, con, ag, "after crashes")
t.done()
