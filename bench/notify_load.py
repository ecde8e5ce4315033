#!/usr/bin/env python3
"""Notification delivery: how fast the console empties its outbox into a
real SMTP server, and how long one notification takes from the incident to
the mail server.

A real yamori-console (default options: the outbox is polled every second)
sends through libcurl to a local aiosmtpd server that requires STARTTLS
(throwaway CA, tests/integration/mailutil.py). The company has --recipients
addresses.

  backlog:  --incidents incidents are enqueued while the mail server is
            down (as after an outage, or a worm on many PCs); the server
            is started and the time until every message has arrived gives
            messages per second.
  latency:  --samples single incidents, one at a time, on an idle console:
            time from `notify enqueue` returning to the message's arrival
            (the poll interval dominates: 0 to 1 s).

The peer is Python's smtplib sending the same number of messages to the
same server over one STARTTLS connection: what the mail server itself
allows.

Usage: bench/notify_load.py [--incidents N] [--recipients R] [--samples N] [--json OUT]
"""
import argparse
import json
import os
import random
import smtplib
import sqlite3
import ssl
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import yit  # noqa: E402
import mailutil  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--incidents", type=int, default=200)
    ap.add_argument("--recipients", type=int, default=2)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--json")
    a = ap.parse_args()

    t = yit.Test(__file__)
    certs = mailutil.make_certs(t.dir)
    port = yit.free_port()
    smtp = mailutil.SmtpSink(port, certs)
    os.environ.pop("YAMORI_NOTIFY_POLL_MS", None)
    os.environ.pop("YAMORI_NOTIFY_BACKOFF_MS", None)
    con = yit.Console(t, extra=["--smtp-url", "smtp://127.0.0.1:%d" % port,
                                "--smtp-from", "alerts@provider.example.jp",
                                "--smtp-ca", certs["ca.pem"]])
    con.tenant("bench")
    emails = ",".join("user%d@bench.example.jp" % i for i in range(a.recipients))
    r = con.cli("settings", "set", "--tenant", "bench", "--emails", emails)
    assert r.returncode == 0, r.stderr
    db = sqlite3.connect(os.path.join(con.data, "yamori.db"), timeout=30)
    now = int(time.time() * 1000)
    db.execute("INSERT INTO agents(id, tenant_id, host_name, secret_hash, enrolled_at)"
               " VALUES('00000001-0000-4000-8000-000000000000', 1, 'pc-01', zeroblob(32), 0)")
    ids = []
    for i in range(a.incidents + a.samples):
        cur = db.execute("INSERT INTO incidents(tenant_id, agent_id, kind, rule, title, first_ms,"
                         " last_ms, file_path, updated_ms, state) VALUES(1,"
                         " '00000001-0000-4000-8000-000000000000', 'malware', ?, 'EICAR test file',"
                         " ?, ?, '/home/u/eicar.com', ?, 'resolved')", ("R%d" % i, now, now, now))
        ids.append(cur.lastrowid)
    db.commit()
    db.close()

    # Backlog: enqueued while the mail server is down.
    for i in ids[:a.incidents]:
        r = con.cli("notify", "enqueue", "--incident", str(i), "--change", "created")
        assert r.returncode == 0, r.stderr
    want = a.incidents * a.recipients
    time.sleep(1)
    # Let the failed first attempts pass, then make every message due now.
    c = sqlite3.connect(os.path.join(con.data, "yamori.db"), timeout=30)
    c.execute("UPDATE notify_outbox SET next_at_ms = 0 WHERE state = 'pending'")
    c.commit()
    c.close()
    smtp.start()
    t0 = time.monotonic()
    while len(smtp.received) < want and time.monotonic() - t0 < 600:
        time.sleep(0.01)
    backlog_s = time.monotonic() - t0
    got = len(smtp.received)

    # Latency of single notifications on an idle console.
    lat = []
    for i in ids[a.incidents:]:
        n0 = len(smtp.received)
        r = con.cli("notify", "enqueue", "--incident", str(i), "--change", "created")
        s0 = time.monotonic()
        while len(smtp.received) < n0 + a.recipients and time.monotonic() - s0 < 30:
            time.sleep(0.005)
        lat.append(time.monotonic() - s0)
        time.sleep(random.uniform(0, 1.0))  # a random phase of the poll

    # Peer: smtplib, one STARTTLS connection, the same messages.
    ctx = ssl.create_default_context(cafile=certs["ca.pem"])
    sample = smtp.received[0].content if smtp.received else b"Subject: x\r\n\r\nx\r\n"
    n0 = len(smtp.received)
    p0 = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port) as s:
        s.starttls(context=ctx)
        for i in range(want):
            s.sendmail("alerts@provider.example.jp", ["user0@bench.example.jp"], sample)
    peer_s = time.monotonic() - p0
    peer_got = len(smtp.received) - n0

    res = {
        "incidents": a.incidents, "recipients": a.recipients, "messages": want,
        "delivered": got, "backlog_s": round(backlog_s, 2),
        "console_msgs_per_s": round(got / backlog_s, 1) if backlog_s else None,
        "peer_smtplib_msgs_per_s": round(peer_got / peer_s, 1) if peer_s else None,
        "latency_p50_s": round(statistics.median(lat), 3) if lat else None,
        "latency_max_s": round(max(lat), 3) if lat else None,
        "latency_min_s": round(min(lat), 3) if lat else None,
    }
    print(json.dumps(res, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f)
    con.stop()
    smtp.stop()
    t.check(got == want, "every message delivered")
    t.done()


if __name__ == "__main__":
    main()
