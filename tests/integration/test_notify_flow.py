"""Notifications end to end through the console's own incident code: a
company's settings written through the dashboard API, alerts sent by an
enrolled (protocol-level) agent become one incident, and every step of it
reaches a real SMTP server (STARTTLS) once per recipient:
  - the first alert: one 「危険なファイルを検知しました」 e-mail per
    recipient, with the PC, the file and the help desk (several lines);
  - more alerts of the same rule: no more e-mail (one per incident, not
    per alert);
  - acknowledged and resolved from the dashboard: one e-mail each;
  - a quarantine reported in the batch after the alert: the e-mail,
    still waiting its grace, says the file was isolated;
  - the incident's timeline records each notification, and the dashboard
    shows when the incident was first notified."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import yit  # noqa: E402
import mailutil  # noqa: E402  (skips when aiosmtpd or cryptography is missing)
import agentsim  # noqa: E402

t = yit.Test(__file__)
certs = mailutil.make_certs(t.dir)
port = yit.free_port()
smtp = mailutil.SmtpSink(port, certs)
smtp.start()
t.on_cleanup(smtp.stop)

os.environ["YAMORI_NOTIFY_POLL_MS"] = "200"
os.environ["YAMORI_NOTIFY_GRACE_MS"] = "2000"  # the wait for a quarantine report
con = yit.Console(t, extra=["--smtp-url", "smtp://127.0.0.1:%d" % port,
                            "--smtp-from", "alerts@provider.example.jp", "--smtp-ca", certs["ca.pem"]])
admin = con.ui()
st, body = admin.post("/api/ui/tenants", {"name": "shop", "display": "やもり商店"})
t.check_eq(st, 200, "tenant created from the dashboard")
shop = body["id"]
HELPDESK = "見守りデスク 0120-000-111\n平日 9:00〜18:00"
st, _ = admin.post("/api/ui/tenants/%d/settings" % shop,
                   {"emails": ["owner@shop.example.jp", "clerk@shop.example.jp"],
                    "helpdesk": HELPDESK, "lang": "ja"})
t.check_eq(st, 200, "recipients and help desk set from the dashboard")
st, tok = admin.post("/api/ui/tenants/%d/tokens" % shop, {"expires_days": 1, "max_uses": 1})
t.check_eq(st, 200, "enrollment token")
pc = agentsim.SimAgent(con, tok["token"], host_name="レジ-pc")
now = int(time.time() * 1000)
path = "/home/yamada/ダウンロード/請求書.pdf.exe"
pc.send("alerts", [agentsim.alert(now, rule="EICAR_Test_File", path=path, title="EICAR test file")])

t.wait_for(lambda: len(smtp.received) >= 2, what="the first two e-mails")
inc = con.query("SELECT id FROM incidents WHERE tenant_id = ?", shop)
t.check_eq(len(inc), 1, "one incident")
inc_id = inc[0][0] if inc else 0
for addr in ("owner@shop.example.jp", "clerk@shop.example.jp"):
    got = smtp.to(addr)
    t.check_eq(len(got), 1, "%s got one e-mail" % addr)
    if got:
        m = got[0]
        t.check_eq(m.subject, "【Yamori】PC「レジ-pc」で危険なファイルを検知しました", "subject")
        body = m.body()
        t.check("PC名: レジ-pc" in body and path in body, "the body names the PC and the file")
        t.check("見守りデスク 0120-000-111\n平日 9:00〜18:00\n" in body.replace("\r\n", "\n"),
                "the help desk contact keeps its lines: %r" % body[-400:])
        t.check("#/incidents/%d" % inc_id in body, "the link names the incident")
        t.check(m.tls, "sent over STARTTLS")

first = smtp.received[:2]
t.check(len(first) == 2 and first[0].session == first[1].session,
        "the e-mails of one batch share one SMTP connection")

# More alerts of the same infection: still one incident, no more e-mail.
pc.send("alerts", [agentsim.alert(now + i, rule="EICAR_Test_File", path=path) for i in range(1, 6)])
time.sleep(2)
t.check_eq(con.query("SELECT count FROM incidents WHERE id = ?", inc_id), [(6,)],
           "six alerts counted in the incident")
t.check_eq(len(smtp.received), 2, "no e-mail for alerts of an incident already notified")

for state, words in (("acknowledged", "担当者が対応を開始しました"), ("resolved", "対応が完了しました")):
    n0 = len(smtp.received)
    st, _ = admin.post("/api/ui/incidents/%d" % inc_id, {"state": state})
    t.check_eq(st, 200, "incident %s from the dashboard" % state)
    t.wait_for(lambda: len(smtp.received) >= n0 + 2, what="%s e-mails" % state)
    new = smtp.received[n0:]
    t.check(len(new) == 2 and all(words in m.subject for m in new),
            "one %s e-mail per recipient: %r" % (state, [m.subject for m in new]))



def timeline():
    return con.query("SELECT detail FROM incident_log WHERE incident_id = ? AND what = 'notified'"
                     " ORDER BY id", inc_id)


t.wait_for(lambda: len(timeline()) >= 6, what="six notifications in the timeline")
log = timeline()
t.check_eq(len(log), 6, "six notifications in the timeline")
t.check("email owner@shop.example.jp (created)" in [d for (d,) in log], "timeline detail")
# A second PC: its agent reports the quarantine in the batch after the
# alert; the waiting message is rendered again and says the file was
# isolated.
n0 = len(smtp.received)
tok2 = admin.post("/api/ui/tenants/%d/tokens" % shop, {"expires_days": 1, "max_uses": 1})[1]
pc2 = agentsim.SimAgent(con, tok2["token"], host_name="事務所-pc")
path2 = "/home/sato/Downloads/setup.exe"
pc2.send("alerts", [agentsim.alert(now, rule="EICAR_Test_File", path=path2, title="EICAR test file")])
pc2.send("alerts", [{"@timestamp": agentsim.iso(now + 1),
                     "event": {"kind": "event", "dataset": "yamori.response",
                               "action": "quarantine", "outcome": "success"},
                     "file": {"path": path2}, "rule": {"name": "EICAR_Test_File"}}])
t.wait_for(lambda: len(smtp.received) >= n0 + 2, what="the second PC's e-mails")
new = smtp.received[n0:]
t.check(len(new) == 2 and all("自動的に隔離しました" in m.body() and "事務所-pc" in m.subject
                              for m in new),
        "a quarantine reported after the alert: the e-mail says the file was isolated")

month = time.strftime("%Y-%m", time.gmtime(now / 1000 + 9 * 3600))
st, rep = admin.get("/api/ui/tenants/%d/report?month=%s" % (shop, month))
got = [i for i in (rep or {}).get("incidents", []) if i.get("id") == inc_id]
t.check(st == 200 and got and got[0].get("notified_ms") and now <= got[0]["notified_ms"],
        "the monthly report shows when the incident was first notified: %r" % got)
time.sleep(1)
t.check_eq(len(smtp.received), 8, "nothing else was sent")
t.done()
