"""The dashboard API for people, end to end on a real console: login,
cookie flags, CSRF, login limits, roles, incidents grouped from alerts,
state changes with notes and audit, agent-silent incidents, retention
(events pruned, incidents kept), event search, process tree and the
monthly report."""
import json
import time

import agentsim
import yit

t = yit.Test(__file__)
con = yit.Console(t, extra=["--maintenance-s", "1", "--checkin-s", "10"])
admin = con.ui()

# Session cookie and CSRF.
c = admin.set_cookie
for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
    t.check(flag in c, "session cookie has " + flag)
st, body = admin.post("/api/ui/tenants", {"name": "acme", "display": "ACME 株式会社"}, csrf=False)
t.check_eq(st, 403, "a state change without the CSRF header is refused")
t.check_eq(body["error"], "csrf", "the refusal names CSRF")
st, body = admin.post("/api/ui/tenants", {"name": "acme", "display": "ACME 株式会社"})
t.check_eq(st, 200, "tenant created with CSRF")
acme = body["id"]
st, _ = yit.UiSession(con).get("/api/ui/overview")
t.check_eq(st, 401, "no session: 401")
# A tenant id beyond any integer is refused as malformed, not looked up.
for bad in (1e300, -1e300, 1.5):
    st, _ = admin.post("/api/ui/users", {"name": "odd-tenant", "password": "correct horse battery",
                                         "role": "viewer", "tenant_id": bad})
    t.check_eq(st, 400, "tenant_id %r is refused" % bad)

# People of the customer, with roles.
for name, role in (("acme-viewer", "viewer"), ("acme-op", "operator"), ("acme-admin", "admin")):
    st, _ = admin.post("/api/ui/users", {"name": name, "password": "correct horse battery",
                                          "role": role, "tenant_id": acme})
    t.check_eq(st, 200, "user %s created" % name)
st, body = admin.post("/api/ui/users", {"name": "weak", "password": "short", "role": "viewer",
                                        "tenant_id": acme})
t.check_eq(st, 400, "a short password is refused")

# Login limits (per name and address, slowed before refused) are tested in
# test_dashboard_login.py; here only that failures do not refuse the right
# password.
s = yit.UiSession(con)
for i in range(3):
    t.check_eq(s.login("acme-viewer", "wrong password %d" % i), 401, "wrong password %d" % i)
t.check_eq(s.login("acme-viewer", "correct horse battery"), 200,
           "the right password after three failures")
op = con.ui("acme-op", "correct horse battery")
t.check_eq(op.get("/api/ui/me")[1]["user"]["tenant"]["id"], acme, "operator belongs to acme")

# An agent of acme and its alerts: two alerts of one rule are one incident.
st, tok = admin.post("/api/ui/tenants/%d/tokens" % acme, {"expires_days": 1, "max_uses": 5})
t.check_eq(st, 200, "enrollment token created from the dashboard")
t.check(tok["token"].startswith("ymt1."), "token string is ymt1")
pc = agentsim.SimAgent(con, tok["token"], host_name="pc-01")
now = int(time.time() * 1000)
pc.send("alerts", [agentsim.alert(now, rule="R_A", path="/home/u/a.exe"),
                   agentsim.alert(now + 1, rule="R_A", path="/home/u/a.exe"),
                   agentsim.alert(now + 2, rule="R_B", path="/tmp/b.sh", title="Other")])
pc.send("alerts", [agentsim.alert(now + 3, rule="R_A", path="/home/u/a2.exe")])
pc.checkin()
st, inc = op.get("/api/ui/incidents")
t.check_eq(st, 200, "incident list")
by_rule = {i["rule"]: i for i in inc["items"]}
t.check_eq(sorted(by_rule), ["R_A", "R_B"], "one incident per rule")
t.check_eq(by_rule["R_A"]["count"], 3, "three alerts counted in one incident")
t.check_eq(by_rule["R_A"]["state"], "new", "new incident")
st, ov = op.get("/api/ui/overview")
t.check_eq(ov["totals"]["danger"], 1, "the PC is in danger")
t.check_eq(ov["totals"]["incidents_open"], 2, "two open incidents")

# State, owner and notes; viewers cannot change anything.
ia = by_rule["R_A"]["id"]
viewer_s = yit.UiSession(con)
st, _ = admin.post("/api/ui/users", {"name": "acme-viewer2", "password": "correct horse battery",
                                     "role": "viewer", "tenant_id": acme})
viewer = con.ui("acme-viewer2", "correct horse battery")
st, _ = viewer.post("/api/ui/incidents/%d" % ia, {"state": "acknowledged"})
t.check_eq(st, 403, "a viewer cannot change an incident")
st, body = op.post("/api/ui/incidents/%d" % ia, {"state": "acknowledged", "owner": "acme-op",
                                                  "note": "調査中です <b>x</b>"})
t.check_eq((st, body["state"], body["owner"]), (200, "acknowledged", "acme-op"),
           "operator acknowledges and takes the incident")
st, d = op.get("/api/ui/incidents/%d" % ia)
t.check_eq(d["notes"][0]["text"], "調査中です <b>x</b>", "note kept as text")
t.check_eq([p["name"] for p in d["process"]], ["bash", "systemd"], "acting process and parent")
t.check(len(d["alerts"]) == 3, "the incident lists its alerts")
whats = [e["what"] for e in d["timeline"]]
for w in ("created", "alert", "state", "owner", "note"):
    t.check(w in whats, "timeline has " + w)
st, body = op.post("/api/ui/incidents/%d" % ia, {"state": "resolved"})
t.check_eq(body["state"], "resolved", "resolved")
pc.send("alerts", [agentsim.alert(int(time.time() * 1000), rule="R_A", path="/home/u/a3.exe")])
st, inc = op.get("/api/ui/incidents?state=open")
t.check_eq(sorted(i["rule"] for i in inc["items"]), ["R_A", "R_B"],
           "an alert after resolution opens a new incident")
st, aud = admin.get("/api/ui/audit?tenant=%d" % acme)
actions = [a["action"] for a in aud["items"]]
for a in ("incident.state", "incident.owner", "incident.note", "token.create", "user.create"):
    t.check(a in actions, "audit log has " + a)
t.check(all(a["user"] for a in aud["items"]), "every audit entry names a person")

# Event search and the process tree.
base = int(time.time() * 1000)
pc.send("bulk", [agentsim.file_event(base, "/srv/share/report.xlsx"),
                 agentsim.file_event(base + 1, "/home/u/notes.txt"),
                 agentsim.process_event(base + 2, 100, 1, "bash"),
                 agentsim.process_event(base + 3, 101, 100, "curl"),
                 agentsim.process_event(base + 4, 101, 100, "curl", action="end")])
st, ev = op.get("/api/ui/events?path=/srv/share/")
t.check_eq([yit.get(e["event"], "file.path") for e in ev["items"]], ["/srv/share/report.xlsx"],
           "event search by path prefix")
st, ev = op.get("/api/ui/events?process=curl&agent=" + pc.agent_id)
t.check_eq(len(ev["items"]), 2, "event search by process name on one PC")
st, ev = op.get("/api/ui/events?limit=2")
t.check(ev["next_before_id"] is not None, "a full page has a cursor")
st, ev2 = op.get("/api/ui/events?limit=2&before_id=%d" % ev["next_before_id"])
t.check(ev2["items"][0]["id"] not in [e["id"] for e in ev["items"]], "the next page goes on")
st, tree = op.get("/api/ui/agents/%s/processes" % pc.agent_id)
nodes = {n["pid"]: n for n in tree["nodes"]}
t.check_eq(nodes[101]["parent_entity_id"], "p-100", "curl's parent is bash")
t.check(nodes[101]["end_ms"] is not None and nodes[100]["end_ms"] is None,
        "ended processes carry their end")

# Agent silent: the PC stops checking in, then comes back.
st, _ = admin.post("/api/ui/tenants/%d/settings" % acme,
                   {"silent_minutes": 5, "helpdesk": "0120-000-000", "emails": ["a@example.jp"]})
t.check_eq(st, 200, "settings saved")
st, bad = admin.post("/api/ui/tenants/%d/settings" % acme, {"emails": ["x\r\nBcc: evil@x"]})
t.check_eq(st, 400, "an address with CR/LF is refused")
import sqlite3
db = sqlite3.connect(con.data + "/yamori.db", timeout=30)
db.execute("UPDATE agents SET last_seen = ? WHERE id = ?", (now - 10 * 60000, pc.agent_id))
db.commit()
db.close()
def silent_open():
    st, inc = op.get("/api/ui/incidents?state=open")
    return [i for i in inc["items"] if i["kind"] == "silent"]
t.wait_for(lambda: silent_open(), timeout=20, what="agent-silent incident")
st, ov = op.get("/api/ui/overview")
t.check_eq(ov["totals"]["danger"], 1, "danger still wins over silence")
pc.checkin()
t.check(not silent_open(), "the silent incident is resolved when the PC checks in again")

# Retention: old events go, incidents stay.
old = int(time.time() * 1000) - 5 * 86400000
pc.send("alerts", [agentsim.alert(old, rule="R_OLD", path="/old/x")])
pc.send("bulk", [agentsim.file_event(old + i, "/old/f%d" % i) for i in range(20)])
t.check_eq(len(con.query("SELECT id FROM events WHERE ts_ms < ?", old + 1000)), 21,
           "old events stored")
st, _ = admin.post("/api/ui/tenants/%d/settings" % acme, {"retention_days": 2})
t.wait_for(lambda: not con.query("SELECT id FROM events WHERE ts_ms < ?", old + 1000),
           timeout=20, what="old events pruned")
st, inc = op.get("/api/ui/incidents")
old_inc = [i for i in inc["items"] if i["rule"] == "R_OLD"]
t.check_eq(len(old_inc), 1, "the incident of a pruned alert is kept")
st, d = op.get("/api/ui/incidents/%d" % old_inc[0]["id"])
t.check_eq(yit.get(d["alerts"][0]["event"], "file.path"), "/old/x",
           "its first alert is still shown")
t.check(len(con.query("SELECT id FROM events WHERE ts_ms > ?", now - 60000)) > 0,
        "recent events are kept")

# Monthly report.
st, rep = op.get("/api/ui/tenants/%d/report" % acme)
t.check_eq(st, 200, "report")
t.check(rep["detections"]["total"] >= 5, "report counts the month's detections")
t.check_eq(rep["tenant"]["helpdesk"], "0120-000-000", "report names the help desk")
t.check(any(p["host_name"] == "pc-01" and p["online_pct"] > 0 for p in rep["pcs"]),
        "report shows the PC online")
t.check("open_incidents" in rep["recommendations"], "report recommends closing incidents")
st, _ = op.get("/api/ui/tenants/%d/report?month=2026-13" % acme)
t.check_eq(st, 400, "a bad month is refused")

# Bad input from a browser gets a clear refusal.
for path, want in (("/api/ui/events?limit=abc", 400), ("/api/ui/events?limit=100000", 400),
                   ("/api/ui/events?path=%zz", 400), ("/api/ui/events?path=a%00b", 400),
                   ("/api/ui/incidents?state=bogus", 400), ("/api/ui/incidents/abc", 404),
                   ("/api/ui/agents/not-a-uuid", 404), ("/api/ui/nosuchroute", 404)):
    st, body = op.get(path)
    t.check_eq(st, want, "GET %s refused" % path)
    t.check(isinstance(body, dict) and body.get("error"), "GET %s names the error" % path)
st, _ = op.call("DELETE", "/api/ui/incidents")
t.check_eq(st, 405, "a method a route does not take: 405")
h = {"Cookie": op.cookie, "X-CSRF-Token": op.csrf, "Content-Type": "application/json"}
st, _, body = con.request("POST", "/api/ui/incidents/%d" % ia, b"[1, 2", h)
t.check_eq(st, 400, "a body that is not a JSON object is refused")
st, _, body = con.request("POST", "/api/ui/incidents/%d" % ia,
                          b'{"note": "' + b"x" * (300 * 1024) + b'"}', h)
t.check_eq(st, 413, "a body over 256 KiB is refused")
st, _ = op.post("/api/ui/incidents/%d" % ia, {"note": "a\x1bb"})
t.check_eq(st, 400, "a note with control characters is refused")

# Anonymised statistics for the scheme: counts only, no names.
r = con.cli("stats")
t.check_eq(r.returncode, 0, "stats command")
stats = json.loads(r.stdout)
t.check_eq(stats["pcs"], 1, "stats count the PCs")
t.check(stats["incidents"]["malware"] >= 3 and stats["alerts"]["high"] >= 5,
        "stats count incidents and alerts")
t.check(b"pc-01" not in r.stdout and b"acme" not in r.stdout and b"/home" not in r.stdout,
        "stats name no company, PC or path")

# Password change ends other sessions.
other = con.ui("acme-admin", "correct horse battery")
st, _ = other.post("/api/ui/tenants/%d/settings" % acme, {"webhook_url": "http://10.0.0.1/x"})
t.check_eq(st, 403, "a customer cannot point the console's webhook at a host")
st, _ = other.post("/api/ui/tenants/%d/settings" % acme, {"helpdesk": "0120-111-111"})
t.check_eq(st, 200, "a customer admin can change the help desk text")

# The provider's webhook: URL and secret for the provider's staff only.
HOOK = "https://hooks.provider.example/T0KEN-abc?key=s3cret-in-url"
HOOK_SECRET = "whsec-never-shown-9f1e"
st, body = admin.post("/api/ui/tenants/%d/settings" % acme, {"webhook_url": HOOK})
t.check_eq((st, body.get("webhook_url")), (200, HOOK), "provider staff set the webhook")
r = con.cli("settings", "set", "--tenant", "acme", "--webhook-secret", HOOK_SECRET)
t.check_eq(r.returncode, 0, "provider sets the webhook secret")
db = sqlite3.connect(con.data + "/yamori.db", timeout=30)
db.execute("INSERT INTO incident_log(incident_id, at_ms, what, detail) VALUES(?, ?, 'notified', ?)",
           (ia, int(time.time() * 1000), "webhook https://hooks.provider.example (created)"))
db.commit()
db.close()
t.check_eq(len(con.query("SELECT 1 FROM incident_log WHERE incident_id = ? AND what = 'notified'",
                         ia)), 1, "a webhook notification row exists")
secrets = (b"hooks.provider.example", b"T0KEN-abc", b"s3cret-in-url", HOOK_SECRET.encode())
for who, sess in (("viewer", viewer), ("operator", op), ("admin", other)):
    st, s_body = sess.get("/api/ui/tenants/%d/settings" % acme)
    t.check_eq(st, 200, "customer %s reads the settings" % who)
    t.check("webhook_url" not in s_body, "customer %s gets no webhook URL" % who)
    t.check_eq(s_body.get("webhook_set"), True, "customer %s learns a webhook is set" % who)
    paths = ["/api/ui/tenants/%d/settings" % acme, "/api/ui/incidents/%d" % ia, "/api/ui/me",
             "/api/ui/overview", "/api/ui/tenants", "/api/ui/tenants/%d/report" % acme]
    if who == "admin":
        paths += ["/api/ui/audit", "/api/ui/audit?tenant=%d" % acme]
    for path in paths:
        st, raw = sess.call("GET", path, raw=True)
        t.check_eq(st, 200, "customer %s reads %s" % (who, path))
        t.check(not any(x in raw for x in secrets),
                "customer %s does not see the webhook in %s" % (who, path))
st, d = viewer.get("/api/ui/incidents/%d" % ia)
t.check("webhook (created)" in [e["detail"] for e in d["timeline"]],
        "a customer sees that the webhook was notified, not where")
st, aud = other.get("/api/ui/audit")
t.check(any(a["action"] == "settings.change" and "webhook_url" in a["detail"] for a in aud["items"]),
        "a customer's admin sees that the webhook setting changed")
st, s_body = admin.get("/api/ui/tenants/%d/settings" % acme)
t.check_eq(s_body.get("webhook_url"), HOOK, "provider staff still see the webhook URL")
st, d = admin.get("/api/ui/incidents/%d" % ia)
t.check("webhook https://hooks.provider.example (created)" in [e["detail"] for e in d["timeline"]],
        "provider staff see where the webhook went")
st, aud = admin.get("/api/ui/audit?tenant=%d" % acme)
t.check(any(HOOK in a["detail"] for a in aud["items"]), "provider staff see the URL in the audit log")
again = con.ui("acme-admin", "correct horse battery")
st, _ = other.post("/api/ui/password", {"old": "correct horse battery", "new": "another long secret"})
t.check_eq(st, 200, "password changed")
t.check_eq(again.get("/api/ui/me")[0], 401, "other sessions end with a password change")
t.check_eq(other.get("/api/ui/me")[0], 200, "the changing session stays")
st, _ = other.post("/api/ui/logout")
t.check_eq(other.get("/api/ui/me")[0], 401, "logout ends the session")

# Behaviour alerts: a PC with only a medium-level one needs checking, a
# high-level one puts it in danger.
st, tok2 = admin.post("/api/ui/tenants/%d/tokens" % acme, {"expires_days": 1, "max_uses": 1})
pc2 = agentsim.SimAgent(con, tok2["token"], host_name="pc-02", host_id="pc-02-machine")
def behaviour(ts_ms, rid, sev):
    e = agentsim.alert(ts_ms, rule="Behaviour " + rid, path="/etc/cron.d/job")
    e["event"].update({"action": "behaviour-detected", "severity": sev})
    e["rule"] = {"ruleset": "sigma", "id": rid, "name": "A behaviour rule"}
    return e
def pc2_state():
    st, lst = op.get("/api/ui/agents?limit=50")
    return next((a.get("state") for a in lst.get("items", []) if a.get("id") == pc2.agent_id), None)
pc2.send("alerts", [behaviour(now, "55555555-5555-4555-8555-555555555555", 47)])
pc2.checkin()
t.check_eq(pc2_state(), "check", "a medium behaviour incident: the PC needs checking")
pc2.send("alerts", [behaviour(now + 1, "66666666-6666-4666-8666-666666666666", 73)])
t.check_eq(pc2_state(), "danger", "a high behaviour incident: the PC is in danger")

# The dashboard is served with a strict policy.
st, h, page = con.request("GET", "/")
if st == 200:
    csp = {k.lower(): v for k, v in h.items()}.get("content-security-policy", "")
    t.check("script-src 'self'" in csp and "unsafe-inline" not in csp, "strict CSP on the page")
t.done()
