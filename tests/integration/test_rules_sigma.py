"""Behaviour rules in rules bundles, on the console's command line
(docs/behaviour.md, docs/update.md): `rules import-sigma` compiles a
provider's collection (tests/data/sigma-import, rules written for this
test) and reports per rule accepted or refused and why; `rules publish`
packs the compiled rules as sigma/NAME.json, compiles Sigma YAML first and
refuses the whole publish when a rule does not compile, naming file and
line."""
import gzip
import io
import json
import os
import sqlite3
import tarfile
import yit

t = yit.Test(__file__)
data = t.path("data")
os.makedirs(data)
C = ["yamori-console", "--data-dir", data]
r = t.run(C + ["tenant", "add", "acme"])
t.need_eq(r.returncode, 0, "tenant added: %s" % r.stderr.decode())
r = t.run(C + ["release", "keygen", "--out", t.path("keys")])
t.need_eq(r.returncode, 0, "keys made: %s" % r.stderr.decode())
KEY = t.path("keys", "release.key")
COLLECTION = os.path.join(yit.SOURCE_DIR, "tests", "data", "sigma-import", "rules", "linux")

# -- import-sigma: one line per rule, and a summary ------------------------
r = t.run(C + ["rules", "import-sigma", COLLECTION, "--tenant", "acme"])
out = r.stdout.decode()
t.check_eq(r.returncode, 0, "import-sigma succeeds: %s" % r.stderr.decode())
lines = [l for l in out.splitlines() if l.startswith(("accepted", "refused"))]
t.check_eq(len(lines), 7, "one line per rule file of the collection:\n" + out)
want = {
    "proc_lnx_many_constructs.yml": ("accepted", None),
    "proc_lnx_keywords.yml": ("accepted", None),
    "file_lnx_cron.yml": ("accepted", None),
    "net_lnx_expand.yml:15": ("refused", "modifier expand (placeholders) is not supported"),
    "proc_lnx_near.yml:17": ("refused", "condition:"),
    "lnx_auditd_syscall.yml:11": ("refused", "log source service auditd"),
    "proc_lnx_unknown_modifier.yml:14": ("refused", "unknown modifier sounds_like"),
}
for key, (verdict, why) in want.items():
    hit = [l for l in lines if key in l]
    t.check(len(hit) == 1 and hit[0].startswith(verdict) and (why is None or why in hit[0]),
            "%s %s%s: %s" % (key, verdict, " (" + why + ")" if why else "", hit))
t.check("3 accepted, 4 refused" in out, "the summary counts: " + out)
imported = os.path.join(data, "rules", "acme", "sigma", "import-linux.json")
with open(imported) as f:
    j = json.load(f)
t.check_eq(j.get("format"), "yamori-sigma", "the compiled form is written")
t.check_eq(sorted(x["id"][-2:] for x in j["rules"]), ["01", "02", "03"],
           "only the accepted rules are in it")

# Nothing accepted: nothing written, exit 1.
bad_only = t.path("bad-only")
os.makedirs(bad_only)
with open(os.path.join(COLLECTION, "process_creation", "proc_lnx_unknown_modifier.yml")) as f:
    text = f.read()
with open(os.path.join(bad_only, "x.yml"), "w") as f:
    f.write(text)
r = t.run(C + ["rules", "import-sigma", bad_only, "-o", t.path("bad-out")])
t.check_eq(r.returncode, 1, "a collection with nothing accepted fails")
t.check(not os.path.exists(t.path("bad-out", "sigma", "import-bad-only.json")), "nothing written")
r = t.run(C + ["rules", "import-sigma", COLLECTION])
t.check_eq(r.returncode, 64, "import-sigma needs -o or --tenant")
r = t.run(C + ["rules", "import-sigma", COLLECTION, "--tenant", "../etc"])
t.check_eq(r.returncode, 64, "a tenant name cannot be a path")


def bundle(version):
    with sqlite3.connect(os.path.join(data, "yamori.db")) as db:
        blob = db.execute("SELECT bundle FROM rule_bundles WHERE version = ?", (version,)).fetchone()
    t.need(blob is not None, "bundle %s stored" % version)
    tf = tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob[0])), mode="r:")
    return {m.name: tf.extractfile(m).read() for m in tf.getmembers()}


# -- publish: the imported rules of the tenant (no DIR: DATA/rules/acme) -----
r = t.run(C + ["rules", "publish", "--key", KEY, "--tenant", "acme", "--version", "s1"])
t.check_eq(r.returncode, 0, "a tenant bundle may hold only behaviour rules: %s" %
           r.stderr.decode())
t.check("1 behaviour" in r.stdout.decode(), r.stdout.decode())
b = bundle("s1")
t.check_eq(sorted(b), ["sigma/import-linux.json"], "the bundle holds the imported rules")
with open(imported, "rb") as f:
    t.check_eq(b["sigma/import-linux.json"], f.read(), "packed as written")

# -- publish: YAML compiled at publish time, beside compiled files ----------
d = t.path("rules1")
os.makedirs(os.path.join(d, "sigma", "own", "sub"))
with open(os.path.join(d, "base.yar"), "w") as f:
    f.write("rule Base { strings: $a = \"yamori-sigma-test\" condition: $a }\n")
with open(os.path.join(COLLECTION, "file_event", "file_lnx_cron.yml")) as f:
    cron = f.read()
with open(os.path.join(d, "sigma", "own", "sub", "cron.yml"), "w") as f:
    f.write(cron)
# A stale compiled form beside the YAML is replaced by the YAML's.
with open(os.path.join(d, "sigma", "own.json"), "w") as f:
    f.write('{"format": "yamori-sigma", "version": 1, "rules": [], "correlations": []}')
with open(imported) as f:
    imported_text = f.read()
with open(os.path.join(d, "sigma", "import-linux.json"), "w") as f:
    f.write(imported_text)
with open(os.path.join(d, "sigma", "loose.yml"), "w") as f:
    f.write(cron.replace("4a03", "4a13"))
r = t.run(C + ["rules", "publish", "--key", KEY, "--version", "d1", d])
t.check_eq(r.returncode, 0, "published: %s" % r.stderr.decode())
b = bundle("d1")
t.check_eq(sorted(b), ["base.yar", "sigma/import-linux.json", "sigma/own.json",
                       "sigma/rules.json"], "YARA and behaviour rules packed")
own = json.loads(b["sigma/own.json"])
t.check_eq([x["id"] for x in own["rules"]], ["0b7d3a52-3c1e-4f7e-9a11-5e0f2d7c4a03"],
           "sigma/own/ compiled into sigma/own.json, replacing the stale file")
t.check_eq(own["rules"][0].get("source"), "sigma/own/sub/cron.yml:1",
           "the rule's source is named relative to the rules directory")
loose = json.loads(b["sigma/rules.json"])
t.check_eq([x["id"] for x in loose["rules"]], ["0b7d3a52-3c1e-4f7e-9a11-5e0f2d7c4a13"],
           "YAML directly in sigma/ compiled into sigma/rules.json")

# -- publish refusals ---------------------------------------------------------
with open(os.path.join(d, "sigma", "own", "bad.yml"), "w") as f:
    f.write(text)
r = t.run(C + ["rules", "publish", "--key", KEY, "--version", "d2", d])
t.check_eq(r.returncode, 1, "a rule that does not compile refuses the publish")
t.check("sigma/own/bad.yml:14:" in r.stderr.decode() and "unknown modifier" in r.stderr.decode(),
        "the refusal names file and line: %s" % r.stderr.decode())
os.unlink(os.path.join(d, "sigma", "own", "bad.yml"))
# A mapped field the agent does not emit yet: refused at publish (strict).
with open(os.path.join(COLLECTION, "process_creation", "proc_lnx_many_constructs.yml")) as f:
    many = f.read()
with open(os.path.join(d, "sigma", "own", "many.yml"), "w") as f:
    f.write(many)
r = t.run(C + ["rules", "publish", "--key", KEY, "--version", "d2", d])
t.check_eq(r.returncode, 1, "publish compiles strictly: %s" % r.stderr.decode())
t.check("many.yml:" in r.stderr.decode(), "the strict refusal names the file")
os.unlink(os.path.join(d, "sigma", "own", "many.yml"))
with open(os.path.join(d, "sigma", "forged.json"), "w") as f:
    f.write('{"rules": "not compiled"}')
r = t.run(C + ["rules", "publish", "--key", KEY, "--version", "d2", d])
t.check_eq(r.returncode, 1, "a JSON file that is not the compiled form is refused")
t.check("forged.json is not compiled Sigma" in r.stderr.decode(), r.stderr.decode())
os.unlink(os.path.join(d, "sigma", "forged.json"))
os.symlink("/etc/passwd", os.path.join(d, "sigma", "link.json"))
r = t.run(C + ["rules", "publish", "--key", KEY, "--version", "d2", d])
t.check_eq(r.returncode, 0, "a symbolic link is not followed: %s" % r.stderr.decode())
t.check("sigma/link.json" not in bundle("d2"), "nor packed")
# A compiled set over the agent's per-file limit (4 MiB) is refused at
# publish, not by every agent.
big = t.path("big")
os.makedirs(os.path.join(big, "sigma", "many"))
for i in range(600):
    with open(os.path.join(big, "sigma", "many", "r%03d.yml" % i), "w") as f:
        f.write("title: Big %d\nid: big-%d\ndescription: %s\nlogsource:\n  product: linux\n"
                "  category: process_creation\ndetection:\n  sel:\n    CommandLine|contains: 'x%d'\n"
                "  condition: sel\nlevel: low\n" % (i, i, "d" * 8000, i))
r = t.run(C + ["rules", "publish", "--key", KEY, "--tenant", "acme", "--version", "big1", big])
t.check_eq(r.returncode, 1, "a compiled set over 4 MiB is refused")
t.check("sigma/many.json would be" in r.stderr.decode() and "over the 4194304 bytes" in
        r.stderr.decode(), "naming the file and the limit: %s" % r.stderr.decode()[-300:])

# More compiled files than an agent loads from one directory (64): refused
# at publish, not by every agent.
wide = t.path("wide")
os.makedirs(os.path.join(wide, "sigma"))
for i in range(65):
    with open(os.path.join(wide, "sigma", "f%02d.json" % i), "w") as f:
        f.write('{"format": "yamori-sigma", "version": 1, "rules": [], "correlations": []}')
r = t.run(C + ["rules", "publish", "--key", KEY, "--tenant", "acme", "--version", "wide1", wide])
t.check_eq(r.returncode, 1, "65 behaviour rule files are refused")
t.check("over the 64 an agent loads" in r.stderr.decode(), "naming the limit: %s"
        % r.stderr.decode()[-300:])
os.unlink(os.path.join(wide, "sigma", "f64.json"))
r = t.run(C + ["rules", "publish", "--key", KEY, "--tenant", "acme", "--version", "wide2", wide])
t.check_eq(r.returncode, 0, "64 are published: %s" % r.stderr.decode()[-300:])

# A default set without behaviour rules is published, with a warning.
yar_only = t.path("yar-only")
os.makedirs(yar_only)
with open(os.path.join(yar_only, "base.yar"), "w") as f:
    f.write("rule Base2 { strings: $a = \"yamori-sigma-test-2\" condition: $a }\n")
r = t.run(C + ["rules", "publish", "--key", KEY, "--version", "d5", yar_only])
t.check_eq(r.returncode, 0, "a default set of YARA rules only is published")
t.check("holds no behaviour rules" in r.stderr.decode(), "with a warning: %s" % r.stderr.decode())
# A default set without YARA rules would empty the agents' YARA set.
r = t.run(C + ["rules", "publish", "--key", KEY, "--version", "d3",
               os.path.join(data, "rules", "acme")])
t.check_eq(r.returncode, 1, "a default set needs YARA rules")
# The project's own rules/ publish as they are: the default behaviour set
# compiles from its YAML to what is committed beside it.
r = t.run(C + ["rules", "publish", "--key", KEY, "--version", "d4",
               os.path.join(yit.SOURCE_DIR, "rules")])
t.check_eq(r.returncode, 0, "rules/ publishes: %s" % r.stderr.decode())
with open(os.path.join(yit.SOURCE_DIR, "rules", "sigma", "linux.json"), "rb") as f:
    committed = json.load(f)


def without_source(j):
    """The compiled form without the rule files' paths (they name where
    the YAML was compiled)."""
    for key in ("rules", "correlations"):
        for x in j.get(key, []):
            x.pop("source", None)
    return j


packed = without_source(json.loads(bundle("d4")["sigma/linux.json"]))
t.check(len(packed["rules"]) > 20, "the default behaviour rules are packed")
t.check(packed == without_source(committed),
        "the default behaviour rules are in the bundle as committed")
t.done()
