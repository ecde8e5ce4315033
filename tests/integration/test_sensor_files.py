"""File sensor on real kernel events: create, write, rename and delete of
files and directories on the root filesystem and on a tmpfs mounted after
the agent started, in order, with the acting process; a write made inside
another mount namespace; exclusions."""
import os
import subprocess
import yit
from yit import get

yit.require_root()
t = yit.Test(__file__)
ag = yit.Agent(t, {"exclude": {"paths": [t.path("excluded")]}})


def file_events_under(prefix):
    return [e for e in ag.events()
            if get(e, "event.dataset") == "yamori.file"
            and (get(e, "file.path", "").startswith(prefix + "/")
                 or get(e, "yamori.file.original.path", "").startswith(prefix + "/"))]


def workload(base):
    """Does a fixed sequence of operations under base; returns what the
    events must say, in order, as (action, type, path, original path)."""
    d = os.path.join(base, "dir1")
    os.mkdir(d)
    f = os.path.join(d, "report.txt")
    with open(f, "w") as fh:
        fh.write("hello")
    g = os.path.join(d, "renamed.txt")
    os.rename(f, g)
    d2 = os.path.join(base, "dir2")
    os.rename(d, d2)
    g2 = os.path.join(d2, "renamed.txt")
    os.unlink(g2)
    os.rmdir(d2)
    return [("creation", "dir", d, None),
            ("creation", "file", f, None),
            ("modification", "file", f, None),
            ("rename", "file", g, f),
            ("rename", "dir", d2, d),
            ("deletion", "file", g2, None),
            ("deletion", "dir", d2, None)]


def check_sequence(base, label):
    want = workload(base)
    ag.wait_event(lambda e: get(e, "event.action") == "deletion" and get(e, "file.path") == want[-1][2],
                  what=label + ": last event")
    got = [(get(e, "event.action"), get(e, "file.type"), get(e, "file.path"),
            get(e, "yamori.file.original.path")) for e in file_events_under(base)
           if get(e, "file.name") != "probe"]
    t.check_eq(got, want, label + ": events in order with paths")
    evs = file_events_under(base)
    t.check(all(get(e, "process.pid") == os.getpid() for e in evs), label + ": acting pid is ours")
    t.check(all(get(e, "process.executable", "").endswith("python3.11") or
                "python" in get(e, "process.executable", "") for e in evs),
            label + ": acting executable is the python interpreter")
    t.check(all(get(e, "process.entity_id") for e in evs), label + ": entity id present")
    seqs = [get(e, "event.sequence") for e in evs]
    t.check(seqs == sorted(seqs), label + ": sequence numbers increase")
    f = [e for e in evs if get(e, "file.name") == "report.txt"][0]
    t.check_eq(get(f, "file.extension"), "txt", label + ": extension")
    t.check_eq(get(f, "file.directory"), os.path.join(base, "dir1"), label + ": directory")


# Root filesystem (the test directory lives under /tmp on the root fs).
root_base = t.path("rootfs")
os.mkdir(root_base)
check_sequence(root_base, "root fs")

# A tmpfs mounted after the agent started is picked up.
mnt = t.path("mnt")
os.mkdir(mnt)
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "yamori-test", mnt], check=True)
t.on_cleanup(lambda: subprocess.run(["umount", "-l", mnt]))
# The mount is picked up from /proc/self/mountinfo: probe until a file
# created there is reported.
probe = os.path.join(mnt, "probe")


def probe_seen():
    with open(probe, "w"):
        pass
    return any(get(e, "file.path") == probe for e in ag.events())


t.wait_for(probe_seen, what="tmpfs mounted after start is watched", interval=0.2)
check_sequence(mnt, "tmpfs")

# A write from another mount namespace.
ns_file = t.path("rootfs", "from-namespace.txt")
r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                    "mount -t tmpfs none /mnt && echo x > '%s'" % ns_file])
t.check_eq(r.returncode, 0, "unshare -m ran")
e = ag.wait_event(lambda e: get(e, "file.path") == ns_file and get(e, "event.action") == "modification",
                  what="write from another mount namespace")
t.check(e is not None and get(e, "process.executable") == os.path.realpath("/bin/sh"),
        "namespace write attributed to the shell (%s)" % (e and get(e, "process.executable")))

# Excluded paths produce nothing; the marker after them proves the agent
# processed past them.
os.mkdir(t.path("excluded"))
with open(t.path("excluded", "secret.txt"), "w") as fh:
    fh.write("x")
with open(t.path("rootfs", "marker"), "w") as fh:
    fh.write("x")
ag.wait_event(lambda e: get(e, "file.path") == t.path("rootfs", "marker"), what="marker")
t.check_eq(len(file_events_under(t.path("excluded"))), 0, "excluded path has no events")

# The agent's own output file never shows up (no feedback loop).
t.check_eq(len([e for e in ag.events() if get(e, "file.path") == ag.out_path]), 0,
           "agent's own writes are not reported")
t.done()
