"""kill -9 at every step of an update: during the download, the
verification, the unpacking, the switch and the first start of the new
version. After each kill the launcher runs either the complete old version
or the complete new one, never neither and never a partial one; the
download resumes where it stopped; in the end the new version is
committed. YAMORI_UPDATE_STALL makes the agent stop once at each step so
that the kill lands exactly there."""
import hashlib
import io
import os
import signal
import tarfile
import time
import yit
import updutil

yit.require_root()
t = yit.Test(__file__)
s = updutil.Setup(t, window=60, start=False)
s.start(env=dict(os.environ, YAMORI_UPDATE_STALL="verify,unpack,switch,first-start"))
s.wait_running("0.1.0", timeout=30)

BLOB = os.urandom(48 * 1024 * 1024)  # incompressible: a download that takes a while
blob = tarfile.TarInfo("data/blob")
blob.size = len(BLOB)
blob.mode = 0o644
pkg = s.package("0.2.0", extra=[(blob, BLOB)])
serial = s.release("0.2.0", pkg=pkg)
want = {"0.1.0": hashlib.sha256(open(updutil.YAMORID, "rb").read()).hexdigest()}
want["0.2.0"] = want["0.1.0"]
part = os.path.join(s.update_dir, "download", "%d.part" % serial)
full = os.path.getsize(pkg)


def complete(version):
    """The version's directory is whole: its program and its data."""
    d = os.path.join(s.versions, version)
    try:
        prog = hashlib.sha256(open(os.path.join(d, "bin", "yamorid"), "rb").read()).hexdigest()
        if prog != want[version]:
            return False
        if version == "0.2.0":
            return hashlib.sha256(open(os.path.join(d, "data", "blob"), "rb").read()).digest() \
                == hashlib.sha256(BLOB).digest()
        return True
    except OSError:
        return False


def kill_and_check(step, pid):
    os.kill(pid, signal.SIGKILL)
    got = t.wait_for(lambda: s.child()[0] not in (None, pid) and s.child(), timeout=30,
                     what="an agent runs again after the kill during " + step, interval=0.05)
    if got:
        v = got[1]
        t.check(v in ("0.1.0", "0.2.0") and complete(v),
                "after kill -9 during %s: complete version %s runs" % (step, v))


# 1. During the download.
size = t.wait_for(lambda: os.path.exists(part) and 0 < os.path.getsize(part) < full and
                  os.path.getsize(part), timeout=120, what="download under way", interval=0.002)
pid, v = s.child()
if size:
    kill_and_check("download (%d of %d bytes)" % (size, full), pid)
t.wait_for(lambda: "resumed" in s.launcher.stderr_text(), timeout=60,
           what="the download resumes with a range request", interval=0.2)

# 2-4. Verification, unpacking, the switch: the agent stalls there once.
for step in ("verify", "unpack", "switch"):
    t.wait_for(lambda: os.path.exists(os.path.join(s.update_dir, "stall-" + step)), timeout=120,
               what="agent at step " + step, interval=0.05)
    time.sleep(0.2)
    pid, v = s.child()
    if step == "unpack":
        t.check(os.path.isdir(os.path.join(s.versions, ".staging-0.2.0")),
                "the unpacked version sits in its staging directory")
        t.check(not os.path.exists(os.path.join(s.versions, "0.2.0")),
                "no version directory before the rename")
    if step == "switch":
        t.check_eq(s.state().get("pending"), "0.2.0", "pending written before the kill")
    kill_and_check(step, pid)
    t.check(not any(n.startswith(".staging") for n in os.listdir(s.versions)) or step == "unpack",
            "no staging leftovers after " + step)

# 5. The first start of the new version, before its commit.
t.wait_for(lambda: os.path.exists(os.path.join(s.update_dir, "stall-first-start")), timeout=120,
           what="new version at its first start", interval=0.05)
time.sleep(0.2)
pid, v = s.child()
t.check_eq(v, "0.2.0", "the new version was started on trial")
kill_and_check("first start", pid)

s.wait_committed("0.2.0", timeout=120)
s.wait_running("0.2.0", timeout=30)
t.check(complete("0.2.0"), "the committed version is complete")
t.check(not any(n.startswith(".staging") for n in os.listdir(s.versions)),
        "no staging directory left")
t.check(not os.path.exists(part), "the download part is gone")
t.wait_for(lambda: s.console_state().get("running") == "0.2.0" and
           s.console_state().get("pending") == "", timeout=60,
           what="the console shows 0.2.0 committed", interval=0.2)
t.done()
