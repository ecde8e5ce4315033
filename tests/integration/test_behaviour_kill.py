"""Behaviour response: a critical rule kills the process that matched (the
default response of the critical level), and its alert says so; a
system-critical program matched by a critical rule is not killed and the
alert says why, nor is the agent's launcher (protect.h); a program no rule matches runs on. The rules are this
test's own, compiled with the console's command into a rules directory of
the test beside the project's rules/."""
import os
import signal
import subprocess
import time
import yit
from yit import get

yit.require_root()
t = yit.Test(__file__)
MARK = "987.%06d" % (os.getpid() % 1000000)
rules = t.path("brules")
os.makedirs(os.path.join(rules, "sigma"))
with open(t.path("kill.yml"), "w") as f:
    f.write("""title: Test sleep that must be killed
id: yamori-test-kill-sleep
level: critical
tags: [attack.execution, attack.t1059]
logsource: {product: linux, category: process_creation}
detection:
  sel:
    Image|endswith: /sleep
    CommandLine|contains: '%s'
  condition: sel
---
title: Test system bus that must not be killed
id: yamori-test-kill-critical
level: critical
tags: [attack.execution, attack.t1059]
logsource: {product: linux, category: process_creation}
detection:
  sel:
    Image|endswith: /dbus-daemon
    CommandLine|contains: '%s'
  condition: sel
---
title: Test program posing as the system bus in its own mount namespace
id: yamori-test-kill-posing
level: critical
tags: [attack.defense_evasion, attack.t1036]
logsource: {product: linux, category: process_creation}
detection:
  sel:
    Image|endswith: /dbus-daemon
    CommandLine|contains: 'posing-%s'
  condition: sel
---
title: Test file written by the agent's launcher
id: yamori-test-kill-protected
level: critical
tags: [attack.execution, attack.t1059]
logsource: {product: linux, category: file_event}
detection:
  sel:
    TargetFilename|endswith: '/yamori-protected-%s.txt'
  condition: sel
""" % (MARK, t.path("bus"), MARK, MARK))
r = t.run(["yamori-console", "rules", "compile-sigma", "--strict", t.path("kill.yml"), "-o",
           os.path.join(rules, "sigma", "test.json")])
t.need_eq(r.returncode, 0, "test rules compiled: " + r.stdout.decode() + r.stderr.decode())

ag = yit.Agent(t, {"policy": {"exec": "off", "file": "detect"}, "scan": {"on_write": False},
                   "spool": {"enabled": False},
                   "rules": {"dirs": [os.path.join(yit.SOURCE_DIR, "rules"), rules]}})
rc, st = ag.ctl_json("status")
t.need_eq(rc, 0, "status answers")
t.check_eq(st[0]["counters"].get("behaviour_files"), 2, "both compiled rule files loaded")


def alert_of(rule):
    return ag.wait_event(lambda e: get(e, "event.kind") == "alert" and get(e, "rule.id") == rule,
                         timeout=15, what="alert of " + rule)


# ---- a critical match is killed ----
victim = subprocess.Popen(["sleep", MARK])
t.on_cleanup(lambda: victim.poll() is None and victim.kill())
t.wait_for(lambda: victim.poll() is not None, timeout=10, what="the matching sleep killed")
t.check_eq(victim.returncode, -signal.SIGKILL, "the sleep ended by SIGKILL")
e = alert_of("yamori-test-kill-sleep") or {}
t.check_eq(get(e, "process.pid"), victim.pid, "the alert names the killed process")
t.check_eq(get(e, "yamori.response.action"), "kill", "the alert says kill")
t.check_eq(get(e, "yamori.response.result"), "success", "the alert says it worked")
t.check_eq(get(e, "event.severity"), 99, "critical is severity 99")
t.check_eq(get(e, "yamori.sigma.level"), "critical", "the level is in the alert")

# ---- a system-critical program is not killed ----
bus = subprocess.Popen(["/usr/bin/dbus-daemon", "--config-file=/usr/share/dbus-1/session.conf",
                        "--nofork", "--address=unix:path=" + t.path("bus")],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
t.on_cleanup(lambda: bus.poll() is None and bus.terminate())
e = alert_of("yamori-test-kill-critical") or {}
t.check_eq(get(e, "process.pid"), bus.pid, "the alert names the bus daemon")
t.check_eq(get(e, "yamori.response.action"), "kill", "the level's response is kill")
t.check_eq(get(e, "yamori.response.result"), "refused", "the kill is refused")
t.check("system-critical" in (get(e, "event.reason") or ""), "the reason says system-critical (%s)"
        % get(e, "event.reason"))
time.sleep(1)
t.check(bus.poll() is None, "the bus daemon still runs")

# ---- a program posing as a system program is killed ----
# In a mount namespace of its own anybody (with user namespaces, any user)
# can bind another program over /usr/bin/dbus-daemon: the path it reports
# is a system program's, the file it runs is not.
poser = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                          "mount --bind /bin/sh /usr/bin/dbus-daemon && "
                          "exec /usr/bin/dbus-daemon -c 'sleep 30; true' posing-%s" % MARK])
t.on_cleanup(lambda: poser.poll() is None and poser.kill())
e = alert_of("yamori-test-kill-posing") or {}
t.check_eq(get(e, "process.executable"), "/usr/bin/dbus-daemon",
           "the poser reports the system program's path")
t.check_eq(get(e, "yamori.response.result"), "success", "the poser is killed all the same (%s)"
           % get(e, "event.reason"))
t.wait_for(lambda: poser.poll() is not None, timeout=10, what="the poser ended")
t.check_eq(poser.returncode, -signal.SIGKILL, "the poser ended by SIGKILL")

# ---- the agent's launcher is not killed ----
# This test started the agent, so it is the agent's parent: its launcher,
# which protect.h records by pid and start time. Were the protection to
# fail, this very process would be killed and the test with it.
with open(t.path("yamori-protected-%s.txt" % MARK), "w") as f:
    f.write("x")
e = alert_of("yamori-test-kill-protected") or {}
t.check_eq(get(e, "process.pid"), os.getpid(), "the alert names this test process")
t.check_eq(get(e, "yamori.response.result"), "refused", "the kill of the launcher is refused")
t.check("launcher" in (get(e, "event.reason") or ""), "the reason names the protection (%s)"
        % get(e, "event.reason"))

# ---- a program no rule matches runs on ----
other = subprocess.Popen(["sleep", "30"])
t.on_cleanup(lambda: other.poll() is None and other.kill())
time.sleep(1.5)
t.check(other.poll() is None, "a sleep without the mark runs on")

rc, st = ag.ctl_json("status")
k = st[0]["counters"] if rc == 0 else {}
t.check_eq(k.get("behaviour_killed"), 2, "status: two kills (the sleep and the poser)")
t.check(k.get("behaviour_kill_refused", 0) >= 1, "status: the refused kill counted")
t.done()
