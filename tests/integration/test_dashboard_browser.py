"""The dashboard in a real browser (Debian's chromium, headless, driven by
playwright-core from tests/browser/node_modules) against the real console
and a real agent:

- log in, see the PCs;
- an incident made by a real EICAR detection on the real agent: open it,
  quarantine the file and restore it from the dashboard, see the results
  (and the file really leaves and comes back);
- switch the language (a Japanese string, then its English one, kept over a
  reload);
- hostile endpoint strings (a host name enrolled through the agent API, an
  alert and a file event whose path and process carry `<img onerror>`,
  `</script>`, quotes and control characters, and a real file with such a
  name seen by the real agent) render as literal text: no script runs, no
  dialog opens, no Content-Security-Policy violation is reported.

The browser part is tests/browser/dashboard.mjs; its "ok"/"FAIL" lines are
this test's checks."""
import base64
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse

import yit
from yit import get

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import linkutil  # noqa: E402

BROWSER_DIR = os.path.join(yit.SOURCE_DIR, "tests", "browser")
CHROMIUM = os.environ.get("YAMORI_CHROMIUM", "/usr/bin/chromium")

yit.require_root()
node = shutil.which("node")
if node is None:
    yit.skip("node is not installed (scripts/install-deps.sh installs nodejs)")
if not os.access(CHROMIUM, os.X_OK):
    yit.skip("%s is missing (scripts/install-deps.sh installs Debian's chromium)" % CHROMIUM)
if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
    yit.skip("tests/browser/node_modules is missing (scripts/install-deps.sh runs npm ci there)")

t = yit.Test(__file__)
con = yit.Console(t)
con.tenant("acme")
m = re.search(rb'provider administrator "admin", password (\S+)', con.proc.stdout_bytes())
t.check(m is not None, "the console printed the first administrator's password")
if m is None:
    t.done()
admin_password = m.group(1).decode()


class UiClient:
    """The dashboard API as the browser uses it (cookie + CSRF token)."""

    def __init__(self, con):
        self.con = con
        self.cookie = ""
        self.csrf = ""

    def call(self, method, path, body=None):
        headers = {"Content-Type": "application/json"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        if method == "POST" and self.csrf:
            headers["X-CSRF-Token"] = self.csrf
        data = json.dumps(body).encode() if body is not None else b""
        s, h, b = self.con.request(method, "/api/ui/" + path, data, headers)
        for k, v in h.items():
            if k.lower() == "set-cookie" and v.startswith("ym_session="):
                self.cookie = v.split(";")[0]
        try:
            return s, json.loads(b) if b else None
        except ValueError:
            return s, None

    def login(self, user, password):
        s, j = self.call("POST", "login", {"user": user, "password": password})
        if s == 200 and j:
            self.csrf = j.get("csrf", "")
        return s


ui = UiClient(con)
s = ui.login("admin", admin_password)
t.check_eq(s, 200, "the administrator logs in through the API")

# ---- a real agent and a real EICAR detection ----
ag = linkutil.enrolled_agent(t, con, {"scan": {"on_write": True},
                                      "policy": {"exec": "off", "file": "detect"}})
os.chmod(t.dir, 0o755)
d = t.path("userdir")
os.mkdir(d)
target = os.path.join(d, "eicar.com")
# The test file is put together here, never stored whole.
eicar = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-" + b"ANTIVIRUS-TEST-FILE!$H+H*")

def is_alert(e):
    return get(e, "event.kind") == "alert" and get(e, "file.path") == target


# On a shared machine another test's agent may quarantine the file before
# this agent scans it: write it again then (at most three times).
alert = None
for attempt in range(3):
    r = subprocess.run(["sh", "-c", "cat > '%s'" % target], input=eicar)
    deadline = time.monotonic() + 30
    while alert is None and time.monotonic() < deadline:
        alert = next((e for e in ag.events() if is_alert(e)), None)
        time.sleep(0.2)
    if alert is not None:
        break
    print("no alert yet (attempt %d); file present: %s" % (attempt + 1, os.path.exists(target)))
t.check_eq(r.returncode, 0, "a shell wrote the EICAR test file")
t.check(alert is not None, "the agent alerted on the EICAR file")
t.check(os.path.exists(target), "the file is still there (policy detect: the dashboard quarantines)")


def find_incident(path):
    s, j = ui.call("GET", "incidents?state=open&limit=50")
    if s != 200 or not j:
        return None
    for it in j.get("items", []):
        if it.get("file_path") == path:
            return it
    return None


api_ok = s == 200  # without the dashboard API there is nothing to wait for
inc = None
if api_ok:
    inc = t.wait_for(lambda: find_incident(target), timeout=120, interval=1.0,
                     what="an incident for the EICAR file in /api/ui/incidents")

SIGMA_RULE_TITLE = "Cron job file written outside a package installation"

# ---- a hostile PC: enrolled through the agent API with a hostile host name ----
HOSTILE = "<img src=x onerror=\"window.__pwned=1\">'\"</script><script>window.__pwned=2</script>\x07\x1b[31m"
hostile_host = "pc-" + HOSTILE
hostile_dir = t.path("h<img src=x onerror=alert(1)>\"q'")
hostile_path = os.path.join(hostile_dir, "x</script><b>bold</b>\x1b[0m.exe")
hostile_proc = "/usr/bin/<svg onload=window.__pwned=3>"
token = con.token("acme")
raw = json.loads(base64.urlsafe_b64decode(token[5:] + "=" * (-len(token[5:]) % 4)))
enroll = {"token": raw["tok"], "host": {"id": "hostile-host-id", "name": hostile_host,
                                       "os": {"name": "Debian <i>GNU</i>", "version": "12\x00"}},
          "agent": {"version": "0.1.0\"><img src=x>"}}
s, _, b = con.request("POST", "/api/v1/enroll", json.dumps(enroll).encode(),
                      {"Content-Type": "application/json"})
t.check_eq(s, 200, "an agent with a hostile host name enrolls through the agent API")
hostile_id = None
if s == 200:
    ans = json.loads(b)
    hostile_id = ans["agent_id"]
    auth = {"Authorization": "Bearer %s.%s" % (hostile_id, ans["secret"]),
            "Content-Encoding": "gzip", "Content-Type": "application/x-ndjson"}
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    # The real alert is the template: the console sees the same shape.
    ev = json.loads(json.dumps(alert)) if alert else {"event": {"kind": "alert", "category": ["malware"],
                                                                "dataset": "yamori.malware",
                                                                "action": "malware-detected"},
                                                      "rule": {"name": "Yamori_EICAR_Test_File"}}
    ev["@timestamp"] = now
    ev.setdefault("event", {})["created"] = now
    ev["agent"] = dict(ev.get("agent") or {}, id=hostile_id)
    ev["host"] = dict(ev.get("host") or {}, name=hostile_host)
    ev["file"] = dict(ev.get("file") or {}, path=hostile_path, name=os.path.basename(hostile_path))
    ev["process"] = {"pid": 4242, "name": "<svg onload=window.__pwned=3>", "executable": hostile_proc,
                     "args": [hostile_proc, "--x='\"</script>"], "entity_id": "hostile-entity",
                     "parent": {"pid": 1, "name": "init\x1b[2J", "executable": "/sbin/init"}}
    ev["rule"] = dict(ev.get("rule") or {}, description="<b>desc</b></script>\x07")
    ev.setdefault("yamori", {})["stream_seq"] = 1
    fev = {"@timestamp": now, "event": {"kind": "event", "dataset": "yamori.file", "action": "creation",
                                        "created": now, "type": ["creation"]},
           "agent": {"id": hostile_id}, "host": {"name": hostile_host},
           "file": {"path": hostile_path, "name": os.path.basename(hostile_path)},
           "process": ev["process"], "yamori": {"stream_seq": 1}}

    def send(stream, e):
        hdr = {"agent_id": hostile_id, "stream": stream, "first_seq": 1, "last_seq": 1, "count": 1}
        body = gzip.compress((json.dumps(hdr) + "\n" + json.dumps(e) + "\n").encode())
        return con.request("POST", "/api/v1/events", body, auth)[0]

    t.check_eq(send("alerts", ev), 200, "a hostile alert was accepted")
    t.check_eq(send("bulk", fev), 200, "a hostile file event was accepted")

    # A behaviour alert of a Sigma rule, as the agent sends it
    # (docs/behaviour.md): grouped per PC and Sigma id, told by technique.
    sev = {"event": {"kind": "alert", "category": ["intrusion_detection"], "dataset": "yamori.behaviour",
                     "action": "behaviour-detected", "created": now, "severity": 47},
           "@timestamp": now, "agent": {"id": hostile_id}, "host": {"name": hostile_host},
           "rule": {"ruleset": "sigma", "id": "6a0c2a55-2f34-4f0e-8a4c-5d6e7f8a9b01",
                    "name": SIGMA_RULE_TITLE, "description": "A cron job file was written."},
           "threat": {"technique": {"id": ["T1053.003"]}, "tactic": {"name": ["persistence"]}},
           "file": {"path": "/etc/cron.d/yamori-browser-test"},
           "process": {"pid": 4343, "name": "bash", "executable": "/usr/bin/bash"},
           "yamori": {"stream_seq": 2, "sigma": {"matched": ["file.path"]}}}
    hdr = {"agent_id": hostile_id, "stream": "alerts", "first_seq": 2, "last_seq": 2, "count": 1}
    body = gzip.compress((json.dumps(hdr) + "\n" + json.dumps(sev) + "\n").encode())
    t.check_eq(con.request("POST", "/api/v1/events", body, auth)[0], 200,
               "a behaviour alert was accepted")

# A real file with a hostile name, seen by the real agent.
os.makedirs(os.path.dirname(hostile_path), exist_ok=True)
real_hostile = os.path.join(hostile_dir, "r\x1b[31m<img src=x onerror=window.__pwned=4>'\".txt")
with open(real_hostile, "w") as f:
    f.write("x")
ag.wait_event(lambda e: get(e, "file.path") == real_hostile, what="the hostile file name in the agent")

hostile_inc = None
if hostile_id:
    def find_hostile():
        s, j = ui.call("GET", "incidents?state=open&limit=50&agent=" + urllib.parse.quote(hostile_id))
        items = (j or {}).get("items", []) if s == 200 else []
        return next((i for i in items if i.get("ruleset") != "sigma"), None)
    if api_ok:
        hostile_inc = t.wait_for(find_hostile, timeout=60, interval=1.0, what="the hostile incident")

sigma_inc = None
if hostile_id and api_ok:
    def find_sigma():
        s, j = ui.call("GET", "incidents?state=open&limit=50&agent=" + urllib.parse.quote(hostile_id))
        items = (j or {}).get("items", []) if s == 200 else []
        return next((i for i in items if i.get("ruleset") == "sigma"), None)
    sigma_inc = t.wait_for(find_sigma, timeout=60, interval=1.0, what="the behaviour incident")
    if sigma_inc:
        t.check_eq((sigma_inc.get("rule"), sigma_inc.get("technique"), sigma_inc.get("title")),
                   ("6a0c2a55-2f34-4f0e-8a4c-5d6e7f8a9b01", "T1053.003", SIGMA_RULE_TITLE),
                   "the behaviour incident is per Sigma id, with its technique")

# ---- a duplicate host: two records enrolled with one machine id ----
dup_ids = []
for name in ("pc-dup-a", "pc-dup-b"):
    body = {"token": raw["tok"], "host": {"id": "dup-machine-id", "name": name,
                                          "os": {"name": "Debian", "version": "12"}},
            "agent": {"version": "0.1.0"}}
    s, _, b = con.request("POST", "/api/v1/enroll", json.dumps(body).encode(),
                          {"Content-Type": "application/json"})
    t.check_eq(s, 200, "record %s enrolls with a shared machine id" % name)
    if s == 200:
        dup_ids.append(json.loads(b)["agent_id"])
t.check(len(set(dup_ids)) == 2, "two records, never merged: %r" % dup_ids)
dup_inc = None
if len(dup_ids) == 2:
    def find_dup():
        s, j = ui.call("GET", "incidents?state=open&limit=50&agent=" + urllib.parse.quote(dup_ids[1]))
        items = (j or {}).get("items", []) if s == 200 else []
        return next((i for i in items if i.get("kind") == "duplicate"), None)
    dup_inc = t.wait_for(find_dup, timeout=30, interval=0.5, what="the duplicate-host incident")

s, j = ui.call("GET", "agents?limit=50")
real_host = None
for it in (j or {}).get("items", []) if s == 200 else []:
    if it.get("id") == ag.agent_id:
        real_host = it.get("host_name")
t.check(real_host is not None, "the real agent is listed by /api/ui/agents")

# A customer's viewer: sees only their company, reads, changes nothing.
viewer_password = "shop-owner-password-1"
s, j = ui.call("GET", "tenants")
acme_id = next((x["id"] for x in (j or {}).get("items", []) if x.get("name") == "acme"), None)
s, _ = ui.call("POST", "users", {"name": "owner", "password": viewer_password, "role": "viewer",
                                 "tenant_id": acme_id})
t.check_eq(s, 200, "a viewer of the customer company was added through the API")
shop_admin_password = "shop-admin-password-1"
s, _ = ui.call("POST", "users", {"name": "shopadmin", "password": shop_admin_password, "role": "admin",
                                 "tenant_id": acme_id})
t.check_eq(s, 200, "an administrator of the customer company was added through the API")
# The provider's webhook for the company: its URL is not the customer's to see.
webhook_url = "https://hooks.provider.example/browser-T0KEN"
s, _ = ui.call("POST", "tenants/%d/settings" % acme_id, {"webhook_url": webhook_url})
t.check_eq(s, 200, "provider staff set the company's webhook through the API")

# ---- the browser ----
cfg = {
    "url": con.url,
    "user": "admin",
    "password": admin_password,
    "chromium": CHROMIUM,
    "shots": t.dir,
    "real_host": real_host or "",
    "real_agent": ag.agent_id,
    "incident": inc["id"] if inc else None,
    "eicar_path": target,
    "eicar_size": len(eicar),
    "hostile_host": hostile_host,
    "hostile_agent": hostile_id,
    "hostile_incident": hostile_inc["id"] if hostile_inc else None,
    "dup_agents": dup_ids,
    "dup_incident": dup_inc["id"] if dup_inc else None,
    "sigma_incident": sigma_inc["id"] if sigma_inc else None,
    "sigma_rule_title": SIGMA_RULE_TITLE,
    "hostile_path": hostile_path,
    "hostile_proc": hostile_proc,
    "real_hostile_path": real_hostile,
    "command_timeout_ms": 240000,
    "viewer": "owner",
    "viewer_password": viewer_password,
    "shop_admin": "shopadmin",
    "shop_admin_password": shop_admin_password,
    "webhook_url": webhook_url,
}
cfg_path = t.path("browser.json")
with open(cfg_path, "w") as f:
    json.dump(cfg, f)
r = subprocess.run([node, os.path.join(BROWSER_DIR, "dashboard.mjs"), cfg_path], cwd=BROWSER_DIR,
                   capture_output=True, timeout=900)
out = r.stdout.decode("utf-8", "replace")
for line in out.splitlines():
    if line.startswith("ok - "):
        t.check(True, "browser: " + line[5:])
    elif line.startswith("FAIL - "):
        t.check(False, "browser: " + line[7:])
    elif line.strip():
        print("browser: " + line)
t.check_eq(r.returncode, 0, "the browser script finished cleanly: " + r.stderr.decode("utf-8", "replace")[-2000:])
# The dashboard's policy names a report-uri: the console logs every report.
t.check("content-security-policy violation" not in con.proc.stderr_text(),
        "the console received no Content-Security-Policy violation report")
t.done()
