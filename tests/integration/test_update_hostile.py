"""The hostile matrix: releases that a compromised or broken console might
offer are each refused by the agent with a distinct reason, which the
console receives, while the running version keeps running (the same
process) and keeps checking in. Nothing is written outside the versions
directory."""
import base64
import io
import json
import os
import sqlite3
import tarfile
import time
import yit
import updutil

yit.require_root()
t = yit.Test(__file__)
s = updutil.Setup(t, window=60)
s.wait_running("0.1.0", timeout=30)

# First a good release, so that a serial has been accepted (20).
s.release("0.2.0", serial=20)
s.wait_committed("0.2.0", timeout=120)
s.wait_running("0.2.0", timeout=30)
pid, _ = s.child()
good = s.package("0.9.0")  # a well-formed package to tamper with


def rw_db():
    return sqlite3.connect(os.path.join(s.con.data, "yamori.db"), timeout=30)


def signed(pkg, version, serial, key=None, *args):
    return s.sign(pkg, version, serial, key, *args)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def tar_with(members, tag):
    """A package with bin/yamorid plus hostile members [(TarInfo, data)]."""
    return s.package("x", extra=members)


def ti(name, kind=tarfile.REGTYPE, size=0, **kw):
    i = tarfile.TarInfo(name)
    i.type = kind
    i.size = size
    i.mode = 0o644
    for k, v in kw.items():
        setattr(i, k, v)
    return i


outside = t.path("outside-" + str(os.getpid()))
cases = []  # (version, expected reason, prepare(version, serial) -> (pkg, sig))


def c_bad_signature(v, n):
    sig = signed(good, v, n)
    env = json.load(open(sig))
    raw = bytearray(base64.b64decode(env["sig"]))
    raw[10] ^= 0x01
    env["sig"] = base64.b64encode(bytes(raw)).decode()
    json.dump(env, open(sig, "w"))
    return good, sig


other_keys = t.path("other-keys")
s.con.cli("release", "keygen", "--out", other_keys)


def c_unknown_key(v, n):
    return good, signed(good, v, n, os.path.join(other_keys, "release.key"))


def c_expired(v, n):
    return good, signed(good, v, n, None, "--expires", "-1")


def c_wrong_platform(v, n):
    return good, signed(good, v, n, None, "--platform", "windows")


def c_hash_mismatch(v, n):
    sig = signed(good, v, n)
    data = bytearray(open(good, "rb").read())
    data[len(data) // 2] ^= 0xff
    return write(t.path("hash-" + v), bytes(data)), sig


def c_truncated(v, n):
    sig = signed(good, v, n)
    data = open(good, "rb").read()
    return write(t.path("trunc-" + v), data[:len(data) // 2]), sig


def c_too_long(v, n):
    sig = signed(good, v, n)
    data = open(good, "rb").read()
    return write(t.path("long-" + v), data + b"\0" * 4096), sig


def c_member(members):
    def prep(v, n):
        pkg = s.package(v, extra=members)
        return pkg, signed(pkg, v, n)
    return prep


bomb = b"\0" * (64 * 1024 * 1024)
cases = [
    ("0.3.1", "bad_signature", c_bad_signature),
    ("0.3.2", "unknown_key", c_unknown_key),
    ("0.3.3", "expired", c_expired),
    ("0.3.4", "wrong_platform", c_wrong_platform),
    ("0.3.5", "hash_mismatch", c_hash_mismatch),
    ("0.3.6", "download_truncated", c_truncated),
    ("0.3.7", "download_too_long", c_too_long),
    ("0.3.8", "dotdot_path", c_member([(ti("bin/../../../" + os.path.basename(outside), size=4),
                                         b"evil")])),
    ("0.3.9", "absolute_path", c_member([(ti(outside + "-abs", size=4), b"evil")])),
    ("0.3.10", "link_entry", c_member([(ti("bin/sh", tarfile.SYMTYPE, linkname="/bin/sh"),
                                        None)])),
    ("0.3.11", "device_entry", c_member([(ti("dev/mem", tarfile.CHRTYPE, devmajor=1,
                                             devminor=1), None)])),
    ("0.3.12", "decompression_bomb", c_member([(ti("zeros", size=len(bomb)), bomb)])),
]

serial = 20
reasons = set()
for version, want, prep in cases:
    serial += 1
    pkg, sig = prep(version, serial)
    if want not in ("expired", "wrong_platform"):
        # The console's own import check refuses it too; --unchecked below
        # plays a console that does not.
        r = s.con.cli("release", "import", pkg, sig)
        t.check(r.returncode != 0 and b"refused" in r.stderr,
                "the console's import refuses %s: %s" % (want, r.stderr.decode().strip()))
    r = s.con.cli("release", "import", pkg, sig, "--unchecked")
    t.check_eq(r.returncode, 0, "%s imported as the console was told (%s)" % (version, want))
    if want == "wrong_platform":  # a console that lies about the platform
        db = rw_db()
        db.execute("UPDATE releases SET platform = 'linux' WHERE serial = ?", (serial,))
        db.commit()
        db.close()
    s.con.cli("rollout", "set", "--tenant", "acme", "--pin", version)
    got = t.wait_for(lambda: s.console_state().get("failed") == version and
                     s.console_state().get("reason"), timeout=60,
                     what="%s refused and reported" % version, interval=0.2)
    t.check_eq(got, want, "%s refused with reason" % version)
    reasons.add(got)
    t.check_eq(s.child(), (pid, "0.2.0"), "the running agent is untouched after %s" % want)
    t.check(not os.path.exists(os.path.join(s.versions, version)), "no directory for " + version)

# Lower serial, and the accepted serial replayed with another version.
pkg = s.package("0.1.5")
r = s.con.cli("release", "import", pkg, signed(pkg, "0.1.5", 5), "--unchecked")
s.con.cli("rollout", "set", "--tenant", "acme", "--pin", "0.1.5")
got = t.wait_for(lambda: s.console_state().get("failed") == "0.1.5" and
                 s.console_state().get("reason"), timeout=60, what="0.1.5 refused", interval=0.2)
t.check_eq(got, "serial_lower", "lower serial refused")
reasons.add(got)
db = rw_db()
db.execute("DELETE FROM releases WHERE serial = 20")  # the console forgets 0.2.0's row
db.commit()
db.close()
pkg = s.package("0.2.1")
r = s.con.cli("release", "import", pkg, signed(pkg, "0.2.1", 20), "--unchecked")
t.check_eq(r.returncode, 0, "replay imported")
s.con.cli("rollout", "set", "--tenant", "acme", "--pin", "0.2.1")
got = t.wait_for(lambda: s.console_state().get("failed") == "0.2.1" and
                 s.console_state().get("reason"), timeout=60, what="0.2.1 refused", interval=0.2)
t.check_eq(got, "serial_replayed", "same serial replayed refused")
reasons.add(got)

t.check_eq(len(reasons), len(cases) + 2, "every refusal has its own reason")
t.check(not any(os.path.exists(p) for p in (outside, outside + "-abs")),
        "nothing was written outside the versions directory")
t.check_eq(s.child(), (pid, "0.2.0"), "the same agent process ran throughout")
seen = s.con.query("SELECT last_seen FROM agents WHERE id = ?", s.agent_id)[0][0]
t.wait_for(lambda: s.con.query("SELECT last_seen FROM agents WHERE id = ?", s.agent_id)[0][0] > seen,
           timeout=40, what="the agent still checks in", interval=0.5)
t.check_eq(s.state().get("active"), "0.2.0", "active version unchanged")
t.done()
