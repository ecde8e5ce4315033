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

# Sigma rules compile through the console's command (docs/behaviour.md):
# one line per rule, the refusal with file and line, --strict writes nothing.
os.makedirs(t.path("sigma"))
with open(t.path("sigma/good.yml"), "w") as f:
    f.write("title: Good\nid: good-1\nlogsource:\n  category: process_creation\n"
            "detection:\n  sel:\n    CommandLine|contains: '/dev/tcp/'\n  condition: sel\n")
with open(t.path("sigma/bad.yml"), "w") as f:
    f.write("title: Bad\nid: bad-1\nlogsource:\n  category: process_creation\n"
            "detection:\n  sel:\n    CommandLine|nope: x\n  condition: sel\n")
out = t.path("sigma.json")
r = t.run(["yamori-console", "rules", "compile-sigma", t.path("sigma"), "-o", out])
t.check_eq(r.returncode, 0, "compile-sigma exits 0 when it wrote the accepted rules")
text = r.stdout.decode()
t.check("accepted %s:1 good-1 Good" % t.path("sigma/good.yml") in text, "accepted rule listed")
t.check("refused  %s:7 bad-1: unknown modifier nope" % t.path("sigma/bad.yml") in text,
        "refused rule listed with file, line and reason")
import json
with open(out) as f:
    doc = json.load(f)
t.check_eq([x["id"] for x in doc["rules"]], ["good-1"], "only the accepted rule is written")
os.unlink(out)
r = t.run(["yamori-console", "rules", "compile-sigma", "--strict", t.path("sigma"), "-o", out])
t.check_eq(r.returncode, 1, "compile-sigma --strict exits 1 on a refusal")
t.check(not os.path.exists(out), "compile-sigma --strict writes nothing on a refusal")
r = t.run(["yamori-console", "rules", "compile-sigma", t.path("sigma")])
t.check_eq(r.returncode, 64, "compile-sigma without -o is a usage error")
t.done()
