"""The agent speaks the service manager's notify protocol without
libsystemd: READY=1 only after its sensors are armed, WATCHDOG=1 from its
event loop at half of WATCHDOG_USEC, STOPPING=1 when it stops; to an
abstract socket name as well as a path."""
import os
import socket
import time
import yit

yit.require_root()
t = yit.Test(__file__)


def run_with(addr, env_name):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(addr)
    s.settimeout(0.1)
    env = dict(os.environ, NOTIFY_SOCKET=env_name, WATCHDOG_USEC="400000")
    conf = t.path("agent-%d.json" % len(t.procs))
    with open(conf, "w") as f:
        f.write('{"state_dir": "%s", "rules": {"dirs": ["%s"]}, "control": {"socket": "%s"},'
                ' "spool": {"enabled": false}, "policy": {"exec": "off"}}'
                % (t.path("state%d" % len(t.procs)), os.path.join(yit.SOURCE_DIR, "rules"),
                   t.path("ctl%d.sock" % len(t.procs))))
    p = t.start([yit.binary("yamorid"), "--config", conf], name="agent%d" % len(t.procs), env=env)
    msgs = []
    armed_at_ready = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            m = s.recv(4096).decode()
        except socket.timeout:
            if p.poll() is not None:
                break
            if msgs.count("WATCHDOG=1") >= 3:
                break
            continue
        if m == "READY=1" and armed_at_ready is None:
            armed_at_ready = "sensors armed" in p.stderr_text()
        msgs.append(m)
    p.signal(15)
    end = time.monotonic() + 10
    while time.monotonic() < end and "STOPPING=1" not in msgs:
        try:
            msgs.append(s.recv(4096).decode())
        except socket.timeout:
            pass
    p.stop()
    s.close()
    return msgs, armed_at_ready


path = t.path("notify.sock")
msgs, armed = run_with(path, path)
t.check("READY=1" in msgs, "READY=1 sent (path socket): %s" % msgs[:5])
t.check(armed is True, "READY=1 comes after the sensors are armed")
t.check(msgs.count("WATCHDOG=1") >= 3, "WATCHDOG=1 sent repeatedly")
t.check("STOPPING=1" in msgs, "STOPPING=1 sent on SIGTERM")
t.check(msgs.index("READY=1") < msgs.index("WATCHDOG=1") if "WATCHDOG=1" in msgs and "READY=1" in msgs else False,
        "the watchdog starts after readiness")

name = "yamori-it-notify-%d" % os.getpid()
msgs, armed = run_with("\0" + name, "@" + name)
t.check("READY=1" in msgs and "STOPPING=1" in msgs, "abstract socket name works: %s" % msgs[:3])
t.done()
