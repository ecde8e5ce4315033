"""Helpers for Yamori's integration tests.

Each integration test is a plain Python script run by ctest. It starts the
project's real binaries (from YAMORI_BUILD_DIR) in a private temporary
directory, waits for them, and checks what they do. Exit code 77 tells ctest
the test was skipped; the reason is printed first.

    import yit
    t = yit.Test(__file__)
    p = t.start(["yamorid", "--foreground"], name="agent")
    t.wait_for(lambda: "ready" in p.stderr_text(), what="agent ready")
    t.check(p.poll() is None, "agent still running")
    t.done()
"""

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SKIP = 77

BUILD_DIR = os.environ.get("YAMORI_BUILD_DIR", os.path.join(os.getcwd(), "build"))
SOURCE_DIR = os.environ.get(
    "YAMORI_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)

BINARIES = {
    "yamorid": "agent/yamorid",
    "yamorictl": "agent/yamorictl",
    "yamori-console": "console/yamori-console",
}


def binary(name):
    """Absolute path of a built program, by its installed name."""
    return os.path.join(BUILD_DIR, BINARIES.get(name, name))


def skip(reason):
    print("SKIP: " + reason, flush=True)
    sys.exit(SKIP)


def require_root():
    if os.geteuid() != 0:
        skip("needs root (kernel sensors); CI runs as root")


class Proc:
    """A started program whose stdout and stderr go to files in the test dir."""

    def __init__(self, argv, cwd, name, env=None, stdin=None):
        self.name = name
        self.out_path = os.path.join(cwd, name + ".out")
        self.err_path = os.path.join(cwd, name + ".err")
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.p = subprocess.Popen(
            argv, cwd=cwd, stdout=self._out, stderr=self._err, env=env,
            stdin=stdin if stdin is not None else subprocess.DEVNULL)
        self.pid = self.p.pid

    def poll(self):
        return self.p.poll()

    def stdout_bytes(self):
        with open(self.out_path, "rb") as f:
            return f.read()

    def stderr_text(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def signal(self, sig):
        if self.p.poll() is None:
            os.kill(self.p.pid, sig)

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after timeout; returns the exit status."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._out.close()
        self._err.close()
        return self.p.returncode


class Test:
    """One test script: a temporary directory, its processes and its checks."""

    def __init__(self, script):
        self.name = os.path.splitext(os.path.basename(script))[0]
        self.dir = tempfile.mkdtemp(prefix="yamori-" + self.name + "-")
        self.procs = []
        self.failures = 0
        self.checks = 0
        self.cleanups = []
        self._finished = False
        # A test that dies with an exception must not leave agents running
        # (they would act on other tests' files).
        atexit.register(self._atexit)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def run(self, argv, timeout=60, input=None, env=None):
        """Runs a program to completion; returns CompletedProcess (bytes)."""
        if argv[0] in BINARIES:
            argv = [binary(argv[0])] + list(argv[1:])
        return subprocess.run(argv, cwd=self.dir, timeout=timeout, input=input,
                              capture_output=True, env=env)

    def start(self, argv, name=None, env=None):
        if argv[0] in BINARIES:
            argv = [binary(argv[0])] + list(argv[1:])
        p = Proc(argv, self.dir, name or os.path.basename(argv[0]), env=env)
        self.procs.append(p)
        return p

    def wait_for(self, cond, timeout=20.0, what="condition", interval=0.02):
        """Polls cond() until it is true; a timeout is a failed check."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = cond()
            if v:
                return v
            time.sleep(interval)
        self.check(False, "timed out after %.0fs waiting for %s" % (timeout, what))
        return None

    def check(self, ok, what):
        self.checks += 1
        if ok:
            print("ok - " + what, flush=True)
        else:
            self.failures += 1
            print("FAIL - " + what, flush=True)
        return ok

    def check_eq(self, got, want, what):
        return self.check(got == want, "%s (got %r, want %r)" % (what, got, want))

    def need(self, ok, what):
        """A check the rest of the test stands on, such as a fixture being
        made: when it fails, the test ends here as failed, so that later
        checks never run against something that does not exist."""
        if not self.check(ok, what):
            print("FAIL - the test cannot go on without this", flush=True)
            self.done()
        return ok

    def need_eq(self, got, want, what):
        return self.need(got == want, "%s (got %r, want %r)" % (what, got, want))

    def on_cleanup(self, fn):
        self.cleanups.append(fn)

    def _atexit(self):
        if self._finished:
            return
        for p in self.procs:
            try:
                p.stop(timeout=5)
            except Exception:
                pass
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception:
                pass

    def done(self):
        """Stops everything, prints the summary and exits with the result."""
        self._finished = True
        for p in self.procs:
            p.stop()
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as e:  # cleanup must not hide the result
                print("cleanup: %s" % e)
        if self.failures:
            for p in self.procs:
                print("--- %s stderr (tail) ---\n%s" % (p.name, p.stderr_text()[-3000:]))
        elif os.environ.get("YAMORI_KEEP_TEST_DIR"):
            print("kept: %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self.checks == 0:
            print("FAIL - the test made no checks")
            sys.exit(1)
        print("%d passed, %d failed" % (self.checks - self.failures, self.failures), flush=True)
        sys.exit(1 if self.failures else 0)


def read_ndjson(data):
    """Parses NDJSON bytes; every line must be a JSON object."""
    events = []
    for line in data.split(b"\n"):
        if line:
            events.append(json.loads(line.decode("utf-8", "surrogatepass")))
    return events


def fs_text(s):
    """Turns a JSON string from an event back into the bytes it stands for
    (invalid UTF-8 bytes were written as lone surrogates U+DC80..U+DCFF)."""
    return s.encode("utf-8", "surrogateescape")


class Agent:
    """A real yamorid with its own state directory and NDJSON output.

    conf is merged into the default test configuration. Startup waits for the
    "sensors armed" log line, so events from then on are seen."""

    def __init__(self, t, conf=None, name="agent", wait=True):
        self.t = t
        self.name = name
        self.conf = {"state_dir": t.path(name + "-state"), "output": t.path(name + ".ndjson"),
                     "rules": {"dirs": [os.path.join(SOURCE_DIR, "rules")]},
                     "control": {"socket": t.path(name + ".sock")}}
        self.conf.update(conf or {})
        self.conf_path = t.path(name + ".json")
        self.write_conf(self.conf)
        self.out_path = self.conf["output"]
        self._events = []
        self._off = 0
        self._partial = b""
        # YAMORI_AGENT_WRAP (e.g. "gdb -batch -ex run -ex bt --args") runs the
        # agent under a debugging tool.
        wrap = os.environ.get("YAMORI_AGENT_WRAP", "").split()
        self.proc = t.start(wrap + [binary("yamorid"), "--config", self.conf_path], name=name)
        if wait:
            t.wait_for(lambda: "sensors armed" in self.proc.stderr_text() or self.proc.poll() is not None,
                       what=name + " armed")
            if self.proc.poll() is not None:
                t.check(False, name + " exited early: " + self.proc.stderr_text()[-2000:])

    def ctl(self, *args, timeout=120):
        """Runs yamorictl against this agent; returns CompletedProcess."""
        return self.t.run(["yamorictl", "--config", self.conf_path] + list(args), timeout=timeout)

    def ctl_json(self, *args, timeout=120):
        """Runs yamorictl --json; returns (exit code, list of JSON lines)."""
        r = self.ctl("--json", *args, timeout=timeout)
        lines = [json.loads(l) for l in r.stdout.decode("utf-8", "surrogatepass").splitlines() if l]
        return r.returncode, lines

    def write_conf(self, conf):
        with open(self.conf_path, "w") as f:
            json.dump(conf, f)

    def events(self):
        """All events written so far (incrementally parsed)."""
        try:
            with open(self.out_path, "rb") as f:
                f.seek(self._off)
                data = f.read()
        except FileNotFoundError:
            return self._events
        self._off += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if line:
                self._events.append(json.loads(line.decode("utf-8", "surrogatepass")))
        return self._events

    def raw_lines(self):
        with open(self.out_path, "rb") as f:
            return f.read().split(b"\n")

    def wait_event(self, pred, timeout=15.0, what="event"):
        def find():
            for e in self.events():
                if pred(e):
                    return e
            return None
        return self.t.wait_for(find, timeout=timeout, what=what)

    def wait_quiet(self, settle=1.0, timeout=60.0):
        """Waits until no new events arrived for settle seconds."""
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            n = len(self.events())
            if n == last:
                return
            last = n
            time.sleep(settle)


def get(e, dotted, default=None):
    """Reads a dotted field from a nested event."""
    cur = e
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def leaf_fields(e, prefix=""):
    """Yields (dotted name, value) for every leaf of a nested event."""
    for k, v in e.items():
        name = prefix + k
        if isinstance(v, dict):
            yield from leaf_fields(v, name + ".")
        else:
            yield name, v


def free_port():
    """A TCP port on 127.0.0.1 that is free right now."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Console:
    """A real yamori-console on 127.0.0.1 with its own data directory."""

    def __init__(self, t, name="console", port=None, extra=()):
        self.t = t
        self.name = name
        self.port = port or free_port()
        self.data = t.path(name + "-data")
        self.url = "https://127.0.0.1:%d" % self.port
        self.extra = list(extra)
        self.proc = None
        self.start()

    def start(self):
        self.proc = self.t.start([binary("yamori-console"), "--data-dir", self.data,
                                  "--listen", "127.0.0.1:%d" % self.port] + self.extra + ["serve"],
                                 name=self.name)
        self.t.wait_for(lambda: b"console listening" in self.proc.stdout_bytes()
                        or self.proc.poll() is not None, what=self.name + " listening")
        if self.proc.poll() is not None:
            self.t.check(False, self.name + " exited: " + self.proc.stderr_text()[-2000:])

    def stop(self, sig=None):
        if sig is not None:
            self.proc.signal(sig)
            self.proc.p.wait()
        return self.proc.stop()

    def cli(self, *args):
        r = self.t.run(["yamori-console", "--data-dir", self.data] + list(args))
        return r

    def tenant(self, name):
        r = self.cli("tenant", "add", name)
        self.t.check(r.returncode == 0, "tenant %s added" % name)

    def token(self, tenant, *args):
        r = self.cli("token", "create", "--tenant", tenant, *args)
        self.t.check(r.returncode == 0, "token created for %s" % tenant)
        return r.stdout.decode().strip()

    def db(self):
        import sqlite3
        c = sqlite3.connect("file:%s/yamori.db?mode=ro" % self.data, uri=True, timeout=30)
        return c

    def query(self, sql, *params):
        c = self.db()
        try:
            return c.execute(sql, params).fetchall()
        finally:
            c.close()

    def admin_password(self):
        """The first administrator's password, printed once at first start."""
        import re
        m = re.search(rb'administrator "admin", password (\S+)', self.proc.stdout_bytes())
        self.t.check(m is not None, self.name + " printed the first admin password")
        return m.group(1).decode()

    def ui(self, user="admin", password=None, expect=200):
        """A dashboard session (cookie and CSRF token) after logging in."""
        s = UiSession(self)
        st = s.login(user, password if password is not None else self.admin_password())
        self.t.check_eq(st, expect, "login of %s" % user)
        return s

    def request(self, method, path, body=b"", headers=None, timeout=10):
        """One HTTPS request (the test's own client; no certificate check)."""
        import http.client
        import ssl
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, dict(resp.getheaders()), data
        finally:
            conn.close()


class UiSession:
    """A person using the dashboard API: the session cookie and the CSRF
    token a browser would hold."""

    def __init__(self, con):
        self.con = con
        self.cookie = None
        self.csrf = None
        self.last_headers = {}

    def login(self, user, password):
        st, h, data = self.con.request("POST", "/api/ui/login",
                                       json.dumps({"user": user, "password": password}).encode(),
                                       {"Content-Type": "application/json"})
        self.last_headers = h
        if st == 200:
            c = h.get("set-cookie") or h.get("Set-Cookie")
            self.set_cookie = c
            self.cookie = c.split(";", 1)[0]
            self.csrf = json.loads(data)["csrf"]
        return st

    def call(self, method, path, body=None, csrf=True, raw=False):
        h = {}
        if self.cookie:
            h["Cookie"] = self.cookie
        if method != "GET" and csrf and self.csrf:
            h["X-CSRF-Token"] = self.csrf
        data = b""
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        st, hdrs, out = self.con.request(method, path, data, h)
        self.last_headers = hdrs
        if raw:
            return st, out
        try:
            return st, json.loads(out) if out else None
        except ValueError:
            return st, out

    def get(self, path):
        return self.call("GET", path)

    def post(self, path, body=None, csrf=True):
        return self.call("POST", path, body if body is not None else {}, csrf=csrf)
