"""A fresh Debian 12 system booted with systemd, for installer tests.

The root file system is made once per machine with debootstrap (minbase plus
systemd) under /var/cache/yamori-test/bookworm (YAMORI_TEST_ROOT to choose)
and booted with `systemd-nspawn --boot --volatile=overlay`: every boot starts
from the same fresh system and writes go to a throw-away layer. The
container shares the host's network (no private network), so it reaches a
console on 127.0.0.1, and apt-get in it reaches the Debian archive. The
kernel serves the netlink proc connector to the initial PID namespace only,
so inside the container the agent runs without its process sensor (the
installer notices and configures it so).

    m = nspawn.Machine(t)          # boots; stopped at the end of the test
    r = m.run(["systemctl", "is-system-running"])
    m.put(local_file, "/tmp/x")    # copies a file in
"""

import fcntl
import os
import shutil
import signal
import subprocess
import time

ROOT = os.environ.get("YAMORI_TEST_ROOT", "/var/cache/yamori-test/bookworm")
MIRROR = os.environ.get("YAMORI_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def missing_tools():
    """The host tools that are missing ("" when all are there)."""
    need = ["systemd-nspawn", "nsenter"]
    if not os.path.isdir(ROOT):
        need.append("debootstrap")
    return " ".join(x for x in need if shutil.which(x) is None)


def ensure_root(log=print):
    """Makes the cached root file system when it does not exist yet (about a
    minute; serialized by a lock so that parallel tests make it once)."""
    if os.path.isfile(os.path.join(ROOT, "usr/lib/systemd/systemd")):
        return
    parent = os.path.dirname(ROOT)
    os.makedirs(parent, exist_ok=True)
    with open(os.path.join(parent, ".lock"), "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if os.path.isfile(os.path.join(ROOT, "usr/lib/systemd/systemd")):
            return
        tmp = ROOT + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        log("making the Debian 12 test system in %s (once per machine)" % ROOT)
        r = subprocess.run(["debootstrap", "--variant=minbase",
                            "--include=systemd,systemd-sysv,dbus", "bookworm", tmp, MIRROR],
                           capture_output=True)
        if r.returncode != 0:
            raise RuntimeError("debootstrap failed: " + r.stderr.decode()[-2000:])
        os.rename(tmp, ROOT)


class Machine:
    """One booted container. Commands run in it through nsenter."""

    def __init__(self, t, name=None, boot_timeout=60):
        self.t = t
        self.name = name or "ymit%d" % os.getpid()
        self.log_path = t.path(self.name + ".console")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--boot", "--volatile=overlay", "--register=no", "--keep-unit",
             "--quiet", "-M", self.name, "-D", ROOT, "--console=pipe",
             # nspawn's system call filter refuses fanotify (the agent's file
             # sensor) and open_by_handle_at (its file names) by default.
             "--system-call-filter=fanotify_init fanotify_mark open_by_handle_at"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        t.on_cleanup(self.stop)
        self.leader = None
        deadline = time.monotonic() + boot_timeout
        while time.monotonic() < deadline and self.leader is None:
            self.leader = self._find_leader()
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if self.leader is None:
            raise RuntimeError("the container did not start: " + self.console_text()[-2000:])
        state = ""
        while time.monotonic() < deadline:
            r = self.run(["systemctl", "is-system-running"], timeout=10)
            state = r.stdout.decode().strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.1)
        self.state = state

    def _find_leader(self):
        try:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                kids = f.read().split()
        except OSError:
            return None
        for k in kids:
            try:
                with open("/proc/%s/comm" % k) as f:
                    if f.read().strip() == "systemd":
                        return int(k)
            except OSError:
                pass
        return None

    def console_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def argv(self, cmd, env=None):
        """The host command line that runs cmd inside the container."""
        e = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=xterm",
             "LANG=C.UTF-8"]
        for k, v in (env or {}).items():
            e.append("%s=%s" % (k, v))
        return ["nsenter", "-t", str(self.leader), "-a"] + e + list(cmd)

    def run(self, cmd, env=None, timeout=300, input=None):
        return subprocess.run(self.argv(cmd, env), capture_output=True, timeout=timeout,
                              input=input)

    def sh(self, script, timeout=300):
        return self.run(["sh", "-c", script], timeout=timeout)

    def path(self, p):
        """The host path of path p inside the container."""
        return "/proc/%d/root%s" % (self.leader, p)

    def put(self, src, dst, mode=0o755):
        shutil.copyfile(src, self.path(dst))
        os.chmod(self.path(dst), mode)

    def exists(self, p):
        return os.path.lexists(self.path(p))

    def stop(self):
        if self.proc.poll() is None:
            # SIGRTMIN+4 asks systemd (PID 1 of the container) to power off.
            try:
                os.kill(self.leader, signal.SIGRTMIN + 4)
            except (OSError, TypeError):
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
