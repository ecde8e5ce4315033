"""Re-enrollment cannot take over an enrolled PC (issue 12, item 1), on a
real console: a second token of the same company and the enrolled PC's
host.id make a new agent record; the PC keeps its id and secret; the
dashboard shows both records as a duplicate host (PC state "check", an
incident of kind "duplicate"); the audit log holds every enrollment,
re-enrollment and refusal with the token id and the address, and no
secret. An agent keeps its identity only by proving its secret. A batch
far ahead of what an identity has stored is refused with 409. The
installer download is a POST with the CSRF header, and makes a token of
10 uses and 7 days that the staff see and revoke."""
import gzip
import json
import re
import time
import uuid

import agentsim
import yit

t = yit.Test(__file__)
con = yit.Console(t, extra=["--checkin-s", "10"])
admin = con.ui()
st, body = admin.post("/api/ui/tenants", {"name": "acme", "display": "ACME"})
t.check_eq(st, 200, "tenant created")
acme = body["id"]


def enroll(tok, host_id, auth=None, host_name="pc-01"):
    body = {"host": {"name": host_name, "id": host_id, "os": {"name": "Debian GNU/Linux"}},
            "agent": {"version": "0.0.1"}}
    if tok is not None:
        body["token"] = agentsim.decode_token(tok)["tok"]
    h = {"Content-Type": "application/json"}
    if auth is not None:
        h["Authorization"] = "Bearer %s.%s" % auth
    st, _, data = con.request("POST", "/api/v1/enroll", json.dumps(body).encode(), h)
    return st, (json.loads(data) if data else None)


def batch(agent_id, secret, stream, first, n):
    lines = []
    now = int(time.time() * 1000)
    for i in range(n):
        e = agentsim.file_event(now, "/home/u/f%d" % (first + i))
        e["yamori"] = {"stream_seq": first + i}
        lines.append(json.dumps(e))
    header = {"agent_id": agent_id, "stream": stream, "first_seq": first,
              "last_seq": first + n - 1, "count": n}
    raw = (json.dumps(header) + "\n" + "\n".join(lines) + "\n").encode()
    h = {"Authorization": "Bearer %s.%s" % (agent_id, secret),
         "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
    st, _, data = con.request("POST", "/api/v1/events", gzip.compress(raw), h)
    return st, (json.loads(data) if data else None)


# ---- the attack ----
st, tok_a = admin.post("/api/ui/tenants/%d/tokens" % acme, {})
t.check_eq(st, 200, "first token")
st, tok_b = admin.post("/api/ui/tenants/%d/tokens" % acme, {})
t.check_eq(st, 200, "second token")
host_id = uuid.uuid4().hex
st, pc = enroll(tok_a["token"], host_id)
t.check_eq(st, 200, "the PC enrolls")
st, ack = batch(pc["agent_id"], pc["secret"], "bulk", 1, 3)
t.check_eq((st, ack), (200, {"acked": 3}), "the PC sends events")

st, mole = enroll(tok_b["token"], host_id, host_name="mole")
t.check_eq(st, 200, "the second enrollment with the PC's host.id is answered")
t.check(mole["agent_id"] != pc["agent_id"], "it gets a new agent_id, not the PC's")
t.check(mole["secret"] != pc["secret"], "and a secret of its own")
st, ack = batch(pc["agent_id"], pc["secret"], "bulk", 4, 2)
t.check_eq((st, ack), (200, {"acked": 5}), "the PC's secret still works")
h = {"Authorization": "Bearer %s.%s" % (pc["agent_id"], pc["secret"]),
     "Content-Type": "application/json"}
st, _, _ = con.request("POST", "/api/v1/checkin", json.dumps(
    {"agent_id": pc["agent_id"], "version": "0.0.1", "status": {}, "counters": {}}).encode(), h)
t.check_eq(st, 200, "the PC still checks in")

# The mole's numbers cannot hide the PC's events.
st, _ = batch(mole["agent_id"], mole["secret"], "bulk", 6, 100)
t.check_eq(st, 200, "the mole sends numbers the PC will use next")
st, ack = batch(pc["agent_id"], pc["secret"], "bulk", 6, 5)
t.check_eq((st, ack), (200, {"acked": 10}), "the PC's next events are taken")
rows = con.query("SELECT COUNT(*) FROM events WHERE agent_id = ?", pc["agent_id"])
t.check_eq(rows[0][0], 10, "all ten of the PC's events are stored")
# Numbers far ahead of what an identity has stored: refused, clearly.
st, err = batch(pc["agent_id"], pc["secret"], "bulk", 10 + 3000000, 1)
t.check_eq(st, 409, "a batch 3,000,000 ahead of the PC's stored numbers is refused")
t.check_eq(err.get("error"), "seq_too_far", "the refusal names the reason")
st, ack = batch(pc["agent_id"], pc["secret"], "bulk", 11, 1)
t.check_eq((st, ack), (200, {"acked": 11}), "the PC's next batch after the refusal is taken")

# ---- the dashboard shows the duplicate ----
st, agents = admin.get("/api/ui/agents?tenant=%d" % acme)
t.check_eq(st, 200, "PC list")
state = {a["id"]: a["state"] for a in agents["items"]}
t.check_eq(state.get(pc["agent_id"]), "check", "the PC's state is check")
t.check_eq(state.get(mole["agent_id"]), "check", "the duplicate's state is check")
st, inc = admin.get("/api/ui/incidents?tenant=%d" % acme)
dups = [i for i in inc["items"] if i["kind"] == "duplicate"]
t.check_eq(sorted(i["agent"]["id"] if isinstance(i.get("agent"), dict) else i.get("agent_id")
                  for i in dups), sorted([pc["agent_id"], mole["agent_id"]]),
           "each record has a duplicate-host incident")
st, d = admin.get("/api/ui/incidents/%d" % dups[0]["id"])
t.check_eq(st, 200, "the duplicate incident opens")
t.check(host_id in json.dumps(d), "it names the host id")
st, _ = admin.post("/api/ui/incidents/%d" % dups[0]["id"], {"state": "resolved"})
t.check_eq(st, 200, "a duplicate incident can be resolved")

# ---- re-enrollment needs the secret ----
st, again = enroll(None, host_id, auth=(pc["agent_id"], pc["secret"]))
t.check_eq(st, 200, "the PC enrolls again with its secret and no token")
t.check_eq(again["agent_id"], pc["agent_id"], "and keeps its agent_id")
t.check(again["secret"] != pc["secret"], "with a new secret")
st, _ = batch(pc["agent_id"], pc["secret"], "bulk", 12, 1)
t.check_eq(st, 401, "the replaced secret no longer works")
st, err = enroll(None, host_id, auth=(pc["agent_id"], mole["secret"]))
t.check_eq((st, err.get("error")), (401, "agent_unknown"),
           "another identity's secret does not re-enroll the PC")
st, err = enroll(None, host_id)
t.check_eq(st, 400, "neither token nor secret: malformed")
bad = tok_b["token"]
st, err = enroll(None, host_id, auth=(mole["agent_id"], "x" * 43))
t.check_eq(st, 401, "a wrong secret is refused")
wrong = agentsim.decode_token(bad)["tok"][:17] + "A" * 43
body = {"token": wrong, "host": {"name": "x", "id": host_id}}
st, _, data = con.request("POST", "/api/v1/enroll", json.dumps(body).encode(),
                          {"Content-Type": "application/json"})
t.check_eq(st, 401, "a token with a wrong secret is refused")

st, odd = enroll(tok_b["token"], host_id, auth=("z" * 39, "y" * 60))
t.check_eq(st, 200, "a malformed proof with a valid token: the token enrolls")
t.check(odd["agent_id"] not in (pc["agent_id"], mole["agent_id"]), "as a new record")

# ---- the audit log ----
st, audit = admin.get("/api/ui/audit?tenant=%d&limit=200" % acme)
t.check_eq(st, 200, "audit log")
items = [a for a in audit["items"] if a["action"].startswith("agent.")]
text = json.dumps(audit)
for secret in (pc["secret"], mole["secret"], again["secret"],
               agentsim.decode_token(tok_a["token"])["tok"].split(".")[1],
               agentsim.decode_token(tok_b["token"])["tok"].split(".")[1]):
    t.check(secret not in text, "no secret in the audit log")
tid_a = tok_a["id"]
tid_b = tok_b["id"]
enrolls = [(a["target"], json.loads(a["detail"])["token"]) for a in items
           if a["action"] == "agent.enroll"]
t.check((pc["agent_id"], tid_a) in enrolls, "the PC's enrollment is audited with its token id")
t.check((mole["agent_id"], tid_b) in enrolls, "the second enrollment is audited with its token id")
t.check(any(a["action"] == "agent.reenroll" and a["target"] == pc["agent_id"] for a in items),
        "the re-enrollment is audited")
refused = [a for a in items if a["action"] == "agent.enroll_refused"]
t.check(any(json.loads(a["detail"]).get("reason") == "agent_unknown" for a in refused),
        "the refused re-enrollment is audited")
t.check(any(a["action"] == "agent.enroll" and a["target"] == odd["agent_id"] and
            json.loads(a["detail"]).get("reason") == "proof_failed" for a in items),
        "an enrollment after a failed proof says so")
t.check(all(a["peer"] == "127.0.0.1" for a in items) and len(items) >= 5,
        "every enrollment record has the client's address (%d records)" % len(items))
rows = con.query("SELECT detail FROM audit WHERE action = 'agent.enroll_refused'"
                 " AND detail LIKE '%token_invalid%'")
t.check(len(rows) >= 1 and tid_b in rows[0][0], "the refused token is audited by id")

# ---- the staff revoke the records that are not the PC ----
st, ack = batch(mole["agent_id"], mole["secret"], "bulk", 200, 1)
t.check_eq(st, 200, "the mole's secret works before (and is in the console's cache)")
for rec in (mole, odd):
    st, _ = admin.post("/api/ui/agents/%s/revoke" % rec["agent_id"], {})
    t.check_eq(st, 200, "a duplicate record is revoked from the dashboard")
st, _ = batch(mole["agent_id"], mole["secret"], "bulk", 201, 1)
t.check_eq(st, 401, "the revoked record's secret stops working at once")
st, _ = admin.post("/api/ui/agents/%s/revoke" % mole["agent_id"], {})
t.check_eq(st, 404, "a revoked record is not revoked twice")
st, _ = admin.get("/api/ui/agents/%s" % mole["agent_id"])
t.check_eq(st, 404, "a revoked record is gone from the PCs")
st, inc = admin.get("/api/ui/incidents?tenant=%d&state=open" % acme)
t.check_eq([i for i in inc["items"] if i["kind"] == "duplicate"], [],
           "no duplicate incident is left open once the PC is alone")
st, a = admin.get("/api/ui/agents/%s" % pc["agent_id"])
t.check_eq(a["state"], "safe", "the PC is safe again")
st, aud = admin.get("/api/ui/audit?tenant=%d&limit=200" % acme)
t.check_eq(len([x for x in aud["items"] if x["action"] == "agent.revoke"]), 2,
           "both revocations are audited")

# ---- installer downloads ----
path = "/api/ui/tenants/%d/installer" % acme
st, _ = admin.call("GET", path)
t.check_eq(st, 405, "GET of the installer answers 405")
st, _ = admin.call("POST", path, {}, csrf=False)
t.check_eq(st, 403, "POST without the CSRF header is refused")
st, file1 = admin.call("POST", path, {}, raw=True)
t.check_eq(st, 200, "POST with the CSRF header downloads the installer")
m = re.search(rb"\nYAMORI_TOKEN=(ymt1\.[A-Za-z0-9_-]+)\n", file1)
t.check(m is not None, "the installer holds a token")
itok = m.group(1).decode()
st, toks = admin.get("/api/ui/tenants/%d/tokens" % acme)
inst = [x for x in toks["items"] if x["kind"] == "installer"]
t.check_eq(len(inst), 1, "the download made one installer token")
x = inst[0]
t.check_eq(x["max_uses"], 10, "of 10 uses")
days = (x["expires_ms"] - x["created_ms"]) / 86400000
t.check(6.99 < days < 7.01, "valid for 7 days (%.2f)" % days)
t.check_eq(agentsim.decode_token(itok)["tok"][:16], x["id"], "the listed token is the one inside")
st, _ = enroll(itok, uuid.uuid4().hex)
t.check_eq(st, 200, "the installer's token enrolls")
st, _ = admin.post("/api/ui/tokens/%s/revoke" % x["id"], {})
t.check_eq(st, 200, "the staff revoke it")
st, err = enroll(itok, uuid.uuid4().hex)
t.check_eq((st, err.get("error")), (401, "token_revoked"), "the revoked installer token is refused")
t.done()
