"""Shared steps of the update tests: a console with a release key, an
enrolled agent run by the real launcher from a temporary versions
directory, and packages built, signed and imported with the console's own
tools."""
import io
import json
import os
import shutil
import signal
import tarfile
import time
import yit

LAUNCHER = os.path.join(yit.BUILD_DIR, "agent", "yamori-launcher")
YAMORID = yit.binary("yamorid")


class Setup:
    def __init__(self, t, window=60, checkin_s=10, name="u", start=True, max_starts=3):
        self.t = t
        self.con = yit.Console(t, extra=["--checkin-s", str(checkin_s)])
        self.con.tenant("acme")
        self.keys = t.path("keys")
        r = self.con.cli("release", "keygen", "--out", self.keys)
        t.check_eq(r.returncode, 0, "release keygen")
        st = os.stat(os.path.join(self.keys, "release.key"))
        t.check_eq(st.st_mode & 0o777, 0o600, "private key is 0600")
        # The agent trusts only keys installed with it; the console checks
        # imports with its own copy.
        self.agent_keys = t.path("agent-keys")
        os.makedirs(self.agent_keys)
        shutil.copy(os.path.join(self.keys, "release.pub"), self.agent_keys)
        os.makedirs(os.path.join(self.con.data, "keys"), exist_ok=True)
        shutil.copy(os.path.join(self.keys, "release.pub"), os.path.join(self.con.data, "keys"))
        self.versions = t.path("versions")
        self.update_dir = t.path("update")
        self.state_dir = t.path(name + "-state")
        self.install_version("0.1.0")
        self.conf_path = t.path(name + ".json")
        self.conf = {"state_dir": self.state_dir, "output": "",
                     "rules": {"dirs": [os.path.join(yit.SOURCE_DIR, "rules")]},
                     "control": {"socket": t.path(name + ".sock")},
                     "sensors": {"file": False, "process": False},
                     "policy": {"exec": "off", "file": "detect"},
                     "update": {"keys_dir": self.agent_keys, "versions_dir": self.versions,
                                "dir": self.update_dir}}
        with open(self.conf_path, "w") as f:
            json.dump(self.conf, f)
        token = self.con.token("acme")
        r = t.run(["yamorictl", "--config", self.conf_path, "enroll"],
                  env=dict(os.environ, YAMORI_TOKEN=token))
        t.check_eq(r.returncode, 0, "agent enrolled")
        self.agent_id = json.load(open(os.path.join(self.state_dir, "identity.json")))["agent_id"]
        self.window = window
        self.max_starts = max_starts
        self.serial = 1
        self.launcher = None
        if start:
            self.start()

    def install_version(self, v, program=None):
        """What the installer does: a first version with bin/yamorid."""
        d = os.path.join(self.versions, v, "bin")
        os.makedirs(d, exist_ok=True)
        shutil.copy(program or YAMORID, os.path.join(d, "yamorid"))

    def start(self, env=None):
        self.launcher = self.t.start([LAUNCHER, "--versions-dir", self.versions, "--update-dir",
                                      self.update_dir, "--window", str(self.window),
                                      "--max-starts", str(self.max_starts), "--",
                                      "--config", self.conf_path], name="launcher", env=env)
        return self.launcher

    def stop(self):
        if self.launcher is not None:
            self.launcher.stop()

    # ---- state ----
    def state(self):
        try:
            with open(os.path.join(self.update_dir, "state.json")) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return {}

    def child(self):
        """(pid, version) of the agent the launcher runs, or (None, None)."""
        if self.launcher is None or self.launcher.poll() is not None:
            return None, None
        ppid = self.launcher.p.pid
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % pid) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) != ppid:
                    continue
                exe = os.readlink("/proc/%s/exe" % pid)
            except (OSError, IndexError, ValueError):
                continue
            if exe.startswith(self.versions + "/"):
                return int(pid), exe[len(self.versions) + 1:].split("/")[0]
            # A script: its interpreter runs; the version is in the cmdline.
            try:
                cmd = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\0")
            except OSError:
                continue
            for c in cmd:
                c = c.decode(errors="replace")
                if c.startswith(self.versions + "/"):
                    return int(pid), c[len(self.versions) + 1:].split("/")[0]
        return None, None

    def console_state(self):
        rows = self.con.query("SELECT running, pending, failed, reason, serial, rules_json FROM "
                              "agent_update_state WHERE agent_id = ?", self.agent_id)
        if not rows:
            return {}
        r = rows[0]
        return {"running": r[0], "pending": r[1], "failed": r[2], "reason": r[3],
                "serial": r[4], "rules": json.loads(r[5])}

    # ---- packages ----
    def package(self, version, program=None, extra=None, script=None):
        """A gzip'd ustar package with bin/yamorid (a copy of the build's,
        or a shell script) and optional extra members [(TarInfo, bytes)]."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.USTAR_FORMAT) as tf:
            def add(name, data, mode=0o644, kind=tarfile.REGTYPE):
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                ti.mode = mode
                ti.type = kind
                tf.addfile(ti, io.BytesIO(data))
            ti = tarfile.TarInfo("bin")
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            tf.addfile(ti)
            if script is not None:
                add("bin/yamorid", script.encode(), 0o755)
            else:
                add("bin/yamorid", open(program or YAMORID, "rb").read(), 0o755)
            add("VERSION", (version + "\n").encode())
            for ti, data in extra or []:
                tf.addfile(ti, io.BytesIO(data) if data is not None else None)
        path = self.t.path("pkg-%s-%d.tar.gz" % (version, self.serial + 1))
        with open(path, "wb") as f:
            f.write(buf.getvalue())
        return path

    def sign(self, pkg, version, serial, key=None, *args):
        r = self.con.cli("release", "sign", "--key", key or os.path.join(self.keys, "release.key"),
                         "--package", pkg, "--version", version, "--serial", str(serial), *args)
        self.t.check_eq(r.returncode, 0, "release %s signed: %s" % (version, r.stderr.decode()))
        return pkg + ".sig"

    def release(self, version, pkg=None, sig=None, serial=None, unchecked=False, sign_args=(),
                **kw):
        """Builds (unless given), signs, imports a release and pins the
        tenant to it. Returns the serial."""
        if serial is None:
            self.serial += 1
            serial = self.serial
        pkg = pkg or self.package(version, **kw)
        sig = sig or self.sign(pkg, version, serial, None, *sign_args)
        args = ["release", "import", pkg, sig] + (["--unchecked"] if unchecked else [])
        r = self.con.cli(*args)
        self.t.check_eq(r.returncode, 0, "release %s imported: %s" % (version, r.stderr.decode()))
        r = self.con.cli("rollout", "set", "--tenant", "acme", "--pin", version)
        self.t.check_eq(r.returncode, 0, "rollout pinned to %s" % version)
        return serial

    def wait_running(self, version, timeout=120):
        return self.t.wait_for(lambda: self.child()[1] == version, timeout=timeout,
                               what="version %s running" % version, interval=0.2)

    def wait_committed(self, version, timeout=120):
        return self.t.wait_for(lambda: self.state().get("active") == version
                               and not self.state().get("pending"), timeout=timeout,
                               what="version %s committed" % version, interval=0.2)
