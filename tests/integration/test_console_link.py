"""The agent and the console on 127.0.0.1: enrollment, file and process
events from the kernel stored in the console's database with their fields
intact, exactly once; and refusals of bad tokens and bad batches while the
console keeps serving."""
import base64
import gzip
import http.client
import json
import os
import subprocess
import time

import agentsim
import yit
from yit import get

yit.require_root()
t = yit.Test(__file__)
con = yit.Console(t)
con.tenant("acme")
token = con.token("acme")
t.check(token.startswith("ymt1."), "token has the ymt1 form")

ag = yit.Agent(t, {"policy": {"exec": "off", "file": "detect"}, "spool": {"bulk_flush_ms": 200}})
env = dict(os.environ, YAMORI_TOKEN=token)
r = t.run(["yamorictl", "--config", ag.conf_path, "enroll"], env=env)
t.check_eq(r.returncode, 0, "enroll succeeds: " + r.stdout.decode() + r.stderr.decode())
t.check(token.encode() not in r.stdout + r.stderr, "the token is not printed")
ident = json.load(open(os.path.join(ag.conf["state_dir"], "identity.json")))
st = os.stat(os.path.join(ag.conf["state_dir"], "identity.json"))
t.check_eq(st.st_mode & 0o777, 0o600, "identity file is 0600")
agent_id = ident["agent_id"]
t.check_eq(len(con.query("SELECT id FROM agents WHERE id = ?", agent_id)), 1, "agent registered")

# Kernel events reach the database with their fields intact.
d = t.path("e2e")
os.mkdir(d)
p = os.path.join(d, "report \u5bb6.txt")
with open(p, "w") as f:
    f.write("hello")
os.unlink(p)
sp = subprocess.run(["/bin/sh", "-c", "exit 5"])


def rows_for(path):
    out = []
    for (js,) in con.query("SELECT json FROM events WHERE agent_id = ? AND json LIKE ?",
                           agent_id, "%e2e%"):
        e = json.loads(js)
        if get(e, "file.path") == path:
            out.append(e)
    return out


t.wait_for(lambda: len(rows_for(p)) >= 3, timeout=60, what="file events in the console")
evs = rows_for(p)
actions = sorted(get(e, "event.action") for e in evs)
t.check_eq(actions, ["creation", "deletion", "modification"], "each file event stored once")
t.check(all(get(e, "process.pid") == os.getpid() for e in evs), "acting process intact")
t.check(all(get(e, "file.name") == "report \u5bb6.txt" for e in evs), "UTF-8 name intact")
t.wait_for(lambda: con.query("SELECT count(*) FROM events WHERE agent_id = ? AND dataset = "
                             "'yamori.process' AND json LIKE ?", agent_id,
                             '%"exit_code":5%')[0][0] >= 1, timeout=60, what="process end event")
row = con.query("SELECT tenant_id FROM events WHERE agent_id = ? LIMIT 1", agent_id)
tenant_id = con.query("SELECT id FROM tenants WHERE name = 'acme'")[0][0]
t.check_eq(row[0][0], tenant_id, "events stored under the agent's tenant")

# Check-in recorded.
t.wait_for(lambda: con.query("SELECT last_seen FROM agents WHERE id = ?", agent_id)[0][0],
           timeout=30, what="check-in recorded")

# ---- refusals; the console keeps serving after each ----
auth = {"Authorization": "Bearer %s.%s" % (agent_id, ident["secret"]),
        "Content-Encoding": "gzip", "Content-Type": "application/x-ndjson"}


def batch(agent, stream, first, n, extra=""):
    lines = [json.dumps({"agent_id": agent, "stream": stream, "first_seq": first,
                         "last_seq": first + n - 1, "count": n})]
    for i in range(n):
        lines.append(json.dumps({"@timestamp": "2026-11-25T00:00:00.000000Z",
                                 "event": {"kind": "event", "action": "test" + extra},
                                 "yamori": {"stream_seq": first + i}}))
    return gzip.compress(("\n".join(lines) + "\n").encode())


def healthy():
    s, _, _ = con.request("GET", "/api/v1/health")
    return s == 200


# Numbers far ahead of what the agent has stored are refused, and nothing
# of the batch is kept.
body = batch(agent_id, "bulk", 10_000_000, 3)
s, _, b = con.request("POST", "/api/v1/events", body, auth)
t.check(s == 409 and json.loads(b)["error"] == "seq_too_far",
        "a batch far ahead of the agent's numbers is refused (%d %s)" % (s, b[:80]))
t.check_eq(con.query("SELECT count(*) FROM events WHERE agent_id = ? AND seq >= 10000000",
                     agent_id)[0][0], 0, "nothing of it is stored")
# Replays, by a second identity of its own (its first batch sets its mark).
sim = agentsim.SimAgent(con, token, host_name="replayer")
sim_auth = dict(auth, Authorization="Bearer %s.%s" % (sim.agent_id, sim.secret))
body = batch(sim.agent_id, "bulk", 10_000_000, 3)
s1, _, b1 = con.request("POST", "/api/v1/events", body, sim_auth)
s2, _, b2 = con.request("POST", "/api/v1/events", body, sim_auth)
t.check(s1 == 200 and s2 == 200 and b1 == b2, "replayed batch acknowledged the same (%d %d)" % (s1, s2))
n = con.query("SELECT count(*) FROM events WHERE agent_id = ? AND seq >= 10000000",
              sim.agent_id)[0][0]
t.check_eq(n, 3, "replayed batch stored once")

other = batch("00000000-0000-4000-8000-000000000000", "bulk", 20_000_000, 1)
s, _, _ = con.request("POST", "/api/v1/events", other, auth)
t.check_eq(s, 403, "events claiming another agent's id refused")
s, _, _ = con.request("POST", "/api/v1/events", gzip.compress(b"{not json\n"), auth)
t.check_eq(s, 400, "malformed JSON refused")
# The console answers 413 and may close the connection before the client
# has written the whole body; the client then sees the close, not the 413.
try:
    s, _, _ = con.request("POST", "/api/v1/events", os.urandom(5 * 1024 * 1024), auth)
except (OSError, http.client.HTTPException) as e:
    s = "closed while sending (%s)" % type(e).__name__
t.check(s == 413 or str(s).startswith("closed"), "oversized body refused (%s)" % s)
t.check_eq(con.request("GET", "/api/v1/health")[0], 200, "console serves after the refusal")
bomb = gzip.compress(b"\0" * (200 * 1024 * 1024))
s, _, _ = con.request("POST", "/api/v1/events", bomb, auth, timeout=60)
t.check(s in (400, 413), "gzip bomb refused (%d)" % s)
bad = dict(auth, Authorization="Bearer %s.%s" % (agent_id, "A" * 43))
s, _, _ = con.request("POST", "/api/v1/events", body, bad)
t.check_eq(s, 401, "wrong secret refused")
s, _, _ = con.request("POST", "/api/v1/events", body, {"Content-Encoding": "gzip"})
t.check_eq(s, 401, "missing credentials refused")
t.check(healthy(), "console still serving after bad input")

# Tokens: revoked, expired, exhausted, and a wrong pin.
tok2 = con.token("acme", "--max-uses", "1")
raw = json.loads(base64.urlsafe_b64decode(tok2[5:] + "=" * (-len(tok2[5:]) % 4)))
tid = raw["tok"].split(".")[0]
r = con.cli("token", "revoke", tid)
t.check_eq(r.returncode, 0, "token revoked")
state2 = t.path("state2")
os.mkdir(state2, 0o700)
conf2 = t.path("agent2.json")
with open(conf2, "w") as f:
    json.dump({"state_dir": state2, "control": {"socket": t.path("a2.sock")}}, f)
r = t.run(["yamorictl", "--config", conf2, "enroll"], env=dict(os.environ, YAMORI_TOKEN=tok2))
t.check(r.returncode != 0 and b"revoked" in r.stdout + r.stderr, "revoked token refused")

tok3 = con.token("acme")
raw3 = json.loads(base64.urlsafe_b64decode(tok3[5:] + "=" * (-len(tok3[5:]) % 4)))
raw3["pin"] = "sha256//" + base64.b64encode(b"x" * 32).decode()
forged = "ymt1." + base64.urlsafe_b64encode(json.dumps(raw3).encode()).decode().rstrip("=")
r = t.run(["yamorictl", "--config", conf2, "enroll"], env=dict(os.environ, YAMORI_TOKEN=forged))
t.check(r.returncode != 0 and b"pin" in r.stdout + r.stderr, "wrong certificate pin refused")

con.proc.stop()
import sqlite3
c = sqlite3.connect(os.path.join(con.data, "yamori.db"))
c.execute("UPDATE tokens SET expires_at = 1 WHERE id = ?", (raw3["tok"].split(".")[0],))
c.commit()
c.close()
con.start()
r = t.run(["yamorictl", "--config", conf2, "enroll"], env=dict(os.environ, YAMORI_TOKEN=tok3))
t.check(r.returncode != 0 and b"expired" in r.stdout + r.stderr, "expired token refused")
t.check(healthy(), "console serving at the end")
t.done()
