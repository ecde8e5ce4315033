"""Login on a real console, attacked from other loopback addresses: a
stranger flooding wrong passwords for admin from 127.0.0.2 is slowed down
and then refused, while admin logs in from 127.0.0.1 at once; spraying
many user names from one address meets the address's limit; answers still
waiting do not hold up a stop; a login that is not application/json (415)
or comes from another site (Origin, Sec-Fetch-Site: 403) is refused
(login CSRF)."""
import http.client
import json
import ssl
import threading
import time

import yit

t = yit.Test(__file__)
con = yit.Console(t)
PW = con.admin_password()


def login(user, password, source="127.0.0.1", headers=None, body=None):
    """One login from source (a loopback address the client socket is
    bound to). Returns (status, seconds until the answer, answer)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", con.port, context=ctx, timeout=60,
                                       source_address=(source, 0))
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    for k in [k for k, v in h.items() if v is None]:
        del h[k]
    data = body if body is not None else json.dumps({"user": user, "password": password}).encode()
    start = time.monotonic()
    try:
        conn.request("POST", "/api/ui/login", data, h)
        r = conn.getresponse()
        out = r.read()
        took = time.monotonic() - start
        try:
            out = json.loads(out)
        except ValueError:
            pass
        return r.status, took, out
    finally:
        conn.close()


def parallel(n, fn):
    """Runs fn(i) for i < n in n threads; returns their results in order."""
    res = [None] * n

    def run(i):
        try:
            res[i] = fn(i)
        except Exception as e:  # a dead thread must fail the test, not hang it
            res[i] = ("error", 0, repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    return threads, res


# Login CSRF: only a same-origin JSON request may log in.
own = "https://127.0.0.1:%d" % con.port
cases = [
    ("text/plain body", {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    ("form body", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
     "unsupported_media_type"),
    ("no content type", {"Content-Type": None}, 415, "unsupported_media_type"),
    ("json-like type", {"Content-Type": "application/jsonx"}, 415, "unsupported_media_type"),
    ("another site's Origin", {"Origin": "https://evil.example"}, 403, "cross_origin"),
    ("Origin null", {"Origin": "null"}, 403, "cross_origin"),
    ("own host on http", {"Origin": "http://127.0.0.1:%d" % con.port}, 403, "cross_origin"),
    ("another port", {"Origin": "https://127.0.0.1:%d" % (con.port + 1)}, 403, "cross_origin"),
    ("Sec-Fetch-Site cross-site", {"Sec-Fetch-Site": "cross-site"}, 403, "cross_origin"),
    ("Sec-Fetch-Site same-site", {"Sec-Fetch-Site": "same-site"}, 403, "cross_origin"),
    ("cross-site text/plain",
     {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site",
      "Content-Type": "text/plain"}, 403, "cross_origin"),
]
n_sessions = con.query("SELECT count(*) FROM sessions")[0][0]
for what, headers, want, code in cases:
    st, _, body = login("admin", PW, source="127.0.0.5", headers=headers)
    t.check_eq((st, body.get("error") if isinstance(body, dict) else body), (want, code),
               "login with %s refused" % what)
for what, headers in (
        ("the console's own Origin", {"Origin": own, "Sec-Fetch-Site": "same-origin"}),
        ("charset parameter", {"Content-Type": "application/json; charset=utf-8"}),
        ("no browser headers", {}),
):
    st, _, body = login("admin", PW, source="127.0.0.5", headers=headers)
    t.check_eq(st, 200, "login with %s accepted" % what)
t.check_eq(con.query("SELECT count(*) FROM sessions")[0][0], n_sessions + 3,
           "refused logins made no session")

# The fixture: a client bound to 127.0.0.2 reaches the console on
# 127.0.0.1 and the console sees it as 127.0.0.2.
st, took, _ = login("admin", "wrong-0", source="127.0.0.2")
t.check_eq(st, 401, "a wrong password from 127.0.0.2")
peers = [r[0] for r in con.query("SELECT peer FROM audit WHERE action = 'login.failed'")]
t.check_eq(peers, ["127.0.0.2"], "the console sees the second loopback address")

# Repeated failures from one address are slowed down, growing.
times = [took]
for i in range(1, 5):
    st, took, _ = login("admin", "wrong-%d" % i, source="127.0.0.2")
    t.check_eq(st, 401, "wrong password %d from 127.0.0.2 answered 401" % i)
    times.append(took)
print("answer times of failures 1-5 from 127.0.0.2: %s" % ["%.2f" % x for x in times])
t.check(times[3] >= 1.0, "the 4th failure waits at least 1 s (%.2f s)" % times[3])
t.check(times[4] >= 2.0, "the 5th failure waits at least 2 s (%.2f s)" % times[4])

# A flood in parallel: a few more are counted (and wait longer), the rest
# are refused at once; meanwhile admin logs in from 127.0.0.1 at once.
threads, flood = parallel(10, lambda i: login("admin", "flood-%d" % i, source="127.0.0.2"))
time.sleep(0.5)
st, took, body = login("admin", PW)
print("admin's login from 127.0.0.1 during the flood: %d in %.2f s" % (st, took))
t.check_eq(st, 200, "admin logs in from 127.0.0.1 during the flood")
t.check(took < 3.0, "admin's login is not slowed down by the flood (%.2f s)" % took)
t.check_eq((body.get("user") or {}).get("name"), "admin", "the session is admin's")
for th in threads:
    th.join(60)
statuses = sorted(r[0] for r in flood)
t.check_eq(statuses, [401] * 5 + [429] * 5,
           "of 10 parallel attempts, 5 are counted (limit 10 per name and address), 5 refused")
t.check(all(r[1] < 2.0 for r in flood if r[0] == 429), "refusals are answered at once")
t.check(max([r[1] for r in flood if r[0] == 401] or [0]) >= 16.0,
        "the last counted attempts wait the longest delay (16 s)")
st, _, body = login("admin", PW, source="127.0.0.2")
t.check_eq((st, body.get("error")), (429, "rate_limited"),
           "the flooding address is refused even the right password")
st, took, _ = login("admin", PW)
t.check_eq(st, 200, "admin still logs in from 127.0.0.1 after the flood")

# Spraying: many names from one address meet the address's limit (20).
threads, spray = parallel(25, lambda i: login("user%d" % i, "guess", source="127.0.0.3"))
for th in threads:
    th.join(60)
statuses = sorted(r[0] for r in spray)
t.check_eq(statuses, [401] * 20 + [429] * 5, "20 names tried from one address, then refused")
st, _, _ = login("admin", PW, source="127.0.0.3")
t.check_eq(st, 429, "the spraying address is refused for every name")
st, _, _ = login("admin", PW, source="127.0.0.4")
t.check_eq(st, 200, "another address is not")

# Answers waiting for their delay do not hold the console up at a stop.
import signal
threads, waiting = parallel(10, lambda i: login("admin", "late-%d" % i, source="127.0.0.7"))
t.wait_for(lambda: sum(1 for r in waiting if r is not None) >= 6, timeout=30,
           what="the first attempts from 127.0.0.7 answered")
start = time.monotonic()
con.proc.signal(signal.SIGTERM)
con.proc.p.wait(30)
stopped = time.monotonic() - start
print("console stopped in %.2f s with delayed answers pending" % stopped)
t.check_eq(con.proc.p.returncode, 0, "the console stops cleanly")
t.check(stopped < 3.0, "the console stops at once with delayed answers pending (%.2f s)" % stopped)
for th in threads:
    th.join(30)
cut = [r for r in waiting if r[0] != 401]
print("attempts cut off by the stop: %s" % [r[0] for r in cut])
t.check(len(cut) >= 3, "the attempts still waiting were cut off, not answered late")
t.done()
