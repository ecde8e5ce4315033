"""Rollout across many simulated agents (real enrollments and check-ins over
HTTPS against the real console): the percentage picks a stable set of PCs
by the hash of their agent id, raising it only adds PCs, pinning sends one
version to every PC of the tenant, pausing sends none, channels and
architectures are respected, and every agent's report is stored."""
import hashlib
import io
import json
import os
import shutil
import tarfile
import yit

yit.require_root()
t = yit.Test(__file__)
con = yit.Console(t, extra=["--rate-per-ip", "100000"])
con.tenant("acme")
con.tenant("other")
keys = t.path("keys")
t.check_eq(con.cli("release", "keygen", "--out", keys).returncode, 0, "keygen")
os.makedirs(os.path.join(con.data, "keys"))
shutil.copy(os.path.join(keys, "release.pub"), os.path.join(con.data, "keys"))


def release(version, serial, channel="stable", arch="x86_64"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.USTAR_FORMAT) as tf:
        data = b"#!/bin/sh\nexit 0\n"
        ti = tarfile.TarInfo("bin/yamorid")
        ti.size = len(data)
        ti.mode = 0o755
        tf.addfile(ti, io.BytesIO(data))
    pkg = t.path("p-%s.tar.gz" % version)
    open(pkg, "wb").write(buf.getvalue())
    r = con.cli("release", "sign", "--key", os.path.join(keys, "release.key"), "--package", pkg,
                "--version", version, "--serial", str(serial), "--channel", channel, "--arch", arch)
    t.check_eq(r.returncode, 0, "signed " + version)
    r = con.cli("release", "import", pkg, pkg + ".sig")
    t.check_eq(r.returncode, 0, "imported %s: %s" % (version, r.stderr.decode()))


release("0.1.9", 1)
release("0.2.0", 2)
release("0.3.0-beta", 3, channel="beta")
release("0.2.0-arm", 4, arch="aarch64")

N = 200
agents = []
for tenant in ("acme", "other"):
    token = con.token(tenant, "--max-uses", "0")
    tok = json.loads(__import__("base64").urlsafe_b64decode(token[5:] + "=="))["tok"]
    for i in range(N if tenant == "acme" else 20):
        st, _, body = con.request("POST", "/api/v1/enroll", json.dumps(
            {"token": tok, "host": {"name": "pc%d" % i, "id": "%s-host-%04d" % (tenant, i)},
             "agent": {"version": "0.1.0"}}).encode(), {"Content-Type": "application/json"})
        if st != 200:
            t.check(False, "enroll %d: %d %s" % (i, st, body))
            break
        j = json.loads(body)
        agents.append((tenant, j["agent_id"], j["secret"]))
t.check_eq(len(agents), N + 20, "simulated agents enrolled")


def checkin(agent, arch="x86_64"):
    tenant, aid, secret = agent
    st, _, body = con.request("POST", "/api/v1/checkin", json.dumps(
        {"agent_id": aid, "version": "0.1.0",
         "update": {"running": "0.1.0", "platform": "linux", "architecture": arch,
                    "serial": 0}}).encode(),
        {"Content-Type": "application/json", "Authorization": "Bearer %s.%s" % (aid, secret)})
    if st != 200:
        return "error %d" % st
    rel = json.loads(body).get("release")
    return rel["version"] if rel else None


def bucket(aid):
    return int.from_bytes(hashlib.sha256(aid.encode()).digest()[:4], "big") % 100


acme = [a for a in agents if a[0] == "acme"]
other = [a for a in agents if a[0] == "other"]
t.check(all(checkin(a) is None for a in acme[:20]), "no rollout: no release offered")

con.cli("rollout", "set", "--tenant", "acme", "--percent", "30")
got30 = {a[1] for a in acme if checkin(a) == "0.2.0"}
want30 = {a[1] for a in acme if bucket(a[1]) < 30}
t.check(got30 == want30, "30%: exactly the PCs whose stable bucket is below 30")
t.check(0.15 * N < len(got30) < 0.45 * N, "30%% is about 30%% of PCs (%d of %d)" % (len(got30), N))
t.check(all(checkin(a) is None for a in other), "the other tenant (no rollout) gets nothing")
t.check({a[1] for a in acme if checkin(a) == "0.2.0"} == got30, "the set is stable")

con.cli("rollout", "set", "--tenant", "acme", "--percent", "60")
got60 = {a[1] for a in acme if checkin(a) == "0.2.0"}
t.check(got30 < got60, "raising to 60%% only adds PCs (%d -> %d)" % (len(got30), len(got60)))
t.check(got60 == {a[1] for a in acme if bucket(a[1]) < 60}, "60% by bucket")

con.cli("rollout", "set", "--tenant", "acme", "--pin", "0.1.9")
t.check(all(checkin(a) == "0.1.9" for a in acme), "pinned: every PC of the tenant gets 0.1.9")
con.cli("rollout", "set", "--tenant", "acme", "--pause")
t.check(all(checkin(a) is None for a in acme), "paused: nothing offered")
con.cli("rollout", "set", "--tenant", "acme", "--resume", "--unpin", "--percent", "100",
        "--channel", "beta")
t.check(all(checkin(a) == "0.3.0-beta" for a in acme[:50]), "channel beta gets the beta release")

con.cli("rollout", "set", "--tenant", "*", "--percent", "100")
t.check(all(checkin(a) == "0.2.0" for a in other), "the default rollout covers the other tenant")
t.check(all(checkin(a, "aarch64") == "0.2.0-arm" for a in other),
        "an aarch64 PC gets the aarch64 build")

n = con.query("SELECT count(*) FROM agent_update_state WHERE running = '0.1.0'")[0][0]
t.check_eq(n, N + 20, "every agent's update report is stored")
t.done()
