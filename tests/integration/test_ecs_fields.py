"""Every field the schema declares, and every field an event carries, is an
ECS 9.4 field of the same type or lives under yamori.*; docs/events.md is
the generated reference."""
import csv
import os
import subprocess
import yit
from yit import get

t = yit.Test(__file__)
ecs = {}
csv_path = os.path.join(yit.SOURCE_DIR, "tests", "data", "ecs-9.4-fields.csv")
with open(csv_path, newline="") as f:
    t.check(f.readline().startswith("# Source: Elastic Common Schema 9.4"), "the ECS list names its source")
    for row in csv.DictReader(f):
        ecs[row["Field"]] = row["Type"]
t.check(len(ecs) > 2000, "ECS field list loaded (%d fields)" % len(ecs))

doc = t.run(["yamorid", "--events-doc"]).stdout.decode()
schema = {}
for line in doc.splitlines():
    if line.startswith("| `"):
        cols = [c.strip() for c in line.strip("|").split("|")]
        schema[cols[0].strip("`")] = cols[1].replace(" (array)", "")
t.check(len(schema) > 40, "schema has %d fields" % len(schema))
for name, typ in sorted(schema.items()):
    if name.startswith("yamori."):
        continue
    t.check(ecs.get(name) == typ, "%s is ECS type %s (ECS says %s)" % (name, typ, ecs.get(name)))

with open(os.path.join(yit.SOURCE_DIR, "docs", "events.md")) as f:
    t.check(doc in f.read(), "docs/events.md holds the generated field table")

if os.geteuid() == 0:
    # Runs beside other tests: alert only, never act on their files.
    ag = yit.Agent(t, {"policy": {"exec": "off", "file": "detect"}})
    p = t.path("f.txt")
    with open(p, "w") as fh:
        fh.write("x")
    os.rename(p, p + ".2")
    os.unlink(p + ".2")
    r = subprocess.run(["/bin/sh", "-c", "exit 3"])
    ag.wait_event(lambda e: get(e, "event.action") == "deletion" and get(e, "file.path") == p + ".2", what="deletion")
    ag.wait_event(lambda e: get(e, "event.action") == "end" and get(e, "process.exit_code") == 3, what="end")
    names = set()
    for e in ag.events():
        names.update(n for n, _ in yit.leaf_fields(e))
    t.check(len(names) > 30, "events carry %d distinct fields" % len(names))
    for n in sorted(names):
        t.check(n in schema, "emitted field %s is declared in the schema" % n)
else:
    print("SKIP (part): emitted-field check needs root for the sensors")
t.done()
