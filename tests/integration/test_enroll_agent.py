"""The real agent's side of issue 12, item 1: `yamorictl enroll` on a PC
that is enrolled already (a repair, or a new token) proves the identity
it holds and keeps its agent id, using up no token; and a batch the
console refuses as too far ahead (409 seq_too_far) is kept in the spool,
tried again slowly (no hot loop), reported in the status, and delivered
once the console takes it."""
import json
import os
import signal
import sqlite3
import time

import linkutil
import yit

yit.require_root()
t = yit.Test(__file__)
con = yit.Console(t)
con.tenant("acme")
ag = linkutil.enrolled_agent(t, con)
first = ag.agent_id
state = ag.conf["state_dir"]

# Enrolling again with another token of the company keeps the identity.
token2 = con.token("acme")
tid2 = con.query("SELECT id FROM tokens ORDER BY created_at DESC, rowid DESC LIMIT 1")[0][0]
old = json.load(open(os.path.join(state, "identity.json")))
r = t.run(["yamorictl", "--config", ag.conf_path, "enroll"], env=dict(os.environ, YAMORI_TOKEN=token2))
t.check_eq(r.returncode, 0, "enrolling again succeeds: " + (r.stdout + r.stderr).decode()[-300:])
new = json.load(open(os.path.join(state, "identity.json")))
t.check_eq(new["agent_id"], first, "the agent keeps its id")
t.check(new["secret"] != old["secret"], "with a new secret")
t.check_eq(con.query("SELECT COUNT(*) FROM agents")[0][0], 1, "no second record of the PC")
t.check_eq(con.query("SELECT uses FROM tokens WHERE id = ?", tid2)[0][0], 0,
           "the token was not used up")
t.check_eq(len(con.query("SELECT 1 FROM audit WHERE action = 'agent.reenroll' AND target = ?",
                         first)), 1, "the re-enrollment is audited")
t.check(old["secret"].encode() not in r.stdout + r.stderr, "no secret printed")

# The running agent reads the renewed identity and goes on sending.
d = t.path("files")
os.mkdir(d)
linkutil.storm(d, 20, tag="before")
t.wait_for(lambda: len(linkutil.stored_paths(con, first, "/files/before")) >= 20, timeout=60,
           what="events before the refusal")


def set_mark(sql, *params):
    c = sqlite3.connect(os.path.join(con.data, "yamori.db"), timeout=30)
    try:
        c.execute(sql, params)
        c.commit()
    finally:
        c.close()


# The console's mark of this agent's bulk stream is moved far below its
# numbers: its next batches are refused as too far ahead.
set_mark("UPDATE agent_streams SET high = -5000000, high_ms = ? WHERE agent_id = ? AND stream = 'bulk'",
         int(time.time() * 1000) + 3600 * 1000, first)


def counters():
    r = ag.ctl("--json", "status")
    return json.loads(r.stdout)["counters"] if r.returncode == 0 else {}


linkutil.storm(d, 20, tag="refused")
t.wait_for(lambda: counters().get("uplink_refused", 0) >= 1, timeout=60, what="a refused batch")
time.sleep(10)
k = counters()
t.check_eq(k.get("uplink_refused"), 1, "one refusal in 10 s: no hot loop")
t.check("409" in k.get("uplink_last_error", "") and "seq_too_far" in k.get("uplink_last_error", ""),
        "the status names the refusal (%s)" % k.get("uplink_last_error"))
t.check(k.get("spool_pending", 0) > 0, "the refused batch stays in the spool (%s)" % k.get("spool_pending"))
t.check_eq(len(linkutil.stored_paths(con, first, "/files/refused")), 0, "nothing of it is stored")
t.check(ag.proc.poll() is None, "the agent keeps running")

# The console takes it again (the mark back), and the agent, restarted
# (which resets its back-off), delivers everything it kept.
set_mark("UPDATE agent_streams SET high = (SELECT MAX(seq) FROM events WHERE agent_id = ?1"
         " AND stream = 'bulk'), high_ms = 0 WHERE agent_id = ?1 AND stream = 'bulk'", first)
ag.proc.signal(signal.SIGTERM)
ag.proc.stop()
ag.proc = t.start([yit.binary("yamorid"), "--config", ag.conf_path], name="agent-again")
t.wait_for(lambda: "sensors armed" in ag.proc.stderr_text(), what="agent restarted")
linkutil.drained(t, ag, timeout=120)
got = linkutil.stored_paths(con, first, "/files/refused")
t.check_eq(len([p for (p, a) in got if a == "creation"]), 20,
           "every refused event is delivered afterwards")
t.done()
