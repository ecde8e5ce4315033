"""Configuration: a bad reload is refused with the key named and the
running configuration stays; a good reload takes effect."""
import os
import signal
import yit
from yit import get

yit.require_root()
t = yit.Test(__file__)
ex = t.path("excluded")
os.mkdir(ex)
ag = yit.Agent(t, {"exclude": {"paths": [ex]}})


def touch_and_mark(name):
    p = os.path.join(ex, name)
    open(p, "w").close()
    m = t.path("marker-" + name)
    open(m, "w").close()
    ag.wait_event(lambda e: get(e, "file.path") == m, what="marker " + name)
    return any(get(e, "file.path") == p for e in ag.events())


t.check(not touch_and_mark("one"), "excluded before reload")

bad = dict(ag.conf)
bad["exclude"] = {"paths": ["relative/path"]}
ag.write_conf(bad)
ag.proc.signal(signal.SIGHUP)
t.wait_for(lambda: "reload refused" in ag.proc.stderr_text(), what="bad reload refused")
t.check("exclude.paths" in ag.proc.stderr_text(), "refusal names the key")
t.check(not touch_and_mark("two"), "still excluded after a bad reload")
t.check(ag.proc.poll() is None, "agent kept running")

good = dict(ag.conf)
good["exclude"] = {"paths": []}
ag.write_conf(good)
ag.proc.signal(signal.SIGHUP)
t.wait_for(lambda: "configuration reloaded" in ag.proc.stderr_text(), what="good reload")
t.check(touch_and_mark("three"), "exclusion lifted after a good reload")

# Unknown keys and wrong types at start are refused with the key named.
for conf, key in (({"sensors": {"files": True}}, "sensors.files"),
                  ({"limits": {"netlink_rcvbuf": 5}}, "limits.netlink_rcvbuf"),
                  ({"log_level": "loud"}, "log_level")):
    import json
    path = t.path("c.json")
    with open(path, "w") as f:
        json.dump(conf, f)
    r = t.run(["yamorid", "--config", path, "--check-config"])
    t.check(r.returncode == 78 and key.encode() in r.stderr, "refused with key %s" % key)
t.done()
