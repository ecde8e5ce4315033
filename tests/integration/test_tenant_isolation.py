"""Tenant isolation, proven route by route: a person of one company walks
every dashboard API route with the other company's ids and gets 403 or
404 everywhere, and no list shows the other company's rows. The test
reads the route table from console/src/web.c, so a new route that this
test does not walk fails it."""
import json
import os
import re
import time

import agentsim
import yit

t = yit.Test(__file__)
con = yit.Console(t, extra=["--checkin-s", "10"])
admin = con.ui()
ids = {}
for name in ("acme", "beta"):
    st, body = admin.post("/api/ui/tenants", {"name": name, "display": name.upper()})
    t.need_eq(st, 200, "tenant %s" % name)
    ids[name] = body["id"]
    st, _ = admin.post("/api/ui/users", {"name": name + "-admin", "password": "correct horse battery",
                                         "role": "admin", "tenant_id": body["id"]})
    t.need_eq(st, 200, "%s admin created" % name)

# Beta's things: a PC with an incident and events, a token, a command.
st, btok = admin.post("/api/ui/tenants/%d/tokens" % ids["beta"], {})
t.need_eq(st, 200, "beta token made")
bpc = agentsim.SimAgent(con, btok["token"], host_name="beta-secret-pc")
now = int(time.time() * 1000)
bpc.send("alerts", [agentsim.alert(now, rule="BETA_RULE", path="/beta/secret.doc")])
bpc.send("bulk", [agentsim.process_event(now, 500, 1, "beta-proc"),
                  agentsim.file_event(now, "/beta/file")])
bpc.checkin()
st, inc = admin.get("/api/ui/incidents?tenant=%d" % ids["beta"])
t.need(st == 200 and len(inc["items"]) == 1, "beta has one incident (%d)" % st)
beta_incident = inc["items"][0]["id"]
st, toks = admin.get("/api/ui/tenants/%d/tokens" % ids["beta"])
t.need(st == 200 and len(toks["items"]) == 1, "beta has one token (%d)" % st)
beta_token = toks["items"][0]["id"]
st, cmd = admin.post("/api/ui/agents/%s/commands" % bpc.agent_id,
                     {"kind": "scan", "args": {"path": "/home"}})
t.need_eq(st, 200, "beta command made")
beta_command = cmd["id"]
# Each fixture exists for its owner, so a 403 or 404 below is the isolation
# at work and not an id that exists nowhere.
for path in ("agents/%s" % bpc.agent_id, "incidents/%d" % beta_incident,
             "commands/%d" % beta_command):
    st, _ = admin.get("/api/ui/" + path)
    t.need_eq(st, 200, "the provider sees beta's %s" % path)
# Acme has its own PC too, so that lists are not empty by accident.
st, atok = admin.post("/api/ui/tenants/%d/tokens" % ids["acme"], {})
t.need_eq(st, 200, "acme token made")
apc = agentsim.SimAgent(con, atok["token"], host_name="acme-pc")
apc.send("alerts", [agentsim.alert(now, rule="ACME_RULE", path="/acme/x")])

alice = con.ui("acme-admin", "correct horse battery")
B = {":agent": bpc.agent_id, ":incident": str(beta_incident), ":command": str(beta_command),
     ":tenant": str(ids["beta"]), ":token": beta_token}

# Every route with the other tenant's ids.
walk = [
    ("GET", "agents/:id", ":agent", None),
    ("GET", "agents/:id/processes", ":agent", None),
    ("POST", "agents/:id/commands", ":agent", {"kind": "scan", "args": {"path": "/"}}),
    ("POST", "agents/:id/revoke", ":agent", {}),
    ("GET", "incidents/:id", ":incident", None),
    ("POST", "incidents/:id", ":incident", {"state": "resolved"}),
    ("GET", "commands/:id", ":command", None),
    ("GET", "commands/:id/bundle", ":command", None),
    ("GET", "tenants/:id/settings", ":tenant", None),
    ("POST", "tenants/:id/settings", ":tenant", {"helpdesk": "evil"}),
    ("GET", "tenants/:id/tokens", ":tenant", None),
    ("POST", "tenants/:id/tokens", ":tenant", {}),
    ("POST", "tokens/:id/revoke", ":token", {}),
    ("POST", "tenants/:id/installer", ":tenant", {}),
    ("GET", "tenants/:id/report", ":tenant", None),
]
covered = set()
for method, pattern, key, body in walk:
    path = "/api/ui/" + pattern.replace(":id", B[key])
    st, out = alice.call(method, path, body)
    t.check(st in (403, 404), "%s %s with beta's id: %d" % (method, pattern, st))
    covered.add((method, pattern))

# Routes without ids: lists must not show beta, and tenant= is ignored.
tb = str(ids["beta"])
lists = [
    ("GET", "overview", "?tenant=" + tb),
    ("GET", "agents", "?tenant=" + tb),
    ("GET", "incidents", "?tenant=%s&agent=%s" % (tb, bpc.agent_id)),
    ("GET", "events", "?tenant=%s" % tb),
    ("GET", "events", "?agent=%s" % bpc.agent_id),
    ("GET", "commands", "?agent=%s" % bpc.agent_id),
    ("GET", "tenants", ""),
    ("GET", "users", ""),
    ("GET", "audit", "?tenant=" + tb),
    ("GET", "me", ""),
]
for method, pattern, query in lists:
    st, out = alice.call(method, "/api/ui/" + pattern + query)
    text = json.dumps(out)
    t.check_eq(st, 200, "%s %s%s answers" % (method, pattern, query))
    for secret in (bpc.agent_id, "beta-secret-pc", "BETA_RULE", "/beta/", "beta-admin",
                   '"BETA"'):
        t.check(secret not in text, "%s %s%s does not show %s" % (method, pattern, query, secret))
    covered.add((method, pattern))

# Routes that change other things: refused or kept inside acme.
st, _ = alice.post("/api/ui/tenants", {"name": "gamma"})
t.check_eq(st, 403, "a customer cannot create tenants")
covered.add(("POST", "tenants"))
st, _ = alice.post("/api/ui/users", {"name": "mole", "password": "correct horse battery",
                                     "role": "admin", "tenant_id": ids["beta"]})
t.check_eq(st, 403, "a customer cannot add people to another company")
st, _ = alice.post("/api/ui/users", {"name": "mole2", "password": "correct horse battery",
                                     "role": "admin", "tenant_id": None})
t.check_eq(st, 403, "a customer cannot add provider staff")
covered.add(("POST", "users"))
# Session routes act on the caller only.
for m, p in (("POST", "login"), ("POST", "logout"), ("POST", "password")):
    covered.add((m, p))

# Beta's data is untouched.
st, s = admin.get("/api/ui/tenants/%d/settings" % ids["beta"])
t.check(s["helpdesk"] != "evil", "beta's settings unchanged")
st, toks = admin.get("/api/ui/tenants/%d/tokens" % ids["beta"])
t.check_eq([x["revoked"] for x in toks["items"] if x["id"] == beta_token], [False],
           "beta's token not revoked")
st, d = admin.get("/api/ui/incidents/%d" % beta_incident)
t.check_eq(d["state"], "new", "beta's incident unchanged")

# The walk covers every route the console has.
src = open(os.path.join(yit.SOURCE_DIR, "console", "src", "web.c")).read()
table = src[src.index("static const web_route_t routes[]"):]
table = table[:table.index("};")]
routes = set(re.findall(r'\{"(GET|POST)",\s*"([^"]+)"', table))
t.check(len(routes) >= 25, "route table read (%d routes)" % len(routes))
missing = sorted(routes - covered)
t.check(not missing, "every route walked (missing: %s)" % missing)
t.done()
