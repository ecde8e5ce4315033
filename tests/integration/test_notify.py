"""Notifications reach a real SMTP server (STARTTLS, AUTH) and a webhook.

A real yamori-console sends through libcurl to a local aiosmtpd server that
requires STARTTLS with a throwaway CA made here, and POSTs to a local HTTP
receiver. Incidents are written into the console's database directly (the
incident engine is tested elsewhere) and enqueued with `notify enqueue`,
which calls the same function the incident code calls. Checks:
  - the SMTP server is down at first: the message is retried and delivered
    once it comes up; the webhook answers 503 once and gets the message again;
  - exactly one e-mail per recipient, also when the change is enqueued twice;
  - the Japanese subject (RFC 2047 decoded) and a body that names the PC,
    the file, what to do and the help desk, with the incident link;
  - the webhook JSON carries the incident and a valid HMAC-SHA256 signature;
  - an English tenant gets English text; state changes get their own text;
  - a hostile host name with CR/LF, a Bcc line and <script> adds no header
    and no recipient;
  - a webhook answering a redirect is not followed and fails at once;
  - smtp:// to a server that offers no STARTTLS, or whose certificate is
    not trusted, gets nothing; smtps:// works;
  - the SMTP password never appears in the console's output; the delivery
    is logged in incident_log.
"""

import hashlib
import hmac
import http.server
import json
import os
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import yit  # noqa: E402
import mailutil  # noqa: E402  (skips when aiosmtpd or cryptography is missing)

t = yit.Test(__file__)

SMTP_USER = "yamori-relay"
SMTP_PASSWORD = "pw-7f3c9a-never-logged"
HOOK_SECRET = "hook-secret-42"
HELPDESK = "ヤモリ見守りデスク 0120-123-456（平日 9:00〜18:00）"
HELPDESK_EN = "Yamori help desk +81-3-0000-0000"

certs = mailutil.make_certs(t.dir)
smtp_port = yit.free_port()
smtp = mailutil.SmtpSink(smtp_port, certs, SMTP_USER, SMTP_PASSWORD)
received = smtp.received

# ---------------------------------------------------------------- webhook receiver

hooks = []  # (path, headers dict, body bytes, status answered)


class HookHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(min(n, 1 << 20))
        if self.path.startswith("/redirect"):
            status = 302  # must not be followed
        elif not [h for h in hooks if h[0].startswith("/yamori")]:
            status = 503  # the first delivery fails: the console must retry it
        else:
            status = 200
        hooks.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body, status))
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


hook_srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HookHandler)
threading.Thread(target=hook_srv.serve_forever, daemon=True).start()
t.on_cleanup(hook_srv.shutdown)
hook_url = "http://127.0.0.1:%d/yamori/hook?token=abc" % hook_srv.server_address[1]

# ---------------------------------------------------------------- console

os.environ["YAMORI_SMTP_PASSWORD"] = SMTP_PASSWORD
os.environ["YAMORI_NOTIFY_BACKOFF_MS"] = "300"
os.environ["YAMORI_NOTIFY_POLL_MS"] = "200"
os.environ["YAMORI_NOTIFY_GRACE_MS"] = "1"  # no wait for a quarantine report
con = yit.Console(t, extra=["--smtp-url", "smtp://127.0.0.1:%d" % smtp_port,
                            "--smtp-from", "alerts@provider.example.jp",
                            "--smtp-user", SMTP_USER, "--smtp-ca", certs["ca.pem"]])
r = con.cli("tenant", "add", "--display", "株式会社アクメ商店", "acme")
t.check(r.returncode == 0, "tenant acme added")
con.tenant("globex")
r = con.cli("settings", "set", "--tenant", "acme", "--emails",
            "owner@acme.example.jp, staff@acme.example.jp", "--webhook", hook_url,
            "--webhook-secret", HOOK_SECRET, "--helpdesk", HELPDESK)
t.check(r.returncode == 0, "acme settings saved: " + r.stderr.decode())
redirect_url = "http://127.0.0.1:%d/redirect" % hook_srv.server_address[1]
r = con.cli("settings", "set", "--tenant", "globex", "--lang", "en", "--emails",
            "boss@globex.example.com", "--helpdesk", HELPDESK_EN, "--webhook", redirect_url)
t.check(r.returncode == 0, "globex settings saved")
r = con.cli("settings", "set", "--tenant", "acme", "--emails", "a@b.example, evil@x\r\nRCPT TO:<y@z>")
t.check(r.returncode != 0, "an address with CR/LF is refused by settings set")
r = con.cli("settings", "set", "--tenant", "acme", "--webhook", "file:///etc/passwd")
t.check(r.returncode != 0, "a webhook that is not http(s) is refused")

NOW = int(time.time() * 1000)
HOSTILE = "evil\r\nBcc: victim@example.org\r\nX-Injected: 1 <script>alert(1)</script>"


def write_db(sql, *params):
    c = sqlite3.connect(os.path.join(con.data, "yamori.db"), timeout=30)
    try:
        cur = c.execute(sql, params)
        c.commit()
        return cur.lastrowid
    finally:
        c.close()


def add_agent(n, tenant_id, host):
    aid = ("%08d" % n) + "-0000-4000-8000-000000000000"
    write_db("INSERT INTO agents(id, tenant_id, host_name, secret_hash, enrolled_at, last_seen)"
             " VALUES(?, ?, ?, ?, 0, ?)", aid, tenant_id, host, b"\0" * 32, NOW - 3600 * 1000)
    return aid


def add_incident(tenant_id, agent, kind="malware", path="/home/taro/Downloads/invoice.pdf.exe"):
    return write_db("INSERT INTO incidents(tenant_id, agent_id, kind, rule, title, severity,"
                    " first_ms, last_ms, file_path, updated_ms) VALUES(?, ?, ?, ?, ?, 'high',"
                    " ?, ?, ?, ?)", tenant_id, agent, kind,
                    "EICAR_Test_File" if kind == "malware" else "",
                    "EICAR test file" if kind == "malware" else "", NOW, NOW,
                    path if kind == "malware" else "", NOW)


acme_id = con.query("SELECT id FROM tenants WHERE name = 'acme'")[0][0]
globex_id = con.query("SELECT id FROM tenants WHERE name = 'globex'")[0][0]
pc01 = add_agent(1, acme_id, "pc-01")
inc1 = add_incident(acme_id, pc01)


def enqueue(inc, change):
    r = con.cli("notify", "enqueue", "--incident", str(inc), "--change", change)
    t.check(r.returncode == 0, "incident %d %s enqueued: %s" % (inc, change, r.stderr.decode()))


def outbox(inc, change=None):
    q = ("SELECT channel, recipient, state, attempts, last_error FROM notify_outbox"
         " WHERE incident_id = ?" + (" AND change = ?" if change else "") + " ORDER BY id")
    return con.query(q, *((inc, change) if change else (inc,)))


def mails_to(addr):
    return smtp.to(addr)


# ---- 1. SMTP down: retried, then delivered once it is up ----
enqueue(inc1, "created")
t.wait_for(lambda: all(r[3] >= 2 for r in outbox(inc1) if r[0] == "email") and outbox(inc1),
           what="two failed attempts while the SMTP server is down")
rows = outbox(inc1)
t.check_eq(sorted((r[0], r[1]) for r in rows),
           [("email", "owner@acme.example.jp"), ("email", "staff@acme.example.jp"),
            ("webhook", hook_url)], "one outbox row per recipient and one for the webhook")
t.check(all(r[2] == "pending" and r[4] for r in rows if r[0] == "email"),
        "while the server is down the e-mails stay pending with the error: %r" % rows)
smtp.start()
t.on_cleanup(smtp.stop)
t.wait_for(lambda: len(received) >= 2, timeout=30, what="two e-mails delivered after SMTP is up")
t.wait_for(lambda: all(r[2] == "sent" for r in outbox(inc1)), timeout=30,
           what="outbox rows of incident 1 sent")
enqueue(inc1, "created")  # the same change again: nothing new
time.sleep(1.5)
t.check_eq(len(outbox(inc1)), 3, "enqueuing the same change twice adds no rows")
t.check_eq(len(received), 2, "exactly one e-mail per recipient")

owner = mails_to("owner@acme.example.jp")
t.check_eq(len(owner), 1, "owner got one e-mail")
if owner:
    m = owner[0]
    content, msg = m.content, m.msg
    t.check_eq(m.subject, "【Yamori】PC「pc-01」で危険なファイルを検知しました",
               "Japanese subject (RFC 2047 decoded)")
    raw_subject = content.split(b"\r\nSubject:", 1)[1].split(b"\r\nDate:", 1)[0]
    t.check(raw_subject.isascii() and b"=?UTF-8?B?" in raw_subject,
            "the Subject header is RFC 2047 encoded ASCII")
    t.check_eq(m.rcpts, ["owner@acme.example.jp"], "one envelope recipient")
    t.check_eq(m.mail_from, "alerts@provider.example.jp", "envelope sender")
    t.check(m.tls, "the message went over STARTTLS")
    t.check(m.authenticated, "the console authenticated (SMTP AUTH) before sending")
    body = m.body()
    for want, what in [("PC名: pc-01", "the PC"), ("/home/taro/Downloads/invoice.pdf.exe", "the file"),
                       ("EICAR test file", "the rule title"), ("今すぐしてほしいこと", "what to do"),
                       ("電源は切らずに", "keep the PC on"), ("LANケーブル", "how to disconnect"),
                       ("添付ファイル", "attachments"), (HELPDESK, "the help desk contact"),
                       ("株式会社アクメ商店 ご担当者様", "the company"),
                       (con.url + "/#/incidents/%d" % inc1, "the link to the incident"),
                       ("（日本時間）", "the time in Japan time")]:
        t.check(want in body, "body names %s" % what)
    t.check(msg.get_content_charset() == "utf-8", "body is UTF-8 text")

# ---- 2. webhook: retried after 503, JSON with a valid signature ----
t.wait_for(lambda: len(hooks) >= 2, what="webhook delivered after one 503")
if len(hooks) >= 2:
    path, headers, body, status = hooks[1]
    t.check_eq(path, "/yamori/hook?token=abc", "webhook path and query kept")
    t.check_eq(headers.get("content-type"), "application/json; charset=utf-8", "JSON content type")
    want_sig = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    t.check_eq(headers.get("x-yamori-signature"), want_sig, "X-Yamori-Signature is the body's HMAC")
    t.check_eq(hooks[0][2], body, "the retry sends the same payload")
    p = json.loads(body)
    t.check_eq((p["type"], p["change"], p["incident"]["id"], p["incident"]["kind"],
                p["incident"]["state"], p["host"]["name"], p["tenant"]["name"]),
               ("incident", "created", inc1, "malware", "new", "pc-01", "acme"), "webhook payload")
    t.check_eq((p["incident"]["rule"], p["incident"]["file_path"], p["incident"]["severity"]),
               ("EICAR_Test_File", "/home/taro/Downloads/invoice.pdf.exe", "high"),
               "payload rule, file and severity")
    t.check(p["incident"]["url"].endswith("/#/incidents/%d" % inc1), "payload console link")
    t.check(p["message"]["subject"].startswith("【Yamori】"), "payload carries the message")

def notified(inc):
    return [d for (d,) in con.query("SELECT detail FROM incident_log WHERE incident_id = ?"
                                    " AND what = 'notified' ORDER BY id", inc)]


t.wait_for(lambda: len(notified(inc1)) >= 3, what="three deliveries in incident_log")
details = notified(inc1)
t.check("email owner@acme.example.jp (created)" in details, "incident_log records the e-mail")
t.check(any(d.startswith("webhook http://127.0.0.1:") and "token" not in d for d in details),
        "incident_log records the webhook without its path or query: %r" % details)

# ---- 3. state changes have their own text ----
n0 = len(received)
enqueue(inc1, "acknowledged")
t.wait_for(lambda: len(received) >= n0 + 2, what="acknowledged e-mails")
ack = received[n0:]
t.check(all(m.subject == "【Yamori】PC「pc-01」の件で担当者が対応を開始しました" for m in ack),
        "acknowledged subject")
t.check(all("担当者が対応を開始しました" in m.body() for m in ack), "acknowledged body")
n0 = len(received)
enqueue(inc1, "resolved")
t.wait_for(lambda: len(received) >= n0 + 2, what="resolved e-mails")
t.check(all("対応が完了しました" in m.subject for m in received[n0:]),
        "resolved subject")

# ---- 4. English tenant, silent PC ----
n0 = len(received)
pc_en = add_agent(2, globex_id, "reception-pc")
inc2 = add_incident(globex_id, pc_en, kind="silent")
enqueue(inc2, "created")
t.wait_for(lambda: mails_to("boss@globex.example.com"), what="English e-mail")
en = mails_to("boss@globex.example.com")
if en:
    t.check_eq(en[0].subject, '[Yamori] PC "reception-pc" has stopped reporting',
               "English subject for a silent PC")
    body = en[0].body()
    t.check("What to do now" in body and HELPDESK_EN in body and "Last contact:" in body,
            "English body with what to do, the help desk and the last contact")
    t.check("■" not in body and "日本時間" not in body, "no Japanese in the English message")
t.wait_for(lambda: [r for r in outbox(inc2) if r[0] == "webhook" and r[2] == "failed"],
           what="webhook answering a redirect fails")
t.check(any("302" in r[4] for r in outbox(inc2) if r[0] == "webhook"),
        "the redirect is the recorded error: %r" % outbox(inc2))
t.check(not any(h[0] == "/elsewhere" for h in hooks), "the redirect was not followed")

# ---- 5. a hostile host name adds no header and no recipient ----
n0 = len(received)
evil = add_agent(3, acme_id, HOSTILE)
inc3 = add_incident(acme_id, evil, path="/tmp/x\r\nRCPT TO:<victim@example.org>\r\n.\r\nQUIT")
enqueue(inc3, "created")
t.wait_for(lambda: len(received) >= n0 + 2, what="e-mails of the hostile incident")
time.sleep(0.5)
expected_headers = {"from", "to", "subject", "date", "message-id", "mime-version", "content-type",
                    "content-transfer-encoding", "auto-submitted"}
for m in received[n0:]:
    t.check(len(m.rcpts) == 1 and m.rcpts[0] in ("owner@acme.example.jp", "staff@acme.example.jp"),
            "hostile incident: only the tenant's recipient (%r)" % m.rcpts)
    head = m.content.split(b"\r\n\r\n", 1)[0]
    names = set()
    for line in head.split(b"\r\n"):
        if line[:1] not in (b" ", b"\t"):
            names.add(line.split(b":", 1)[0].decode().lower())
    t.check_eq(names, expected_headers, "hostile incident: no injected header")
    t.check(b"<script>" not in head and b"victim" not in head, "no raw hostile text in headers")
    subj = m.subject
    t.check("\r" not in subj and "\n" not in subj and "evil Bcc: victim@example.org" in subj,
            "hostile subject is one line with the text kept visible: %r" % subj)
    t.check("RCPT TO:<victim@example.org> . QUIT" in m.body(),
            "hostile path is shown on one line in the body")
t.check(not any("victim@example.org" in m.rcpts for m in received), "nobody else got mail")

# ---- 6. test message, secrets ----
n0 = len(received)
r = con.cli("notify", "test", "--tenant", "globex")
t.check(r.returncode == 0 and b"2 test messages" in r.stdout,
        "notify test enqueues one e-mail and one webhook message")
t.wait_for(lambda: len(received) > n0, what="test e-mail")
if len(received) > n0:
    t.check_eq(received[n0].subject, "[Yamori] Test notification", "test subject")
r = con.cli("notify", "list")
t.check(r.returncode == 0 and b"sent" in r.stdout and b"token=abc" not in r.stdout,
        "notify list shows the outbox without webhook tokens")
r = con.cli("notify", "list", "--tenant", "globex")
t.check(r.returncode == 0 and b"boss@globex.example.com" in r.stdout
        and b"acme.example.jp" not in r.stdout, "notify list --tenant shows one company's")
t.check(any(ok for _, ok in smtp.auth_seen) and not any(not ok for _, ok in smtp.auth_seen),
        "SMTP AUTH succeeded with the password from the environment")

# ---- 7. smtp:// to a server without STARTTLS: refused, nothing sent ----
plain_port = yit.free_port()
plain = mailutil.SmtpSink(plain_port)
plain.start()
t.on_cleanup(plain.stop)
plain_got = plain.received
con2 = yit.Console(t, name="console2", extra=["--smtp-url", "smtp://127.0.0.1:%d" % plain_port,
                                              "--smtp-from", "alerts@provider.example.jp"])
con2.tenant("solo")
r = con2.cli("settings", "set", "--tenant", "solo", "--emails", "solo@example.jp")
r = con2.cli("notify", "test", "--tenant", "solo")
t.check(r.returncode == 0, "test message enqueued on the second console")


def solo_rows():
    return con2.query("SELECT state, attempts, last_error FROM notify_outbox")


t.wait_for(lambda: solo_rows() and solo_rows()[0][1] >= 2, what="attempts against a plain server")
t.check(not plain_got, "nothing is sent to an SMTP server that does not offer STARTTLS")
t.check(solo_rows() and solo_rows()[0][0] == "pending" and solo_rows()[0][2],
        "the message stays pending with the error: %r" % solo_rows())
con2.stop()

# ---- 8. the server's certificate is verified: without --smtp-ca nothing goes ----
con4 = yit.Console(t, name="console4", extra=["--smtp-url", "smtp://127.0.0.1:%d" % smtp_port,
                                              "--smtp-from", "alerts@provider.example.jp"])
con4.tenant("nocert")
con4.cli("settings", "set", "--tenant", "nocert", "--emails", "nocert@example.jp")
con4.cli("notify", "test", "--tenant", "nocert")


def nocert_rows():
    return con4.query("SELECT state, attempts, last_error FROM notify_outbox")


t.wait_for(lambda: nocert_rows() and nocert_rows()[0][1] >= 1, what="an attempt with an unknown CA")
t.check(not smtp.to("nocert@example.jp"), "a server whose certificate is not trusted gets nothing")
t.check(nocert_rows() and "certificate" in nocert_rows()[0][2].lower(),
        "the error names the certificate: %r" % nocert_rows())
con4.stop()

# ---- 9. smtps:// (TLS from the start) ----
tls_port = yit.free_port()
smtps = mailutil.SmtpSink(tls_port, certs, implicit_tls=True)
smtps.start()
t.on_cleanup(smtps.stop)
con3 = yit.Console(t, name="console3", extra=["--smtp-url", "smtps://127.0.0.1:%d" % tls_port,
                                              "--smtp-from", "alerts@provider.example.jp",
                                              "--smtp-ca", certs["ca.pem"]])
con3.tenant("tls")
con3.cli("settings", "set", "--tenant", "tls", "--emails", "tls@example.jp")
r = con3.cli("notify", "test", "--tenant", "tls")
t.wait_for(lambda: smtps.received, what="a message over smtps://")
t.check(smtps.received and smtps.received[0].rcpts == ["tls@example.jp"],
        "smtps:// delivers with the CA given by --smtp-ca")
con3.stop()

con.stop()
t.check(SMTP_PASSWORD.encode() not in con.proc.stdout_bytes() + con.proc.stderr_text().encode(),
        "the SMTP password is never printed")
t.done()
