#!/usr/bin/env python3
"""Dashboard API latency on a large store.

Builds (once; --reuse keeps it) a console data directory holding --agents
PCs (default 1,000) in --tenants companies (default 50) and --events events
(default 10,000,000) spread over the last 30 days: 70% file events, 25%
process events, 0.1% alerts, with the shapes the agent writes
(docs/events.md), plus one open incident per 20 PCs. The schema is the
console's own: the console is started once on the empty directory to create
it, then the rows are written with SQLite directly (through the console's
API this would take an hour of ingest on this machine; ingest has its own
benchmark, bench/ingest_load.py). Then the console serves the directory and
the benchmark logs in as provider staff and as one company's administrator
and calls each dashboard route --requests times (default 200, after 5
warm-up calls), one at a time over a kept-alive HTTPS connection, and
reports p50/p95/p99 latency per call and the goal (p95 < 200 ms).

The peer is SQLite itself: for the event search, the same SQL run in-process
by Python's sqlite3 on the same file, so that the ratio shows what the
console adds (HTTP, TLS, JSON) on top of the query.

Usage: bench/dashboard_load.py [--agents N] [--events N] [--tenants N]
       [--requests N] [--dir DIR] [--reuse] [--json OUT]
"""
import argparse
import http.client
import json
import os
import random
import re
import sqlite3
import ssl
import statistics
import subprocess
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("YAMORI_BUILD_DIR", os.path.join(ROOT, "build"))
CONSOLE = os.path.join(BUILD, "console", "yamori-console")
DAY = 86400000


def iso(ms):
    t = time.gmtime(ms // 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + ".%03dZ" % (ms % 1000)


def start_console(data, port):
    p = subprocess.Popen([CONSOLE, "--data-dir", data, "--listen", "127.0.0.1:%d" % port,
                          "--maintenance-s", "86400", "serve"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = b""
    deadline = time.time() + 600
    while b"console listening" not in out and time.time() < deadline:
        out += p.stdout.readline()
    return p, out


def build(data, agents, tenants, events):
    os.makedirs(data, exist_ok=True)
    port = random.randint(20000, 40000)
    p, out = start_console(data, port)
    m = re.search(rb'password (\S+)', out)
    p.terminate()
    p.wait()
    if m:
        open(os.path.join(data, "bench-admin"), "w").write(m.group(1).decode())
    db = sqlite3.connect(os.path.join(data, "yamori.db"))
    db.execute("PRAGMA synchronous=OFF")
    now = int(time.time() * 1000)
    t0 = time.time()
    with db:
        for t in range(1, tenants + 1):
            db.execute("INSERT INTO tenants(id, name, display, created_at) VALUES(?,?,?,?)",
                       (t, "t%03d" % t, "会社 %03d" % t, now // 1000))
        ag = []
        for i in range(agents):
            aid = str(uuid.UUID(int=random.getrandbits(128), version=4))
            tid = 1 + i % tenants
            seen = now - (random.randint(0, 60) * 1000 if i % 25 else 3 * 3600 * 1000)
            db.execute("INSERT INTO agents(id, tenant_id, host_id, host_name, host_json,"
                       " secret_hash, version, rules_version, enrolled_at, last_seen, status_json)"
                       " VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                       (aid, tid, uuid.uuid4().hex, "pc-%04d" % i,
                        json.dumps({"name": "pc-%04d" % i,
                                    "os": {"name": "Debian GNU/Linux", "version": "12"}}),
                        os.urandom(32), "0.1.0", "r1", (now - 40 * DAY) // 1000, seen, "{}"))
            ag.append((aid, tid))
        for n, (aid, tid) in enumerate(ag[::20]):
            db.execute("INSERT INTO incidents(tenant_id, agent_id, kind, rule, title, first_ms,"
                       " last_ms, file_path, updated_ms) VALUES(?,?,'malware',?,?,?,?,?,?)",
                       (tid, aid, "Rule_%d" % (n % 7), "Test detection", now - DAY, now - DAY,
                        "/home/u/f%d" % n, now))
    seqs = {}

    def rows():
        rnd = random.Random(1)
        for i in range(events):
            aid, tid = ag[rnd.randrange(agents)]
            ts = now - rnd.randrange(30 * DAY)
            r = rnd.random()
            if r < 0.001:
                stream, kind, ds, act = "alerts", "alert", "yamori.file", "creation"
                js = ('{"@timestamp":"%s","event":{"kind":"alert","dataset":"yamori.file",'
                      '"action":"creation","category":["malware"]},"rule":{"name":"Rule_%d",'
                      '"description":"Test detection"},"file":{"path":"/home/u/dl/f%d.exe"},'
                      '"process":{"pid":%d,"name":"bash","executable":"/usr/bin/bash"}}'
                      % (iso(ts), i % 7, i, 1000 + i % 30000))
            elif r < 0.70:
                stream, kind, ds = "bulk", "event", "yamori.file"
                act = ("creation", "modification", "deletion", "rename")[i % 4]
                js = ('{"@timestamp":"%s","event":{"kind":"event","dataset":"yamori.file",'
                      '"action":"%s","category":["file"]},"file":{"path":"/home/user%d/docs/'
                      'report-%d.xlsx","extension":"xlsx"},"process":{"pid":%d,"name":"soffice",'
                      '"executable":"/usr/lib/libreoffice/program/soffice.bin",'
                      '"entity_id":"e%d"}}' % (iso(ts), act, i % 50, i, 1000 + i % 30000, i % 99991))
            else:
                stream, kind, ds = "bulk", "event", "yamori.process"
                act = "exec" if i % 2 else "end"
                js = ('{"@timestamp":"%s","event":{"kind":"event","dataset":"yamori.process",'
                      '"action":"%s","category":["process"]},"process":{"pid":%d,"name":"git",'
                      '"executable":"/usr/bin/git","args":["git","status"],"entity_id":"e%d",'
                      '"parent":{"pid":%d,"entity_id":"e%d"}}}'
                      % (iso(ts), act, 2000 + i % 30000, i % 99991, 1000 + i % 300, i % 997))
            k = (aid, stream)
            seqs[k] = seqs.get(k, 0) + 1
            yield (tid, aid, stream, seqs[k], ts, ts, kind, ds, act, js)

    it = rows()
    done = 0
    while done < events:
        chunk = []
        for _ in range(min(200000, events - done)):
            chunk.append(next(it))
        with db:
            db.executemany("INSERT INTO events(tenant_id, agent_id, stream, seq, ts_ms,"
                           " received_ms, kind, dataset, action, json)"
                           " VALUES(?,?,?,?,?,?,?,?,?,?)", chunk)
        done += len(chunk)
        print("  %d/%d events (%.0f s)" % (done, events, time.time() - t0), file=sys.stderr)
    db.execute("ANALYZE")
    db.close()
    return time.time() - t0


class Client:
    def __init__(self, port):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=120)
        self.cookie = None
        self.csrf = None

    def call(self, method, path, body=None):
        h = {}
        if self.cookie:
            h["Cookie"] = self.cookie
        if method == "POST":
            h["Content-Type"] = "application/json"
            if self.csrf:
                h["X-CSRF-Token"] = self.csrf
        self.c.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                       headers=h)
        r = self.c.getresponse()
        data = r.read()
        return r.status, r.getheader("set-cookie"), data

    def login(self, user, pw):
        st, ck, data = self.call("POST", "/api/ui/login", {"user": user, "password": pw})
        if st != 200:
            raise SystemExit("login failed: %d %s" % (st, data[:200]))
        self.cookie = ck.split(";")[0]
        self.csrf = json.loads(data)["csrf"]


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--tenants", type=int, default=50)
    ap.add_argument("--events", type=int, default=10000000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--dir", default="/var/tmp/yamori-dash-bench")
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    data = os.path.join(a.dir, "data")
    if not (a.reuse and os.path.exists(os.path.join(data, "bench-admin"))):
        subprocess.run(["rm", "-rf", data], check=True)
        secs = build(data, a.agents, a.tenants, a.events)
        print("built %d events in %.0f s" % (a.events, secs), file=sys.stderr)
    size = sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data)
               if f.startswith("yamori.db"))
    port = random.randint(40001, 60000)
    p, _ = start_console(data, port)
    try:
        staff = Client(port)
        staff.login("admin", open(os.path.join(data, "bench-admin")).read().strip())
        st, _, _ = staff.call("POST", "/api/ui/users", {"name": "t001-admin",
                                                       "password": "correct horse battery",
                                                       "role": "admin", "tenant_id": 1})
        cust = Client(port)
        cust.login("t001-admin", "correct horse battery")
        db = sqlite3.connect("file:%s/yamori.db?mode=ro" % data, uri=True)
        agent1 = db.execute("SELECT id FROM agents WHERE tenant_id = 1 LIMIT 1").fetchone()[0]
        inc1 = db.execute("SELECT id FROM incidents LIMIT 1").fetchone()[0]
        calls = [
            ("overview (staff, all companies)", staff, "/api/ui/overview"),
            ("overview (one company)", cust, "/api/ui/overview"),
            ("PC list (staff, page 1)", staff, "/api/ui/agents?limit=50"),
            ("PC list search (staff)", staff, "/api/ui/agents?q=pc-09"),
            ("incident list (staff, open)", staff, "/api/ui/incidents?state=open"),
            ("incident detail", staff, "/api/ui/incidents/%d" % inc1),
            ("PC detail", cust, "/api/ui/agents/%s" % agent1),
            ("event search (staff, newest 100)", staff, "/api/ui/events?limit=100"),
            ("event search (one company, newest 100)", cust, "/api/ui/events?limit=100"),
            ("event search (one PC, newest 100)", cust, "/api/ui/events?agent=%s" % agent1),
            ("event search (company, alerts)", cust, "/api/ui/events?kind=alert"),
            ("event search (company, path prefix)", cust,
             "/api/ui/events?path=/home/user7/docs/"),
            ("event search (company, process name)", cust, "/api/ui/events?process=git"),
            ("process tree (one PC, last hour)", cust, "/api/ui/agents/%s/processes" % agent1),
            ("monthly report (one company)", cust, "/api/ui/tenants/1/report"),
        ]
        results = []
        for name, cl, path in calls:
            for _ in range(5):
                cl.call("GET", path)
            lat = []
            for _ in range(a.requests):
                t0 = time.perf_counter()
                st, _, body = cl.call("GET", path)
                lat.append((time.perf_counter() - t0) * 1000)
                if st != 200:
                    raise SystemExit("%s: status %d %s" % (name, st, body[:200]))
            results.append({"call": name, "path": path, "p50_ms": round(pct(lat, 50), 2),
                            "p95_ms": round(pct(lat, 95), 2), "p99_ms": round(pct(lat, 99), 2)})
            print("%-42s p50 %8.2f  p95 %8.2f  p99 %8.2f ms" %
                  (name, pct(lat, 50), pct(lat, 95), pct(lat, 99)))
        # Peer: the tenant event search's SQL in-process.
        lat = []
        for _ in range(a.requests):
            t0 = time.perf_counter()
            db.execute("SELECT e.id, e.json FROM events e WHERE e.tenant_id = 1"
                       " ORDER BY e.ts_ms DESC, e.id DESC LIMIT 100").fetchall()
            lat.append((time.perf_counter() - t0) * 1000)
        peer = {"call": "peer: the same company search in sqlite3, in-process",
                "p50_ms": round(pct(lat, 50), 2), "p95_ms": round(pct(lat, 95), 2),
                "p99_ms": round(pct(lat, 99), 2)}
        print("%-42s p50 %8.2f  p95 %8.2f  p99 %8.2f ms" %
              (peer["call"][:42], peer["p50_ms"], peer["p95_ms"], peer["p99_ms"]))
        out = {"agents": a.agents, "tenants": a.tenants, "events": a.events,
               "db_bytes": size, "requests": a.requests, "results": results, "peer": peer,
               "goal_p95_ms": 200,
               "over_goal": [r["call"] for r in results if r["p95_ms"] >= 200]}
        print(json.dumps(out, indent=1))
        if a.json:
            open(a.json, "w").write(json.dumps(out, indent=1))
    finally:
        p.terminate()
        p.wait()


if __name__ == "__main__":
    main()
