"""Signed rules bundles: a tenant's own rules go live on top of the default
set within one check-in; a bundle with a broken rule is refused (reported to
the console with file and line) and the previous rules keep scanning; a new
default set replaces the installed one and the tenant's rules stay on top.
A bundle signed for another company is refused even when the console
offers it, and the company's own rules keep scanning.
The agent never loads compiled YARA rules from the network: bundles hold
YARA source, compiled on the PC. Behaviour rules travel in the same bundle
as sigma/NAME.json, compiled from Sigma YAML by `rules publish`, and land
unpacked in the bundle's directory."""
import json
import os
import sqlite3
import subprocess
import time
import yit
import updutil

yit.require_root()
t = yit.Test(__file__)
s = updutil.Setup(t, window=60)
s.wait_running("0.1.0", timeout=30)
t.wait_for(lambda: s.console_state().get("running") == "0.1.0", timeout=60,
           what="first check-in", interval=0.2)

MARK_T = "yamori-tenant-marker-%d" % os.getpid()
MARK_D = "yamori-default-marker-%d" % os.getpid()
MARK_B = "yamori-other-company-marker-%d" % os.getpid()
for name, data in (("tenant.txt", MARK_T.encode()),
                   ("default.txt", MARK_D.encode()),
                   ("other.txt", MARK_B.encode())):
    with open(t.path(name), "wb") as f:
        f.write(data)


def scan(name):
    r = t.run(["yamorictl", "--config", s.conf_path, "--json", "scan", t.path(name)])
    return {json.loads(l).get("rule") for l in r.stdout.decode().splitlines() if l} - {None}


def status_rules():
    """(count, files) of the rules the agent scans with. (Malware samples
    are not used here: other agents on a shared test machine may quarantine
    them.)"""
    r = t.run(["yamorictl", "--config", s.conf_path, "--json", "status"])
    j = json.loads(r.stdout.decode().splitlines()[0])
    return j["rules"]["count"], j["rules"]["files"]


def rules_dir(name, files):
    d = t.path(name)
    os.makedirs(d)
    for fn, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(d, fn)), exist_ok=True)
        with open(os.path.join(d, fn), "w") as f:
            f.write(text)
    return d


def publish(d, *args):
    r = s.con.cli("rules", "publish", "--key", os.path.join(s.keys, "release.key"), *args, d)
    t.check_eq(r.returncode, 0, "published %s: %s" % (d, r.stderr.decode()))
    return r.stdout.decode().split()[1]


installed = status_rules()


def behaviour_counters():
    r = t.run(["yamorictl", "--config", s.conf_path, "--json", "status"])
    return json.loads(r.stdout.decode().splitlines()[0])["counters"]


beh_installed = behaviour_counters().get("behaviour_rules", 0)
t.check(beh_installed > 10, "the default behaviour rules of rules/ are loaded (%s)" % beh_installed)
t.check(installed[0] > 10, "the installed default set is active: %s" % (installed,))
t.check_eq(scan("tenant.txt"), set(), "the tenant marker is not detected yet")

# The tenant's own rule, on top of the default set.
SIGMA_ID = "5d0c7f6e-2b1a-4c3d-9e8f-7a6b5c4d3e2f"
SIGMA_YML = ("title: Acme marker started\nid: %s\nlevel: medium\ntags:\n  - attack.t1059.004\n"
             "logsource:\n  product: linux\n  category: process_creation\ndetection:\n"
             "  sel:\n    CommandLine|contains: '%s'\n  condition: sel\n" % (SIGMA_ID, MARK_T))
tenant1 = rules_dir("tenant1", {"acme.yar": 'rule Acme_Marker { strings: $a = "%s" '
                                            'condition: $a }\n' % MARK_T,
                                "sigma/acme/marker.yml": SIGMA_YML})
v1 = publish(tenant1, "--tenant", "acme")
t0 = time.monotonic()
t.wait_for(lambda: s.console_state().get("rules", {}).get("tenant") == v1, timeout=40,
           what="tenant bundle %s live" % v1, interval=0.1)
t.check(time.monotonic() - t0 < 25, "live within one check-in (interval 10 s)")
t.check("Acme_Marker" in scan("tenant.txt"), "the tenant rule detects")
t.check_eq(status_rules(), (installed[0] + 1, installed[1] + 1),
           "the default set and the tenant's rule are active together")
# The behaviour rules arrived compiled, unpacked beside the YARA rules.
compiled = os.path.join(s.state_dir, "rules-bundles", "tenant-" + v1, "sigma", "acme.json")
t.check(os.path.isfile(compiled) and not os.path.islink(compiled),
        "the bundle's behaviour rules are unpacked as sigma/acme.json")
with open(compiled) as f:
    j = json.load(f)
t.check_eq((j.get("format"), [r["id"] for r in j.get("rules", [])]), ("yamori-sigma", [SIGMA_ID]),
           "compiled by the console from the YAML")
# ... and the agent loads them, beside the default behaviour rules of its
# configured rules directory (this setup runs without sensors: the alerts
# themselves are it.behaviour's).
k = behaviour_counters()
t.check_eq(k.get("behaviour_files"), 2, "behaviour rules of rules/ and of the bundle loaded")
t.check_eq(k.get("behaviour_rules"), beh_installed + 1, "the default rules and the bundle's one")

# A bundle signed for another company (beta), offered to acme's agent (its
# row moved to acme in the console's database, as a console fault or an
# intruder in the database would): refused, acme's rules stay.
s.con.tenant("beta")
other = rules_dir("other", {"beta.yar": 'rule Beta_Marker { strings: $a = "%s" '
                                        'condition: $a }\n' % MARK_B})
vb = publish(other, "--tenant", "beta")
with sqlite3.connect(os.path.join(s.con.data, "yamori.db"), timeout=30) as db:
    n = db.execute("UPDATE rule_bundles SET tenant_id = (SELECT id FROM tenants WHERE name = 'acme')"
                   " WHERE version = ?", (vb,)).rowcount
t.check_eq(n, 1, "beta's bundle %s now offered to acme" % vb)
got = t.wait_for(lambda: s.console_state().get("rules", {}).get("failed") == vb and
                 s.console_state()["rules"].get("reason"), timeout=40,
                 what="another company's bundle refused", interval=0.1)
t.check_eq(got, "wrong_tenant", "refused as another company's bundle")
t.check_eq(s.console_state()["rules"].get("tenant"), v1, "acme's bundle stays")
t.check("Acme_Marker" in scan("tenant.txt"), "acme's rules keep scanning")
t.check_eq(scan("other.txt"), set(), "beta's rule is not loaded")
t.check('signed for company "beta", this PC is in "acme"' in s.launcher.stderr_text(),
        "the agent's log names both companies")
bundles = os.listdir(os.path.join(s.state_dir, "rules-bundles"))
t.check(not any(vb in n for n in bundles), "nothing of %s unpacked: %s" % (vb, bundles))

# A broken bundle is refused; the previous rules keep scanning.
broken = rules_dir("broken", {"acme.yar": 'rule Acme_Marker { strings: $a = "%s" condition: $a }\n'
                                          'rule Broken {\n  strings: $a = "x"\n  condition: $b\n}\n'
                                          % MARK_T})
v2 = publish(broken, "--tenant", "acme")
got = t.wait_for(lambda: s.console_state().get("rules", {}).get("failed") == v2 and
                 s.console_state()["rules"].get("reason"), timeout=40,
                 what="broken bundle refused", interval=0.1)
t.check(got and got.startswith("rules_compile:") and "acme.yar:5: undefined string" in got,
        "the console shows the compile error with file and line: %s" % got)
t.check_eq(s.console_state()["rules"].get("tenant"), v1, "the previous tenant bundle stays")
t.check("Acme_Marker" in scan("tenant.txt"), "the previous rules keep scanning")

# A new default set replaces the installed rules; the tenant's stay on top.
default2 = rules_dir("default2", {"base.yar": 'rule Default_Marker { strings: $a = "%s" '
                                               'condition: $a }\n' % MARK_D})
v3 = publish(default2)
t.wait_for(lambda: s.console_state().get("rules", {}).get("default") == v3, timeout=40,
           what="default bundle %s live" % v3, interval=0.1)
t.check("Default_Marker" in scan("default.txt"), "the new default rule detects")
t.check_eq(status_rules(), (2, 2), "the installed rules were replaced by the bundle")
t.check("Acme_Marker" in scan("tenant.txt"), "the tenant rule is still on top")

# After a restart the agent scans with the accepted bundles.
pid, _ = s.child()
os.kill(pid, 15)
t.wait_for(lambda: s.child()[0] not in (None, pid), timeout=30, what="agent restarted",
           interval=0.2)
time.sleep(1)
t.wait_for(lambda: "Default_Marker" in scan("default.txt"), timeout=30,
           what="bundles still active after a restart", interval=0.5)
t.check("Acme_Marker" in scan("tenant.txt"), "tenant bundle active after a restart")
bundles = os.listdir(os.path.join(s.state_dir, "rules-bundles"))
t.check(all(not n.endswith((".yarc",)) for n in bundles), "no compiled rules on disk: %s" % bundles)
t.done()
