"""Rules reload: a broken rule is refused with its file and line named, and
the previous rules keep scanning; a good reload takes effect."""
import os
import shutil
import yit
from yit import get

yit.require_root()
t = yit.Test(__file__)
rules = t.path("rules")
shutil.copytree(os.path.join(yit.SOURCE_DIR, "rules"), rules)
ag = yit.Agent(t, {"rules": {"dirs": [rules]}, "policy": {"file": "detect", "exec": "off"}})

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
with open(t.path("e1.com"), "wb") as f:
    f.write(EICAR)

rc, lines = ag.ctl_json("status")
v1 = lines[0]["rules"]["version"]

with open(os.path.join(rules, "zz_broken.yar"), "w") as f:
    f.write("rule Good { condition: true }\n\nrule Broken {\n  strings: $a = \"x\"\n  condition: $b\n}\n")
rc, lines = ag.ctl_json("rules", "reload")
t.check(rc != 0 and lines and not lines[0]["ok"], "broken reload refused")
msg = lines[0].get("error", "") if lines else ""
import re
t.check(re.search(r"zz_broken\.yar:[56]: undefined string", msg) is not None,
        "error names file and line (%s)" % msg)
rc, lines = ag.ctl_json("status")
t.check_eq(lines[0]["rules"]["version"], v1, "old rules still active")
rc, lines = ag.ctl_json("scan", t.path("e1.com"))
t.check_eq(rc, 1, "old rules still detect (exit 1)")
t.check(any(l.get("rule") == "Yamori_EICAR_Test_File" for l in lines), "EICAR found with old rules")

os.unlink(os.path.join(rules, "zz_broken.yar"))
with open(os.path.join(rules, "zz_extra.yar"), "w") as f:
    f.write('rule Yamori_Test_Extra { meta: severity = "low" strings: $a = "yamori-reload-marker-7f3a" condition: $a }\n')
rc, lines = ag.ctl_json("rules", "reload")
t.check(rc == 0 and lines[0]["ok"], "good reload accepted")
t.check(lines[0]["version"] != v1, "new rules version")
with open(t.path("marker.txt"), "w") as f:
    f.write("yamori-reload-marker-7f3a")
rc, lines = ag.ctl_json("scan", t.path("marker.txt"))
t.check(rc == 1 and any(l.get("rule") == "Yamori_Test_Extra" for l in lines), "new rule active")

# Compiled rule files are never loaded: a .yarc in the rules dir is ignored.
with open(os.path.join(rules, "evil.yarc"), "wb") as f:
    f.write(b"YARA\x00garbage")
rc, lines = ag.ctl_json("rules", "reload")
t.check(rc == 0, "a .yarc file is ignored, not loaded")
t.done()
