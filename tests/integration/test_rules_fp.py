"""False-positive gate: the default rules match nothing in this machine's
/usr and /etc, in this project's rules/ and docs/, or in the security texts
of tests/data/fp-texts/ (detection rules and advisories that quote attack
commands; test_rules_fp_texts.py checks those quickly, with a running
agent too)."""
import json
import os
import yit

t = yit.Test(__file__)
rules_dir = os.path.join(yit.SOURCE_DIR, "rules")
trees = ["/usr", "/etc", rules_dir, os.path.join(yit.SOURCE_DIR, "docs"),
         os.path.join(yit.SOURCE_DIR, "tests", "data", "fp-texts")]
r = t.run(["yamorictl", "--rules", rules_dir, "--json", "scan"] + trees, timeout=1800)
hits, files, errors = [], 0, 0
for line in r.stdout.decode("utf-8", "surrogatepass").splitlines():
    o = json.loads(line)
    files += 1
    if o["verdict"] == "malicious":
        hits.append((o["path"], o.get("rule")))
print("scanned %d files in %s" % (files, " ".join(trees)))
for h in hits[:20]:
    print("false positive: %s (%s)" % h)
t.check(files > 10000, "scanned a real system (%d files)" % files)
t.check_eq(len(hits), 0, "no matches in /usr, /etc, rules/, docs/ and the security texts")
t.done()
