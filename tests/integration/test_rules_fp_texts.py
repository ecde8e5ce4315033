"""False-positive gate for security texts: detection rules (YAML, JSON),
advisories and notes that quote reverse shells, credential dumping and
miner commands (tests/data/fp-texts/), and this project's own rules/ and
docs/ trees must match no rule, scanned on demand and when unpacked with
tar under a running agent. The same texts in a form that can run (an
execute bit, a #! line, a script extension) must match, so the gate cannot
pass by matching nothing."""
import json
import os
import shutil
import subprocess
import time
import yit
from yit import get

yit.require_root()
t = yit.Test(__file__)
src = yit.SOURCE_DIR
rules_dir = os.path.join(src, "rules")
texts_dir = os.path.join(src, "tests", "data", "fp-texts")
texts = sorted(os.listdir(texts_dir))
t.check(len(texts) >= 6, "%d security texts in tests/data/fp-texts" % len(texts))


def scan(*paths):
    """yamorictl on-demand scan; returns {path: [rules]} of every file."""
    r = t.run(["yamorictl", "--rules", rules_dir, "--json", "scan"] + list(paths), timeout=600)
    out = {}
    for line in r.stdout.decode("utf-8", "surrogatepass").splitlines():
        o = json.loads(line)
        names = [m["rule"] for m in o.get("matches") or []]
        if o.get("verdict") == "malicious" and not names:
            names = [o.get("rule") or "?"]
        out[o["path"]] = names
    return out


# Documents: a tar archive of the texts (modes as in the checkout, 0644)
# unpacked with tar, as the reported false positive was.
docs = t.path("docs")
os.mkdir(docs)
for name in texts:
    shutil.copyfile(os.path.join(texts_dir, name), os.path.join(docs, name))
    os.chmod(os.path.join(docs, name), 0o644)
tar_docs = t.path("docs.tar")
t.check_eq(t.run(["tar", "-cf", tar_docs, "-C", docs, "."]).returncode, 0, "documents archived")
unpacked = t.path("unpacked")
os.mkdir(unpacked)
t.check_eq(t.run(["tar", "-xf", tar_docs, "-C", unpacked]).returncode, 0, "documents unpacked")

res = scan(texts_dir, unpacked, rules_dir, os.path.join(src, "docs"))
hits = [(p, r) for p, r in res.items() if r]
for p, r in hits:
    print("false positive: %s %s" % (p, r))
t.check(len(res) >= 2 * len(texts) + 10, "scanned the texts, rules/ and docs/ (%d files)" % len(res))
t.check(os.path.join(unpacked, "revshell_bash_devtcp.yml") in res, "the YAML detection rule was scanned")
t.check_eq(len(hits), 0, "no rule matches security texts, rules/ or docs/")

# The same content in forms that run: each must match.
runs = t.path("runs")
os.mkdir(runs)
forms = []
for name in texts:
    with open(os.path.join(texts_dir, name), "rb") as f:
        body = f.read()
    for form, fname, data, mode in (("execute bit", "x-" + name, body, 0o755),
                                    ("#! line", "sb-" + name, b"#!/bin/sh\n" + body, 0o644),
                                    ("script extension", name + ".sh", body, 0o644)):
        p = os.path.join(runs, fname)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, mode)
        forms.append((name, form, p))
res = scan(runs)
for name, form, p in forms:
    t.check(bool(res.get(p)), "%s with %s matches (%s)" % (name, form, res.get(p)))
t.check("Yamori_RevShell_Bash_DevTcp" in res.get(os.path.join(runs, "x-revshell_bash_devtcp.yml"), []),
        "the /dev/tcp YAML text with an execute bit matches the bash reverse shell rule")

# Under a running agent: unpacking the documents with tar raises no alert;
# unpacking the executable one does (trigger "write").
ag = yit.Agent(t)
live = t.path("live")
os.mkdir(live)
t.check_eq(t.run(["tar", "-xf", tar_docs, "-C", live]).returncode, 0, "documents unpacked under the agent")
xdir = t.path("xsrc")
os.mkdir(xdir)
shutil.copyfile(os.path.join(texts_dir, "revshell_bash_devtcp.yml"), os.path.join(xdir, "connect.yml"))
os.chmod(os.path.join(xdir, "connect.yml"), 0o755)
tar_x = t.path("x.tar")
t.check_eq(t.run(["tar", "-cf", tar_x, "-C", xdir, "."]).returncode, 0, "executable text archived")
live_x = t.path("live-x")
os.mkdir(live_x)
t.check_eq(t.run(["tar", "-xf", tar_x, "-C", live_x]).returncode, 0, "executable text unpacked")
target = os.path.join(live_x, "connect.yml")
alert = ag.wait_event(lambda e: get(e, "event.kind") == "alert" and get(e, "file.path") == target,
                      what="alert for the executable text", timeout=60)
t.check(alert is not None and get(alert, "rule.name") == "Yamori_RevShell_Bash_DevTcp",
        "the executable text unpacked by tar is detected")
t.check(alert is not None and get(alert, "yamori.scan.trigger") == "write", "by the write scan")
# The documents were written before the executable one; give the scanner a
# moment more, then no alert may name them.
time.sleep(2)
doc_alerts = [get(e, "file.path") for e in ag.events()
              if get(e, "event.kind") == "alert" and str(get(e, "file.path", "")).startswith(live + "/")]
t.check_eq(doc_alerts, [], "no alert for the documents unpacked with tar")
written = set(get(e, "file.path") for e in ag.events() if get(e, "event.action") == "modification")
t.check(any(str(p).startswith(live + "/") for p in written),
        "the agent saw the documents being written")
t.done()
