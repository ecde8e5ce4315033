"""False-positive gate: the default rules match nothing in this machine's
/usr and /etc."""
import json
import os
import yit

t = yit.Test(__file__)
rules_dir = os.path.join(yit.SOURCE_DIR, "rules")
r = t.run(["yamorictl", "--rules", rules_dir, "--json", "scan", "/usr", "/etc"], timeout=1800)
hits, files, errors = [], 0, 0
for line in r.stdout.decode("utf-8", "surrogatepass").splitlines():
    o = json.loads(line)
    files += 1
    if o["verdict"] == "malicious":
        hits.append((o["path"], o.get("rule")))
print("scanned %d files in /usr and /etc" % files)
for h in hits[:20]:
    print("false positive: %s (%s)" % h)
t.check(files > 10000, "scanned a real system (%d files)" % files)
t.check_eq(len(hits), 0, "no matches in /usr and /etc")
t.done()
