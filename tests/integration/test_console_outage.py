"""Console down while 100,000 events are produced, then back: all arrive,
each stored once."""
import os
import signal
import yit
import linkutil

yit.require_root()
t = yit.Test(__file__)
con = yit.Console(t)
con.tenant("acme")
ag = linkutil.enrolled_agent(t, con)
con.stop(signal.SIGKILL)

d = t.path("outage")
os.mkdir(d)
N = 33400  # 3 events each: 100,200 events
linkutil.storm(d, N)
con.start()
# Counted in SQL while waiting (cheap); checked event by event at the end.
t.wait_for(lambda: con.query("SELECT count(*) FROM events WHERE agent_id = ? AND dataset = "
                             "'yamori.file' AND json LIKE ?", ag.agent_id, "%" + d + "/%")[0][0] >= 3 * N,
           timeout=600, what="all storm events stored", interval=2)
got = linkutil.stored_paths(con, ag.agent_id, d + "/")
t.check_eq(len(got), 3 * N, "every (file, action) stored")
t.check(all(v == 1 for v in got.values()), "each stored once")
linkutil.stream_check(t, con, ag, "after outage")
t.done()
