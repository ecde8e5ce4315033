"""Remote commands never reach the agent itself, whatever the path's
spelling: console commands through a real agent's check-in ask to
quarantine its identity file with repeated slashes, through a symbolic
link to the state directory, through a bind mount of it, and its
configuration file; to kill the agent and its parent. Each is refused with
a clear error, and the files and processes are all still there. A harmless
file beside them is quarantined, so the command path itself works."""
import hashlib
import json
import os
import subprocess
import yit
import linkutil

yit.require_root()
t = yit.Test(__file__)
con = yit.Console(t, extra=["--checkin-s", "1"])
con.tenant("acme")
ag = linkutil.enrolled_agent(t, con)
agent_id = ag.agent_id
state = ag.conf["state_dir"]
ident_path = os.path.join(state, "identity.json")
with open(ident_path, "rb") as f:
    ident_before = f.read()


def cli(*args):
    r = con.cli(*args)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def add(kind, args):
    rc, out, err = cli("command", "add", "--agent", agent_id, "--kind", kind, "--user", "tester",
                       "--args", json.dumps(args))
    t.check_eq(rc, 0, "queued %s %r: %s" % (kind, args, err.strip()))
    return json.loads(out)["id"] if rc == 0 else None


def show(cid):
    rc, out, _ = cli("command", "show", str(cid))
    return json.loads(out) if rc == 0 else None


def wait_done(cid, what, timeout=90):
    item = t.wait_for(lambda: (lambda i: i if i and i["state"] in ("done", "failed") else None)(
        show(cid)), timeout=timeout, interval=0.5, what=what)
    return item or {}


def entity_id(pid):
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot = f.read().strip()
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    ticks = stat[stat.rindex(")") + 2:].split()[19]
    return hashlib.sha256(("%s:%d:%s" % (boot, pid, ticks)).encode()).hexdigest()[:32]


# Other names for the state directory.
head, tail = os.path.split(state)
doubled = head + "//" + tail + "//identity.json"
link = t.path("state-link")
os.symlink(state, link)
bound = t.path("state-bind")
os.mkdir(bound)
r = subprocess.run(["mount", "--bind", state, bound], capture_output=True)
if not t.check(r.returncode == 0, "bind mount of the state directory: %s" % r.stderr.decode()):
    t.done()
t.on_cleanup(lambda: subprocess.run(["umount", "-l", bound], capture_output=True))

victim = t.path("harmless.txt")
with open(victim, "wb") as f:
    f.write(b"a harmless file beside the agent's own\n")

quarantines = [
    ({"path": doubled}, "repeated slashes"),
    ({"path": os.path.join(link, "identity.json")}, "a symbolic link to the state"),
    ({"path": os.path.join(bound, "identity.json")}, "a bind mount of the state"),
    ({"path": ag.conf_path}, "the configuration file"),
]
kills = [
    ({"pid": ag.proc.pid, "entity_id": entity_id(ag.proc.pid)}, "the agent"),
    # The agent's parent is this test: a kill that is not refused ends it.
    ({"pid": os.getpid(), "entity_id": entity_id(os.getpid())}, "the agent's parent"),
]


def refused(kind, cases):
    ids = [(add(kind, args), what) for args, what in cases]
    for cid, what in ids:
        item = wait_done(cid, "%s of %s answered" % (kind, what))
        err = item.get("error", "")
        t.check(item.get("state") == "failed" and "refused" in err and "agent" in err,
                "%s of %s refused with a clear error: %r" % (kind, what, err))


refused("quarantine", quarantines)
ok_id = add("quarantine", {"path": victim})
item = wait_done(ok_id, "quarantine of a harmless file answered")
t.check_eq(item.get("state"), "done", "a harmless file is quarantined (%r)" % item.get("error"))
t.check(not os.path.exists(victim), "the harmless file is gone")
refused("kill", kills)

with open(ident_path, "rb") as f:
    t.check(f.read() == ident_before, "the identity file is untouched")
t.check(os.path.exists(ag.conf_path), "the configuration file is still there")
t.check(ag.proc.poll() is None, "the agent still runs")

# The state directory removed while the agent runs: the spool makes it
# anew (another inode). What is in the new one is the agent's all the same.
subprocess.run(["umount", "-l", bound], capture_output=True)
subprocess.run(["rm", "-rf", state], check=True)
t.wait_for(lambda: os.path.isdir(os.path.join(state, "spool")), timeout=60, interval=0.5,
           what="the agent made its state directory anew")
planted = os.path.join(state, "planted.txt")
with open(planted, "w") as f:
    f.write("x")
refused("quarantine", [({"path": planted}, "a file in the state directory made anew")])
t.check(os.path.exists(planted), "the file in the new state directory is still there")
t.done()
