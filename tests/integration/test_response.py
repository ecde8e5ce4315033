"""Remote response end to end: commands queued with the console's CLI travel
to a real agent through its check-in, act on this machine, and come back
with their results: a quarantine takes a file away and a restore puts it
back byte for byte; a kill ends the test's own sleep process and refuses
one whose entity id does not match; a scan of a directory reports the EICAR
file written there; a triage bundle downloads and holds this test's process
with its parent, a socket it listens on, and the persistence entries it
created under a test root. Results are recorded by the agent, so a command
handed out again (after an agent restart) is not run twice."""
import gzip
import hashlib
import json
import os
import socket
import subprocess
import sqlite3
import threading
import time
import yit
import linkutil
from yit import get

yit.require_root()
t = yit.Test(__file__)
con = yit.Console(t, extra=["--checkin-s", "1"])
con.tenant("acme")

# ---- a persistence root the triage looks at instead of / ----
root = t.path("troot")
for d in ("etc/cron.d", "etc/systemd/system", "etc/profile.d", "home/alice/.ssh"):
    os.makedirs(os.path.join(root, d))
with open(os.path.join(root, "etc/passwd"), "w") as f:
    f.write("root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\n")
CRON_LINE = "*/5 * * * * root /tmp/yamori-test-payload --beacon\n"
with open(os.path.join(root, "etc/cron.d/yamori-test"), "w") as f:
    f.write(CRON_LINE)
with open(os.path.join(root, "etc/systemd/system/yamori-test.service"), "w") as f:
    f.write("[Service]\nExecStart=/tmp/yamori-test-payload\n")
with open(os.path.join(root, "home/alice/.ssh/authorized_keys"), "w") as f:
    f.write("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIYamoriTestKey test@example\n")
# A link to a secret must be listed as a link, never read.
os.symlink("/etc/shadow", os.path.join(root, "etc/profile.d/evil.sh"))

ag = linkutil.enrolled_agent(t, con, {"triage": {"root": root}})
agent_id = ag.agent_id


def cli(*args):
    r = con.cli(*args)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def add(kind, args=None, expect_ok=True):
    argv = ["command", "add", "--agent", agent_id, "--kind", kind, "--user", "tester"]
    if args is not None:
        argv += ["--args", json.dumps(args)]
    rc, out, err = cli(*argv)
    if expect_ok:
        t.check_eq(rc, 0, "queued %s: %s" % (kind, err.strip()))
        return json.loads(out)["id"] if rc == 0 else None
    return rc, err


def show(cid):
    rc, out, _ = cli("command", "show", str(cid))
    return json.loads(out) if rc == 0 else None


def wait_done(cid, what, timeout=90):
    item = t.wait_for(lambda: (lambda i: i if i and i["state"] in ("done", "failed") else None)(
        show(cid)), timeout=timeout, interval=0.5, what=what)
    return item or show(cid) or {}


def entity_id(pid):
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot = f.read().strip()
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    ticks = stat[stat.rindex(")") + 2:].split()[19]
    return hashlib.sha256(("%s:%d:%s" % (boot, pid, ticks)).encode()).hexdigest()[:32]


# ---- refusals at queue time ----
rc, err = add("quarantine", {"path": "relative/x"}, expect_ok=False)
t.check(rc != 0 and "absolute" in err, "relative path refused: " + err.strip())
rc, err = add("quarantine", {"path": "/tmp/a\nb"}, expect_ok=False)
t.check(rc != 0 and "control" in err, "control character refused")
rc, err = add("kill", {"pid": 1}, expect_ok=False)
t.check(rc != 0, "kill of pid 1 refused")
rc, err = add("restore", {"id": "../../etc"}, expect_ok=False)
t.check(rc != 0, "malformed quarantine id refused")
rc, err = add("shell", {}, expect_ok=False)
t.check(rc != 0, "unknown kind refused")
r = con.cli("command", "add", "--agent", "00000000-0000-4000-8000-000000000000", "--kind",
            "triage")
t.check(r.returncode != 0 and b"no such agent" in r.stderr, "unknown agent refused")

# ---- the things to act on ----
work = t.path("work")
os.mkdir(work)
victim = os.path.join(work, "harmless.txt")
content = os.urandom(3000) + b"harmless test content\n"
with open(victim, "wb") as f:
    f.write(content)
os.chmod(victim, 0o640)

scandir = os.path.join(work, "scan")
os.mkdir(scandir)
eicar_path = os.path.join(scandir, "sample.com")
with open(eicar_path, "wb") as f:
    # The EICAR test string, put together here (never stored whole).
    f.write(b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-" + b"ANTIVIRUS-TEST-FILE!$H+H*")
with open(os.path.join(scandir, "clean.txt"), "w") as f:
    f.write("nothing to see")

sleeper = subprocess.Popen(["sleep", "600"])
survivor = subprocess.Popen(["sleep", "600"])
t.on_cleanup(lambda: (sleeper.kill(), survivor.kill()))
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
listen_port = listener.getsockname()[1]
time.sleep(0.5)  # the process starts reach the agent's recent-events ring

# Other programs on this machine write files and start programs too, and
# the agent keeps only the latest events: the test keeps writing files and
# starting a program until the triage is done.
ticking = threading.Event()
MARKER = "yamori-response-test-%d" % os.getpid()


def tick():
    i = 0
    while not ticking.is_set():
        with open(os.path.join(work, "tick-%d" % (i % 20)), "w") as f:
            f.write("x")
        if i % 3 == 0:
            subprocess.run(["true", MARKER])
        i += 1
        time.sleep(0.1)


ticker = threading.Thread(target=tick, daemon=True)
ticker.start()

q_id = add("quarantine", {"path": victim})
k_id = add("kill", {"pid": sleeper.pid, "entity_id": entity_id(sleeper.pid)})
kbad_id = add("kill", {"pid": survivor.pid, "entity_id": "0" * 32})
s_id = add("scan", {"path": scandir})
tr_id = add("triage", {})

item = show(q_id)
t.check_eq(item["state"], "queued", "a new command is queued")
t.check_eq(item["user"], "tester", "the command records who asked")
t.check(item["result"] is None and item["has_bundle"] is False, "no result yet")

# ---- quarantine ----
q = wait_done(q_id, "quarantine done")
t.check_eq(q.get("state"), "done", "quarantine done (error %r)" % q.get("error"))
qres = q.get("result") or {}
t.check(not os.path.exists(victim), "the file is gone from its path")
t.check(len(qres.get("id", "")) == 32, "the result carries a quarantine id")
t.check_eq(qres.get("path"), victim, "the result names the path")
t.check_eq(qres.get("sha256"), hashlib.sha256(content).hexdigest(), "the result carries the SHA-256")
t.check(q.get("done_ms") is not None and q["done_ms"] >= q["created_ms"], "done time recorded")

# ---- kill ----
k = wait_done(k_id, "kill done")
t.check_eq(k.get("state"), "done", "kill done (error %r)" % k.get("error"))
t.check(t.wait_for(lambda: sleeper.poll() is not None, timeout=10, what="sleep ended"),
        "the sleep process died")
t.check_eq(sleeper.returncode, -9, "killed by SIGKILL")
kres = k.get("result") or {}
t.check(kres.get("exited") is True and kres.get("pid") == sleeper.pid, "the result says it exited")
kb = wait_done(kbad_id, "kill with a wrong entity id answered")
t.check_eq(kb.get("state"), "failed", "kill with a wrong entity id refused")
t.check("entity" in kb.get("error", ""), "the error says why: %r" % kb.get("error"))
t.check(survivor.poll() is None, "the other process is alive")

# ---- scan ----
s = wait_done(s_id, "scan done")
t.check_eq(s.get("state"), "done", "scan done (error %r)" % s.get("error"))
sres = s.get("result") or {}
t.check(sres.get("files", 0) >= 2 and sres.get("found") == 1, "scan counted files and one match: %r"
        % sres)
m = (sres.get("matches") or [{}])[0]
t.check(m.get("path") == eicar_path and "EICAR" in m.get("rule", "").upper(),
        "the match names the file and the rule: %r" % m)

# ---- restore (needs the quarantine id) ----
r_id = add("restore", {"id": qres.get("id", "0" * 32)})
r = wait_done(r_id, "restore done")
t.check_eq(r.get("state"), "done", "restore done (error %r)" % r.get("error"))
with open(victim, "rb") as f:
    t.check(f.read() == content, "the file is back byte for byte")
t.check_eq(os.stat(victim).st_mode & 0o777, 0o640, "with its mode")

# ---- triage ----
tr = wait_done(tr_id, "triage done", timeout=120)
t.check_eq(tr.get("state"), "done", "triage done (error %r)" % tr.get("error"))
ticking.set()
t.check(tr.get("has_bundle") is True, "the command has a bundle")
out = t.path("bundle.json.gz")
rc, _, err = cli("command", "bundle", str(tr_id), "--out", out)
t.check_eq(rc, 0, "the bundle downloads: " + err.strip())
raw = open(out, "rb").read()
t.check_eq(hashlib.sha256(raw).hexdigest(), (tr.get("result") or {}).get("bundle_sha256"),
           "the bundle is the one the agent made")
doc = json.loads(gzip.decompress(raw))
print("info: queued to done: quarantine %.1f s, triage %.1f s (check-in every 10 s); bundle %d "
      "bytes gzip, %d bytes JSON, %d processes, %d persistence entries, %d sockets"
      % ((q["done_ms"] - q["created_ms"]) / 1000, (tr["done_ms"] - tr["created_ms"]) / 1000,
         len(raw), len(gzip.decompress(raw)), len(doc["processes"]), len(doc["persistence"]),
         len(doc["listening"])), flush=True)
procs = {p["pid"]: p for p in doc["processes"]}
sp = procs.get(survivor.pid, {})
t.check_eq(sp.get("ppid"), os.getpid(), "the test's sleep is listed with its parent")
t.check(os.getpid() in procs and sp.get("parent_entity_id") == procs[os.getpid()].get("entity_id"),
        "the parent is in the list and linked by entity id")
t.check_eq(sp.get("entity_id"), entity_id(survivor.pid), "the entity id is the agent's")
t.check(sp.get("args") == ["sleep", "600"] and sp.get("executable", "").endswith("sleep"),
        "arguments and executable")
t.check(any(l.get("port") == listen_port and l.get("pid") == os.getpid()
            and l.get("proto") == "tcp" for l in doc["listening"]),
        "the test's listening socket with its owner")
pers = {p["path"]: p for p in doc["persistence"]}
cron = pers.get("/etc/cron.d/yamori-test", {})
t.check(cron.get("type") == "cron" and cron.get("content") == CRON_LINE
        and cron.get("sha256") == hashlib.sha256(CRON_LINE.encode()).hexdigest(),
        "the cron entry with content and hash")
t.check_eq(pers.get("/etc/systemd/system/yamori-test.service", {}).get("type"), "systemd",
           "the systemd unit")
t.check_eq(pers.get("/home/alice/.ssh/authorized_keys", {}).get("type"), "authorized_keys",
           "a user's authorized_keys")
link = pers.get("/etc/profile.d/evil.sh", {})
t.check(link.get("kind") == "symlink" and link.get("target") == "/etc/shadow"
        and "content" not in link, "a symbolic link is listed, not followed")
t.check(any(MARKER in (get(e, "process.args") or []) for e in doc["recent_process_starts"]),
        "the test's program starts are among the recent process starts")
t.check(any(str(get(e, "file.path", "")).startswith(os.path.join(work, "tick-")) for e in doc["recent_file_activity"]),
        "the test's file writes are among the recent file events")

# ---- the same through the dashboard API: authorised, audited ----
ui = con.ui()
victim3 = os.path.join(work, "third.txt")
with open(victim3, "wb") as f:
    f.write(b"third harmless file\n")
st, bad = ui.post("/api/ui/agents/%s/commands" % agent_id,
                  {"kind": "quarantine", "args": {"path": "/tmp/../etc/passwd"}})
t.check_eq(st, 400, "the dashboard refuses bad arguments")
st, item = ui.post("/api/ui/agents/%s/commands" % agent_id,
                   {"kind": "quarantine", "args": {"path": victim3}})
t.check(st == 200 and item.get("state") == "queued" and item.get("user") == "admin",
        "the dashboard queues a command in the admin's name (%d)" % st)
d_id = item.get("id", 0) if st == 200 else 0
got = t.wait_for(lambda: (lambda r: r[1] if r[0] == 200 and r[1]["state"] in ("done", "failed")
                          else None)(ui.get("/api/ui/commands/%d" % d_id)),
                 timeout=90, interval=0.5, what="dashboard command done") or {}
t.check(got.get("state") == "done" and not os.path.exists(victim3),
        "the dashboard's quarantine is done and the file gone")
st, lst = ui.get("/api/ui/commands?agent=%s" % agent_id)
t.check(st == 200 and d_id in [i["id"] for i in lst.get("items", [])], "the dashboard lists it")
st, body = ui.call("GET", "/api/ui/commands/%d/bundle" % tr_id, raw=True)
t.check(st == 200 and body == raw, "the dashboard serves the same bundle")
st, audit = ui.get("/api/ui/audit")
t.check(st == 200 and any(a.get("action") == "command.quarantine" and a.get("user") == "admin"
                          for a in audit.get("items", [])), "the command is in the audit log")

# ---- response events ----
for cid, action in ((q_id, "response-quarantine"), (k_id, "response-kill"),
                    (s_id, "response-scan"), (r_id, "response-restore"),
                    (tr_id, "response-triage")):
    e = ag.wait_event(lambda e: get(e, "yamori.command.id") == cid, what=action + " event")
    t.check(e is not None and get(e, "event.action") == action
            and get(e, "event.dataset") == "yamori.response"
            and get(e, "yamori.command.state") == "done"
            and get(e, "event.outcome") == "success", "%s event" % action)
e = ag.wait_event(lambda e: get(e, "yamori.command.id") == kbad_id, what="refused kill event")
t.check(e is not None and get(e, "event.outcome") == "failure", "the refused kill is an event too")
t.wait_for(lambda: con.query("SELECT count(*) FROM events WHERE agent_id = ? AND action LIKE "
                             "'response-%'", agent_id)[0][0] >= 6, timeout=60,
           what="response events in the console")

# ---- a command handed out again is not run again (after a restart) ----
ag.proc.stop()
ag2 = yit.Agent(t, ag.conf, name="agent")
db = sqlite3.connect(os.path.join(con.data, "yamori.db"), timeout=30)
db.execute("UPDATE commands SET state = 'queued', result_json = NULL, done_ms = NULL WHERE id = ?",
           (q_id,))
db.commit()
db.close()
q2 = wait_done(q_id, "re-sent quarantine answered")
t.check_eq((q2.get("result") or {}).get("id"), qres.get("id"), "the recorded result came back")
t.check(os.path.exists(victim), "the restored file was not quarantined a second time")

# The same id with other arguments (a console whose numbering started
# again) is a new command, not a repeat.
victim2 = os.path.join(work, "second.txt")
with open(victim2, "wb") as f:
    f.write(b"second harmless file\n")
db = sqlite3.connect(os.path.join(con.data, "yamori.db"), timeout=30)
db.execute("UPDATE commands SET kind = 'quarantine', args_json = ?, state = 'queued',"
           " result_json = NULL, error = '', done_ms = NULL WHERE id = ?",
           (json.dumps({"path": victim2}), k_id))
db.commit()
db.close()
k2 = wait_done(k_id, "reused id answered")
t.check(k2.get("state") == "done" and (k2.get("result") or {}).get("path") == victim2,
        "a reused id with new arguments runs as a new command")
t.check(not os.path.exists(victim2), "the second file was quarantined")

rc, out, _ = cli("command", "list", "--agent", agent_id)
items = json.loads(out)["items"] if rc == 0 else []
t.check_eq(sorted(i["id"] for i in items), sorted([q_id, k_id, kbad_id, s_id, tr_id, r_id, d_id]),
           "list shows the agent's commands")
# ---- the agent routes refuse what is not the agent's ----
ident = json.load(open(os.path.join(ag.conf["state_dir"], "identity.json")))
auth = {"Authorization": "Bearer %s.%s" % (agent_id, ident["secret"]),
        "Content-Type": "application/json"}
st, _, _ = con.request("POST", "/api/v1/commands/%d/result" % q_id,
                       json.dumps({"state": "failed", "error": "late"}).encode(), auth)
t.check_eq(st, 200, "a repeated result is acknowledged")
t.check_eq(show(q_id)["state"], "done", "and changes nothing")
st, _, _ = con.request("POST", "/api/v1/commands/999999/result",
                       json.dumps({"state": "done"}).encode(), auth)
t.check_eq(st, 404, "a result for an unknown command: 404")
st, _, _ = con.request("POST", "/api/v1/commands/%d/result" % q_id, b'{"state": "maybe"}', auth)
t.check_eq(st, 400, "a malformed result: 400")
gz = dict(auth, **{"Content-Type": "application/gzip"})
st, _, _ = con.request("POST", "/api/v1/commands/%d/bundle" % q_id, gzip.compress(b"{}"), gz)
t.check_eq(st, 404, "a bundle for a command that is not a triage: 404")
st, _, _ = con.request("POST", "/api/v1/commands/%d/bundle" % tr_id, b"not gzip at all....", gz)
t.check_eq(st, 400, "a bundle that is not gzip: 400")
# An agent of another company (enrolled only; no second daemon runs).
con.tenant("beta")
state2 = t.path("other-state")
os.mkdir(state2, 0o700)
conf2 = t.path("other.json")
with open(conf2, "w") as f:
    json.dump({"state_dir": state2, "control": {"socket": t.path("other.sock")}}, f)
r2 = t.run(["yamorictl", "--config", conf2, "enroll"],
           env=dict(os.environ, YAMORI_TOKEN=con.token("beta")))
t.check_eq(r2.returncode, 0, "an agent of another tenant enrolled")
oid = json.load(open(os.path.join(state2, "identity.json")))
oauth = {"Authorization": "Bearer %s.%s" % (oid["agent_id"], oid["secret"]),
         "Content-Type": "application/gzip"}
st, _, _ = con.request("POST", "/api/v1/commands/%d/bundle" % tr_id, gzip.compress(b"{}"), oauth)
t.check_eq(st, 404, "another agent's command is not found")
st, _, _ = con.request("POST", "/api/v1/commands/%d/result" % tr_id,
                       json.dumps({"state": "failed"}).encode(), dict(oauth, **{
                           "Content-Type": "application/json"}))
t.check_eq(st, 404, "another agent cannot post a result")
t.check_eq(show(tr_id)["state"], "done", "the command is untouched")
listener.close()
t.done()
