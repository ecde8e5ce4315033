"""A good release reaches a PC through the real console and launcher and is
committed; a release that crashes at start and one that never checks in
healthy are both rolled back automatically within the window, and the
console shows why. The old version keeps running throughout."""
import os
import time
import yit
import updutil

yit.require_root()
t = yit.Test(__file__)
WINDOW = 15
s = updutil.Setup(t, window=WINDOW)
s.wait_running("0.1.0", timeout=30)
t.wait_for(lambda: s.console_state().get("running") == "0.1.0", timeout=60,
           what="the console knows the running version", interval=0.2)

# A good release: downloaded, verified, unpacked, started on trial,
# committed after its first healthy check-in.
serial = s.release("0.2.0")
s.wait_running("0.2.0", timeout=120)
s.wait_committed("0.2.0", timeout=60)
st = s.state()
t.check_eq((st.get("active"), st.get("previous")), ("0.2.0", "0.1.0"), "state after commit")
t.wait_for(lambda: s.console_state().get("running") == "0.2.0" and
           s.console_state().get("pending") == "", timeout=60,
           what="the console shows 0.2.0 running, nothing pending", interval=0.2)
t.check_eq(s.console_state().get("serial"), serial, "the console shows the accepted serial")
pkg_prog = open(os.path.join(s.versions, "0.2.0", "bin", "yamorid"), "rb").read()
t.check(pkg_prog == open(updutil.YAMORID, "rb").read(), "the unpacked program is the released one")
t.check_eq(oct(os.stat(os.path.join(s.versions, "0.2.0", "bin", "yamorid")).st_mode & 0o777),
           "0o755", "program mode from the package")

# A release that crashes at start: rolled back after max-starts exits.
t0 = time.monotonic()
s.release("0.3.0", script="#!/bin/sh\necho crash >&2\nexit 3\n")
t.wait_for(lambda: s.state().get("failed") == "0.3.0", timeout=120, what="0.3.0 rolled back",
           interval=0.2)
t.check("exited" in s.state().get("reason", ""), "reason names the exits: %s" % s.state())
s.wait_running("0.2.0", timeout=30)
t.wait_for(lambda: s.console_state().get("failed") == "0.3.0", timeout=60,
           what="the console shows 0.3.0 failed", interval=0.2)
t.check("exited" in s.console_state().get("reason", ""),
        "the console shows why: %s" % s.console_state().get("reason"))
t.check_eq(s.state().get("active"), "0.2.0", "active version unchanged")

# A release that starts but never checks in healthy: rolled back when the
# window has passed.
s.release("0.4.0", script="#!/bin/sh\nwhile :; do sleep 1; done\n")
t.wait_for(lambda: s.child()[1] == "0.4.0", timeout=120, what="0.4.0 started on trial",
           interval=0.2)
started = time.monotonic()
t.wait_for(lambda: s.state().get("failed") == "0.4.0", timeout=WINDOW + 30,
           what="0.4.0 rolled back", interval=0.2)
took = time.monotonic() - started
t.check(took <= WINDOW + 5, "rolled back within the window (%.1f s, window %d s)" % (took, WINDOW))
t.check("no healthy check-in" in s.state().get("reason", ""), "reason: %s" % s.state())
s.wait_running("0.2.0", timeout=30)
t.wait_for(lambda: s.console_state().get("failed") == "0.4.0" and
           "no healthy check-in" in s.console_state().get("reason", ""), timeout=60,
           what="the console shows 0.4.0 failed and why", interval=0.2)
# The failed release is not tried again while the console still offers it.
time.sleep(12)
t.check_eq(s.child()[1], "0.2.0", "0.2.0 still runs; the failed release is not retried")

# SIGTERM to the launcher stops the agent and the launcher.
pid, _ = s.child()
s.launcher.signal(15)
t.wait_for(lambda: s.launcher.poll() is not None, timeout=30, what="launcher exits on SIGTERM")
t.check(not os.path.exists("/proc/%d" % pid) or open("/proc/%d/stat" % pid).read().split()[2] == "Z",
        "the agent stopped with the launcher")
t.done()
