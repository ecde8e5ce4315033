"""The default rules against their data-driven cases (harmless synthetic
samples stored base64-encoded in tests/rules/cases.json), scanned by
yamorictl without an agent."""
import base64
import json
import os
import yit

t = yit.Test(__file__)
cases_path = os.path.join(yit.SOURCE_DIR, "tests", "rules", "cases.json")
with open(cases_path) as f:
    cases = json.load(f)
t.check(len(cases) >= 20, "%d cases" % len(cases))
rules_dir = os.path.join(yit.SOURCE_DIR, "rules")
sample_dirs = []
for i, c in enumerate(cases):
    d = t.path("case%03d" % i)
    os.mkdir(d)
    name = c.get("filename", "sample.bin")
    with open(os.path.join(d, name), "wb") as f:
        f.write(base64.b64decode(c["content_b64"]))
    # The scanner reads the execute bit into is_executable.
    os.chmod(os.path.join(d, name), 0o755 if c.get("executable") else 0o644)
    sample_dirs.append((c, os.path.join(d, name)))

r = t.run(["yamorictl", "--rules", rules_dir, "--json", "scan", t.dir], timeout=300)
results = {}
for line in r.stdout.decode("utf-8", "surrogatepass").splitlines():
    o = json.loads(line)
    rules = [m["rule"] for m in o.get("matches", [])] if o.get("matches") else []
    if o.get("rule") and o["rule"] not in rules:
        rules.append(o["rule"])
    results[o["path"]] = rules
rules_text = "".join(open(os.path.join(rules_dir, f)).read() for f in os.listdir(rules_dir)
                     if f.endswith((".yar", ".yara")))
for c, path in sample_dirs:
    got = results.get(path)
    if got is None:
        t.check(False, "%s: not scanned" % c["name"])
        continue
    if c["expect"] == "match":
        t.check(c["rule"] in got, "%s: %s matches (got %s)" % (c["name"], c["rule"], got))
    else:
        t.check(c["rule"] not in got, "%s: %s does not match (got %s)" % (c["name"], c["rule"], got))
# Every rule has at least one positive case.
import re
names = set(re.findall(r"^\s*rule\s+(Yamori_\w+)", rules_text, re.M))
covered = set(c["rule"] for c in cases if c["expect"] == "match")
for n in sorted(names):
    t.check(n in covered, "rule %s has a positive case" % n)
t.done()
