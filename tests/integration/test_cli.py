"""Every program starts, answers --help and --version, and uses exit code 64
for usage errors."""
import yit

t = yit.Test(__file__)
for prog in ("yamorid", "yamorictl", "yamori-console"):
    r = t.run([prog, "--help"])
    t.check_eq(r.returncode, 0, prog + " --help exits 0")
    t.check(b"Usage: " + prog.encode() in r.stdout, prog + " --help prints usage")
    r = t.run([prog, "--version"])
    t.check_eq(r.returncode, 0, prog + " --version exits 0")
    out = r.stdout.decode()
    for lib in ("libyara", "OpenSSL", "libuv", "libcurl", "zlib", "cJSON"):
        t.check(lib in out, "%s --version names %s" % (prog, lib))
    t.check(out.startswith(prog + " 0."), prog + " --version starts with its version")
    r = t.run([prog, "--no-such-option"])
    t.check_eq(r.returncode, 64, prog + " rejects an unknown option with 64")

# A malformed configuration is refused with the key named (EX_CONFIG, 78).
with open(t.path("bad.json"), "w") as f:
    f.write('{"limits": {"max_args": 0}}')
r = t.run(["yamorid", "--config", t.path("bad.json"), "--check-config"])
t.check_eq(r.returncode, 78, "bad config refused with 78")
t.check(b"limits.max_args" in r.stderr, "bad config error names the key")
with open(t.path("good.json"), "w") as f:
    f.write('{"log_level": "debug", "exclude": {"paths": ["/var/cache"]}}')
r = t.run(["yamorid", "--config", t.path("good.json"), "--check-config"])
t.check_eq(r.returncode, 0, "good config accepted")
# docs/config.md holds the generated configuration reference.
import os
r = t.run(["yamorid", "--config-doc"])
with open(os.path.join(yit.SOURCE_DIR, "docs", "config.md")) as f:
    t.check(r.stdout.decode() in f.read(), "docs/config.md holds the generated key table")
t.done()
