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


STREAMS = ("alerts", "bulk")


def produced(t, ag):
    """The agent's own count per stream: the last number it gave an event
    (spool_last_seq_<stream> in yamorictl status, docs/spool.md)."""
    r = ag.ctl("--json", "status")
    t.need_eq(r.returncode, 0, "agent status answers")
    k = json.loads(r.stdout)["counters"]
    for stream in STREAMS:
        t.need("spool_last_seq_" + stream in k, "status reports the last %s number" % stream)
    return {stream: k["spool_last_seq_" + stream] for stream in STREAMS}


def stored(con, agent_id, stream, upto):
    """(stored, distinct, lowest, shed) for numbers 1..upto of a stream."""
    n, distinct, lo = con.query("SELECT count(*), count(DISTINCT seq), min(seq) FROM events"
                                " WHERE agent_id = ? AND stream = ? AND seq <= ?",
                                agent_id, stream, upto)[0]
    shed = 0
    for (js,) in con.query("SELECT json FROM events WHERE agent_id = ? AND action = 'gap'",
                           agent_id):
        e = json.loads(js)
        if (yit.get(e, "yamori.gap.source") in ("spool", "uplink")
                and yit.get(e, "yamori.gap.stream") == stream):
            shed += yit.get(e, "yamori.gap.count", 0) or 0
    return n, distinct, lo, shed


def stream_check(t, con, ag, label, timeout=120):
    """Per stream, the console holds every number from 1 to the last one
    the agent says it gave, each once, apart from numbers a gap record
    accounts for. The count comes from the agent, not from what was
    stored, so a stream that never arrived or a lost tail fails. Numbers
    given after the agent was asked are not judged."""
    last = produced(t, ag)
    for stream in STREAMS:
        want = last[stream]

        def complete():
            _, distinct, _, shed = stored(con, ag.agent_id, stream, want)
            return distinct + shed >= want
        # The last batches may still be on their way or being committed.
        t.wait_for(complete, timeout=timeout, interval=0.5,
                   what="%s: %s stream up to %d stored" % (label, stream, want))
        n, distinct, lo, shed = stored(con, ag.agent_id, stream, want)
        t.check_eq(n, distinct, "%s: %s stream has no number twice" % (label, stream))
        if shed == 0 and want > 0:
            t.check_eq(lo, 1, "%s: %s stream starts at 1" % (label, stream))
        t.check_eq(n + shed, want, "%s: %s stream: stored %d + shed %d == produced %d (agent's count)"
                   % (label, stream, n, shed, want))


def drained(t, ag, timeout=180):
    """Waits until the agent's spool has nothing left to send."""
    def empty():
        r = ag.ctl("--json", "status")
        if r.returncode != 0:
            return False
        k = json.loads(r.stdout)["counters"]
        return k.get("spool_pending", 1) == 0
    return t.wait_for(empty, timeout=timeout, what="spool drained", interval=0.5)
