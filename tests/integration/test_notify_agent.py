"""A real detection becomes a real e-mail: the agent (kernel sensors, YARA,
quarantine by the default policy) sees the EICAR test file written on this
machine, the console turns the alert into an incident, and the company's
recipient gets one e-mail through a real STARTTLS SMTP server, in Japanese,
naming the PC, the file, that the file was isolated, and the help desk."""
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import yit  # noqa: E402

yit.require_root()
import mailutil  # noqa: E402  (skips when aiosmtpd or cryptography is missing)

t = yit.Test(__file__)
certs = mailutil.make_certs(t.dir)
port = yit.free_port()
smtp = mailutil.SmtpSink(port, certs)
smtp.start()
t.on_cleanup(smtp.stop)

os.environ["YAMORI_NOTIFY_POLL_MS"] = "200"
con = yit.Console(t, extra=["--smtp-url", "smtp://127.0.0.1:%d" % port,
                            "--smtp-from", "alerts@provider.example.jp", "--smtp-ca", certs["ca.pem"]])
con.tenant("shop")
r = con.cli("settings", "set", "--tenant", "shop", "--emails", "owner@shop.example.jp",
            "--helpdesk", "見守りデスク 0120-000-111")
t.check(r.returncode == 0, "settings saved")
token = con.token("shop")
# Behaviour rules off: the agent watches the whole machine, and other tests
# running beside this one (a program started from /tmp, ...) would raise
# behaviour alerts, hence incidents and messages of their own.
ag = yit.Agent(t, {"spool": {"bulk_flush_ms": 200}, "behaviour": {"enabled": False}})
r = t.run(["yamorictl", "--config", ag.conf_path, "enroll"], env=dict(os.environ, YAMORI_TOKEN=token))
t.check_eq(r.returncode, 0, "agent enrolled")

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
d = t.path("downloads")
os.mkdir(d)
target = os.path.join(d, "invoice.com")
with open(target, "wb") as f:
    f.write(EICAR)

t.wait_for(lambda: smtp.to("owner@shop.example.jp"), timeout=90, what="the e-mail of the detection")
got = smtp.to("owner@shop.example.jp")
host = socket.gethostname()
if got:
    m = got[0]
    t.check_eq(m.subject, "【Yamori】PC「%s」で危険なファイルを検知しました" % host,
               "Japanese subject naming this PC")
    body = m.body()
    t.check("ファイルの場所: " + target in body, "the body names the file")
    t.check("見守りデスク 0120-000-111" in body, "the body names the help desk")
    t.check("自動的に隔離しました" in body, "the body says the file was isolated:\n" + body)
    t.check(m.tls, "over STARTTLS")
inc = con.query("SELECT id, rule FROM incidents")
t.check_eq(len(inc), 1, "one incident: %r" % inc)
t.check(not os.path.exists(target), "the file was quarantined")
t.wait_for(lambda: con.query("SELECT count(*) FROM notify_outbox WHERE state = 'sent'")[0][0],
           what="the outbox row marked sent")
t.check_eq(con.query("SELECT count(*) FROM notify_outbox")[0][0], 1, "one message in the outbox")
t.check_eq(len(smtp.received), 1, "one e-mail in all")
t.done()
