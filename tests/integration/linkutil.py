"""Shared steps of the console-link tests: an enrolled agent, storms of
file events, and the sequence checks that prove exactly-once delivery."""
import json
import os
import time
import yit


def enrolled_agent(t, con, conf=None, name="agent"):
    token = con.token("acme")
    base = {"policy": {"exec": "off", "file": "detect"}, "scan": {"on_write": False},
            "spool": {"bulk_flush_ms": 200}}
    base.update(conf or {})
    ag = yit.Agent(t, base, name=name)
    r = t.run(["yamorictl", "--config", ag.conf_path, "enroll"],
              env=dict(os.environ, YAMORI_TOKEN=token))
    t.check_eq(r.returncode, 0, name + " enrolled")
    ident = json.load(open(os.path.join(ag.conf["state_dir"], "identity.json")))
    ag.agent_id = ident["agent_id"]
    return ag


def storm(directory, n, tag="f"):
    """Creates, writes and deletes n files: 3 events each."""
    for i in range(n):
        p = os.path.join(directory, "%s%d" % (tag, i))
        fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(fd, b"x")
        os.close(fd)
        os.unlink(p)


def stored_paths(con, agent_id, like):
    """(path, action) -> count for file events whose JSON contains like."""
    out = {}
    for (js,) in con.query("SELECT json FROM events WHERE agent_id = ? AND dataset = 'yamori.file'"
                           " AND json LIKE ?", agent_id, "%" + like + "%"):
        e = json.loads(js)
        k = (yit.get(e, "file.path"), yit.get(e, "event.action"))
        out[k] = out.get(k, 0) + 1
    return out


def stream_check(t, con, agent_id, label):
    """Per stream, the stored numbers are 1..max with nothing missing and
    nothing twice, apart from numbers a gap record accounts for."""
    for stream in ("alerts", "bulk"):
        rows = con.query("SELECT min(seq), max(seq), count(*), count(DISTINCT seq) FROM events"
                         " WHERE agent_id = ? AND stream = ? AND seq < 10000000", agent_id, stream)
        lo, hi, n, distinct = rows[0]
        if n == 0:
            continue
        shed = 0
        for (js,) in con.query("SELECT json FROM events WHERE agent_id = ? AND action = 'gap'",
                               agent_id):
            e = json.loads(js)
            if (yit.get(e, "yamori.gap.source") in ("spool", "uplink")
                    and yit.get(e, "yamori.gap.stream") == stream):
                shed += yit.get(e, "yamori.gap.count", 0) or 0
        t.check_eq(n, distinct, "%s: %s stream has no number twice" % (label, stream))
        if shed == 0:
            t.check_eq(lo, 1, "%s: %s stream starts at 1" % (label, stream))
        t.check_eq(n + shed, hi, "%s: %s stream: stored %d + shed %d == produced %d"
                   % (label, stream, n, shed, hi))


def drained(t, ag, timeout=180):
    """Waits until the agent's spool has nothing left to send."""
    def empty():
        r = ag.ctl("--json", "status")
        if r.returncode != 0:
            return False
        k = json.loads(r.stdout)["counters"]
        return k.get("spool_pending", 1) == 0
    return t.wait_for(empty, timeout=timeout, what="spool drained", interval=0.5)
