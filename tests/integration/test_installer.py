"""The installer on a fresh Debian 12 booted with systemd (systemd-nspawn,
see nspawn.py) against a real console on the host:

- preflight failures (not root, console unreachable, wrong certificate pin)
  stop before any change and say why; --check changes nothing;
- the company's own installer (yamori-console installer) runs silently:
  the service is active, the PC appears in the console, a file event from
  inside the container arrives there;
- running it again repairs in place, a newer installer upgrades in place
  (same identity, previous version kept for rollback);
- --uninstall leaves only configuration and state, --purge leaves nothing;
- the interactive text wizard (in Japanese) completes when driven through a
  terminal.
"""
import base64
import json
import os
import pty
import select
import subprocess
import sys
import time

import nspawn
import yit

yit.require_root()
t = yit.Test(__file__)
missing = nspawn.missing_tools()
if missing:
    yit.skip("missing tools: %s (scripts/install-deps.sh installs them)" % missing)
cache = open(os.path.join(yit.BUILD_DIR, "CMakeCache.txt")).read()
if "YAMORI_ASAN:BOOL=ON" in cache or "YAMORI_TSAN:BOOL=ON" in cache:
    yit.skip("sanitizer build: the test system lacks the sanitizer runtime")
generic = os.path.join(yit.BUILD_DIR, "installer", "yamori-installer.run")
t.check(os.path.isfile(generic), "the generic installer was built")
nspawn.ensure_root()

con = yit.Console(t)
con.tenant("acme")
HELPDESK = "Yamori help desk 03-1234-5678"


def company_installer(name, template=generic, *extra):
    out = t.path(name)
    r = con.cli("installer", "--tenant", "acme", "--out", out, "--installer", template,
                "--helpdesk", HELPDESK, *extra)
    t.check(r.returncode == 0, "installer %s made: %s" % (name, r.stderr.decode()[-300:]))
    return out


acme = company_installer("acme.run")
t.check_eq(os.stat(acme).st_mode & 0o777, 0o600, "the company's installer is readable by its owner only")
with open(acme, "rb") as f:
    tail = f.read()[-1000:]
t.check(b"\n#yamori-config-v1\nYAMORI_TOKEN=ymt1." in tail, "the token is embedded")
t.check(os.path.getsize(acme) < 10 * 1024 * 1024, "the installer is under 10 MB")

# The dashboard's download: the tenant's help desk text (several lines) is
# folded into one line; the console found the generic installer by itself.
admin = con.ui()
tid = con.query("SELECT id FROM tenants WHERE name = 'acme'")[0][0]
st, _ = admin.post("/api/ui/tenants/%d/settings" % tid, {"helpdesk": "ACME desk\n03-9999-0000"})
t.check_eq(st, 200, "help desk set in the dashboard")
st, dash_file = admin.call("POST", "/api/ui/tenants/%d/installer" % tid, {}, raw=True)
t.check_eq(st, 200, "the dashboard serves the tenant's installer")
t.check(dash_file.startswith(b"#!/bin/sh\n# Yamori installer") and
        b"\nYAMORI_HELPDESK=ACME desk / 03-9999-0000\n#yamori-config-end\n" in dash_file[-2000:],
        "the download holds a token and the tenant's help desk")
dash_run = t.path("dash.run")
with open(dash_run, "wb") as f:
    f.write(dash_file)

m = nspawn.Machine(t)
t.check(m.state in ("running", "degraded"), "the container booted with systemd (%s)" % m.state)
m.put(acme, "/root/acme.run", 0o600)

LEFT = ["/opt/yamori", "/etc/yamori", "/var/lib/yamori", "/etc/systemd/system/yamori.service",
        "/usr/bin/yamorictl"]


def nothing_installed(what):
    left = [p for p in LEFT if m.exists(p)]
    t.check_eq(left, [], what + ": nothing was installed")


def watchdog_holds(what):
    """With a 2 s watchdog, the agent (pinging from its loop every 1 s) is
    not restarted over 5 s; the ping time advances."""
    m.sh("mkdir -p /etc/systemd/system/yamori.service.d && printf '[Service]\\nWatchdogSec=2\\n' "
         "> /etc/systemd/system/yamori.service.d/wd.conf && systemctl daemon-reload && "
         "systemctl restart yamori")
    def prop(name):
        return m.run(["systemctl", "show", "yamori", "-p", name, "--value"]).stdout.decode().strip()
    t0 = prop("WatchdogTimestampMonotonic")
    time.sleep(5)
    t.check_eq(prop("WatchdogUSec"), "2s", what + ": the test watchdog is in force")
    t.check_eq(prop("NRestarts"), "0", what + ": no watchdog restart in 5 s")
    t.check(prop("WatchdogTimestampMonotonic") not in ("", "0", t0), what + ": the pings arrive")
    m.sh("rm -rf /etc/systemd/system/yamori.service.d && systemctl daemon-reload && "
         "systemctl restart yamori")


def agent_running():
    r = m.sh("cat /proc/[0-9]*/comm 2>/dev/null")
    return "yamorid" in r.stdout.decode().split()


# ---- preflight failures, on the fresh system ----
shutil_copy = m.put
shutil_copy(acme, "/tmp/acme-readable.run", 0o644)
r = m.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
           "sh", "/tmp/acme-readable.run", "--silent"])
t.check_eq(r.returncode, 2, "not root: refused")
t.check(r.stderr.decode().strip().splitlines()[-2].endswith(
    "Run the installer as root (for example: sudo sh /tmp/acme-readable.run)."),
    "not root: says why: " + r.stderr.decode()[-300:])
nothing_installed("not root")

closed = yit.free_port()
far = company_installer("far.run", generic, "--url", "https://127.0.0.1:%d" % closed)
m.put(far, "/root/far.run", 0o600)
r = m.run(["sh", "/root/far.run", "--silent"])
t.check_eq(r.returncode, 2, "console unreachable: refused")
t.check("Cannot connect to the console" in r.stderr.decode().strip().splitlines()[-2],
        "console unreachable: says why: " + r.stderr.decode()[-400:])
nothing_installed("console unreachable")
r = m.run(["sh", "/root/far.run", "--silent"], env={"LANG": "ja_JP.UTF-8"})
t.check(r.returncode == 2 and "コンソールに接続できません" in r.stderr.decode(),
        "console unreachable, in Japanese: " + r.stderr.decode()[-300:])
r = m.run(["dpkg-query", "-W", "-f=${Status}", "libuv1"])
t.check(b"install ok installed" not in r.stdout,
        "console unreachable: not even the libraries were added")

r = m.run(["sh", "/root/acme.run", "--check"])
t.check(r.returncode in (0, 2), "--check runs: " + r.stdout.decode()[-800:] + r.stderr.decode()[-300:])
t.check(b"Diagnosis" in r.stdout and b"fanotify" in r.stdout, "--check prints a report")
nothing_installed("--check")

# A token whose pin is not the console's: what a TLS-intercepting proxy
# would look like.
tok = con.token("acme")
body = json.loads(base64.urlsafe_b64decode(tok[5:] + "=" * (-len(tok[5:]) % 4)))
body["pin"] = "sha256//" + base64.b64encode(b"\x01" * 32).decode()
bad = "ymt1." + base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")
m.put(generic, "/root/generic.run", 0o755)
r = m.run(["sh", "/root/generic.run", "--silent", "--token", bad])
t.check_eq(r.returncode, 2, "wrong pin: refused")
t.check("TLS-intercepting proxy" in r.stderr.decode().strip().splitlines()[-2],
        "wrong pin: names TLS interception: " + r.stderr.decode()[-400:])
nothing_installed("wrong pin")

# ---- silent install of the company's installer ----
t0 = time.monotonic()
r = m.run(["sh", "/root/acme.run", "--silent"])
elapsed = time.monotonic() - t0
out = r.stdout.decode()
t.check_eq(r.returncode, 0, "silent install succeeds: " + out[-600:] + r.stderr.decode()[-600:])
print("# install took %.1f s" % elapsed)
t.check("connected" in out and HELPDESK in out, "it says connected, with the help desk")
r = m.run(["systemctl", "is-active", "yamori"])
t.check_eq(r.stdout.decode().strip(), "active", "the service is active")
r = m.run(["systemctl", "is-enabled", "yamori"])
t.check_eq(r.stdout.decode().strip(), "enabled", "the service starts at boot")
r = m.run(["systemctl", "show", "yamori", "-p", "Type", "-p", "WatchdogUSec", "-p", "Restart"])
t.check(b"Type=notify" in r.stdout and b"Restart=always" in r.stdout and
        b"WatchdogUSec=30s" in r.stdout, "notify, watchdog, restart: " + r.stdout.decode())
ident = json.load(open(m.path("/var/lib/yamori/identity.json")))
agent_id = ident["agent_id"]
rows = con.query("SELECT last_seen, host_name FROM agents WHERE id = ?", agent_id)
t.check(len(rows) == 1 and rows[0][0] > 0, "the PC appears in the console with a check-in: %s" % rows)
t.check_eq(oct(os.stat(m.path("/var/lib/yamori")).st_mode & 0o777), "0o700", "state is root-only")
r = m.run(["yamorictl", "status"])
t.check(r.returncode == 0 and b"running" in r.stdout, "yamorictl on PATH talks to the agent")
watchdog_holds("yamorid")

marker = "yamori-it-%d" % os.getpid()
m.sh("echo hello > /tmp/%s.txt" % marker)
got = t.wait_for(lambda: con.query("SELECT count(*) FROM events WHERE agent_id = ? AND json LIKE ?",
                                   agent_id, "%" + marker + "%")[0][0] >= 1,
                 timeout=60, what="the file event from the container in the console")
t.check(got, "a file event from inside the container arrived in the console")
# Protection works under the unit's hardening: the EICAR test file written
# in the container is quarantined, and the alert reaches the console.
eicar = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
with open(m.path("/tmp/%s-eicar.com" % marker), "wb") as f:
    f.write(eicar)
t.wait_for(lambda: not m.exists("/tmp/%s-eicar.com" % marker), timeout=30,
           what="the EICAR file quarantined")
got = t.wait_for(lambda: con.query("SELECT count(*) FROM events WHERE agent_id = ? AND json LIKE ? "
                                   "AND json LIKE '%\"kind\":\"alert\"%'", agent_id,
                                   "%" + marker + "-eicar%")[0][0] >= 1,
                 timeout=60, what="the alert in the console")
t.check(got, "the alert for the EICAR file reached the console")

# ---- repair: the same installer again ----
r = m.run(["sh", "/root/acme.run", "--silent"])
t.check_eq(r.returncode, 0, "running it again repairs: " + r.stderr.decode()[-400:])
t.check_eq(json.load(open(m.path("/var/lib/yamori/identity.json")))["agent_id"], agent_id,
           "repair keeps the identity")

# ---- upgrade: a newer installer ----
# When the launcher is built (YAMORI_TEST_LAUNCHER names another one), the
# newer installer brings it: the unit then starts the agent through it.
launcher = os.environ.get("YAMORI_TEST_LAUNCHER", yit.binary("agent/yamori-launcher"))
with_launcher = os.path.isfile(launcher)
v2dir = t.path("v2")
r = subprocess.run([os.path.join(yit.SOURCE_DIR, "installer", "mkinstaller.sh"), "--version", "99.0.1",
                    "--out", v2dir, "--yamorid", yit.binary("yamorid"),
                    "--yamorictl", yit.binary("yamorictl"),
                    "--rules", os.path.join(yit.SOURCE_DIR, "rules"), "--no-deb"]
                   + (["--launcher", launcher] if with_launcher else []),
                   capture_output=True)
t.check(r.returncode == 0, "newer installer built: " + r.stderr.decode()[-300:])
acme2 = company_installer("acme2.run", os.path.join(v2dir, "yamori-installer.run"))
m.put(acme2, "/root/acme2.run", 0o600)
before = con.query("SELECT last_seen FROM agents WHERE id = ?", agent_id)[0][0]
r = m.run(["sh", "/root/acme2.run", "--silent"])
t.check_eq(r.returncode, 0, "upgrade succeeds: " + r.stderr.decode()[-400:])
t.check_eq(os.readlink(m.path("/opt/yamori/current")), "versions/99.0.1", "the new version is current")
t.check(any(v != "99.0.1" and os.path.isfile(m.path("/opt/yamori/versions/%s/bin/yamorid" % v))
            for v in os.listdir(m.path("/opt/yamori/versions"))),
        "the previous version is kept for rollback")
t.check_eq(json.load(open(m.path("/var/lib/yamori/identity.json")))["agent_id"], agent_id,
           "upgrade keeps the identity (no second PC in the console)")
t.check_eq(con.query("SELECT count(*) FROM agents")[0][0], 1, "still one PC in the console")
r = m.run(["systemctl", "is-active", "yamori"])
t.check_eq(r.stdout.decode().strip(), "active", "the service is active after the upgrade")
t.check(con.query("SELECT last_seen FROM agents WHERE id = ?", agent_id)[0][0] >= before,
        "the upgraded agent checked in")
if with_launcher:
    unit = open(m.path("/etc/systemd/system/yamori.service")).read()
    t.check("ExecStart=/opt/yamori/bin/yamori-launcher -- --config /etc/yamori/agent.json" in unit,
            "the unit starts the launcher")
    st = json.load(open(m.path("/var/lib/yamori/update/state.json")))
    t.check(st.get("active") == "99.0.1" and st.get("previous") not in (None, "", "99.0.1"),
            "the launcher's state names the new version, the old one as previous: %s" % st)
    r = m.run(["systemctl", "show", "yamori", "-p", "MainPID", "--value"])
    main_pid = r.stdout.decode().strip()
    comm = m.sh("cat /proc/%s/comm" % main_pid).stdout.decode().strip()
    t.check_eq(comm, "yamori-launcher", "the service's main process is the launcher")
    t.check(agent_running(), "the launcher runs the agent")
    watchdog_holds("launcher")
else:
    print("# no launcher built: the upgrade runs yamorid directly")

# ---- uninstall, then purge ----
r = m.run(["sh", "/root/acme2.run", "--uninstall", "--silent"])
t.check_eq(r.returncode, 0, "uninstall succeeds: " + r.stderr.decode()[-300:])
left = [p for p in LEFT if m.exists(p)]
t.check_eq(left, ["/etc/yamori", "/var/lib/yamori"], "uninstall keeps only configuration and state")
t.check(not agent_running(), "no agent runs after uninstall")
r = m.run(["systemctl", "is-active", "yamori"])
t.check(r.stdout.decode().strip() != "active", "the service is gone")
r = m.run(["sh", "/root/acme2.run", "--uninstall", "--purge", "--silent"])
t.check_eq(r.returncode, 0, "purge succeeds")
nothing_installed("after --purge")

# ---- the text wizard, in Japanese, through a terminal, with the file
# downloaded from the dashboard ----
m.put(dash_run, "/root/dash.run", 0o600)
pid, fd = pty.fork()
if pid == 0:
    argv = m.argv(["sh", "/root/dash.run", "--text"], env={"LANG": "ja_JP.UTF-8"})
    os.execvp(argv[0], argv)
    os._exit(127)
screen = b""
answered = set()
deadline = time.monotonic() + 180
status = None
while time.monotonic() < deadline:
    r, _, _ = select.select([fd], [], [], 0.2)
    if r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            break
        screen += data
    text = screen.decode("utf-8", "replace")
    if "[Y/n]" in text and "continue" not in answered:
        answered.add("continue")
        os.write(fd, b"y\n")
    if "Enter" in text and "close" not in answered:
        answered.add("close")
        os.write(fd, b"\n")
_, status = os.waitpid(pid, 0)
os.close(fd)
text = screen.decode("utf-8", "replace")
t.check_eq(os.waitstatus_to_exitcode(status), 0, "the wizard completes: " + text[-800:])
t.check("インストールするもの" in text, "the wizard shows what will be installed (Japanese)")
t.check("このパソコンは保護されています" in text, "the wizard ends with: this PC is protected")
t.check("ACME desk / 03-9999-0000" in text, "the wizard shows the tenant's help desk")
r = m.run(["systemctl", "is-active", "yamori"])
t.check_eq(r.stdout.decode().strip(), "active", "the service is active after the wizard")
r = m.run(["sh", "/root/acme.run", "--uninstall", "--purge", "--silent"])
t.check_eq(r.returncode, 0, "purge after the wizard")
nothing_installed("after the second purge")

# ---- the .deb, for fleets with a package manager ----
debs = [f for f in os.listdir(os.path.dirname(generic)) if f.endswith(".deb")]
t.check(len(debs) == 1, "one .deb was built: %s" % debs)
m.put(os.path.join(os.path.dirname(generic), debs[0]), "/root/yamori.deb", 0o644)
r = m.run(["dpkg", "-i", "/root/yamori.deb"], env={"YAMORI_TOKEN": con.token("acme")})
t.check_eq(r.returncode, 0, "dpkg -i with YAMORI_TOKEN: " + r.stdout.decode()[-400:] + r.stderr.decode()[-400:])
r = m.run(["systemctl", "is-active", "yamori"])
t.check_eq(r.stdout.decode().strip(), "active", "the .deb's service is active")
deb_id = json.load(open(m.path("/var/lib/yamori/identity.json")))["agent_id"]
t.wait_for(lambda: con.query("SELECT count(*) FROM agents WHERE id = ? AND last_seen > 0",
                             deb_id)[0][0] == 1, timeout=30, what="the .deb's agent checks in")
r = m.run(["dpkg", "--purge", "yamori"])
t.check_eq(r.returncode, 0, "dpkg --purge")
t.check(not agent_running(), "no agent runs after dpkg --purge")
left = [p for p in LEFT + ["/lib/systemd/system/yamori.service"] if m.exists(p)]
t.check_eq(left, [], "dpkg --purge leaves nothing")
t.done()
