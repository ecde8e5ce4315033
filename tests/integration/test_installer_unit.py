"""The systemd unit the installer writes: `systemd-analyze verify` accepts it
(a deliberately broken copy shows that the check finds faults), and it keeps
what monitoring needs: Type=notify with a watchdog and restart, the
capability for fanotify filesystem marks, and none of the settings that
would blind the agent (private network, private users, invisible /proc)."""
import os
import shutil
import yit

t = yit.Test(__file__)
if shutil.which("systemd-analyze") is None:
    yit.skip("systemd-analyze is not installed")
src = os.path.join(yit.SOURCE_DIR, "installer", "yamori.service.in")
agent = yit.binary("yamorid")


def render(text, name):
    d = t.path(name)
    os.mkdir(d)
    p = os.path.join(d, "yamori.service")
    with open(p, "w") as f:
        f.write(text.replace("@EXEC@", agent + " --config /etc/yamori/agent.json"))
    return p


def verify(path):
    r = t.run(["systemd-analyze", "verify", path])
    out = (r.stdout + r.stderr).decode()
    # Only lines about this unit count (verify also looks at the units it
    # pulls in, which belong to the machine).
    mine = [l for l in out.splitlines() if "yamori.service" in l]
    return r.returncode, mine


text = open(src).read()
rc, lines = verify(render(text, "good"))
t.check_eq(rc, 0, "systemd-analyze verify exits 0")
t.check_eq(lines, [], "systemd-analyze verify has nothing to say about the unit")
rc, lines = verify(render(text.replace("Restart=always", "Restart=always\nRestartFoo=1\nType=bogus"), "bad"))
t.check(len(lines) >= 1, "a broken copy is reported (the check works): %s" % lines)

settings = {}
for line in text.splitlines():
    if "=" in line and not line.startswith("#"):
        k, v = line.split("=", 1)
        settings.setdefault(k.strip(), []).append(v.strip())
t.check_eq(settings.get("Type"), ["notify"], "Type=notify")
t.check_eq(settings.get("NotifyAccess"), ["all"], "NotifyAccess=all (the launcher's child notifies)")
t.check_eq(settings.get("Restart"), ["always"], "Restart=always")
t.check(settings.get("WatchdogSec") and int(settings["WatchdogSec"][0]) > 0, "a watchdog is set")
t.check("CAP_SYS_ADMIN" in settings.get("CapabilityBoundingSet", [""])[0],
        "CAP_SYS_ADMIN kept (fanotify filesystem marks)")
t.check("CAP_NET_ADMIN" in settings.get("CapabilityBoundingSet", [""])[0],
        "CAP_NET_ADMIN kept (proc connector)")
for bad in ("PrivateNetwork", "PrivateUsers", "PrivateTmp", "ProtectHome", "ProtectSystem"):
    t.check(bad not in settings, "no %s" % bad)
t.check(settings.get("ProtectProc", ["default"])[0] != "invisible", "no ProtectProc=invisible")
t.done()
