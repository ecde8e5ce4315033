"""Spool cap reached with the console down: alerts all survive, bulk is
shed oldest first, and delivered + shed equals produced, exactly. Then a
byte flipped in a spool segment: detected, counted, the rest delivered."""
import glob
import json
import os
import signal
import struct
import yit
import linkutil
from yit import get

yit.require_root()
t = yit.Test(__file__)
con = yit.Console(t)
con.tenant("acme")
ag = linkutil.enrolled_agent(t, con, {"spool": {"max_bytes": 2 * 1024 * 1024,
                                                "alert_reserve_bytes": 512 * 1024,
                                                "bulk_flush_ms": 200},
                                      "policy": {"exec": "off", "file": "detect"},
                                      "scan": {"on_write": True}})
con.stop(signal.SIGKILL)
d = t.path("cap")
os.mkdir(d)
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
alerts_made = 0
for round_ in range(6):
    # Long random names compress badly: the spool fills quickly.
    linkutil.storm(d, 6000, tag=os.urandom(40).hex())
    for k in range(3):
        with open(os.path.join(d, "eicar%d_%d.com" % (round_, k)), "wb") as f:
            f.write(EICAR)
        alerts_made += 1
ag.wait_event(lambda e: get(e, "event.kind") == "alert" and "eicar5_2" in get(e, "file.path", ""),
              timeout=60, what="last alert")
g = ag.wait_event(lambda e: get(e, "event.action") == "gap" and get(e, "yamori.gap.source") == "spool"
                  and get(e, "yamori.gap.stream") == "bulk", timeout=60, what="a spool gap record")
t.check(g is not None and get(g, "yamori.gap.reason") == "spool_full", "bulk telemetry was shed at the cap")
con.start()
linkutil.drained(t, ag, timeout=300)
n_alerts = con.query("SELECT count(*) FROM events WHERE agent_id = ? AND kind = 'alert' AND json LIKE ?",
                     ag.agent_id, "%/cap/eicar%")[0][0]
t.check_eq(n_alerts, alerts_made, "every alert delivered")
linkutil.stream_check(t, con, ag, "after the cap")

# A flipped byte in a spool segment.
con.stop(signal.SIGKILL)
linkutil.storm(d, 3000, tag="flip")
ag.proc.stop()
segs = sorted(glob.glob(os.path.join(ag.conf["state_dir"], "spool", "bulk", "*.seg")))
t.need(len(segs) > 0, "segments waiting while the console is down")
# The damage goes into a record the console cannot have: one numbered after
# the last it stored. (A record it already committed, damaged, is reported
# lost all the same: the agent cannot know it arrived.)
delivered = con.query("SELECT max(seq) FROM events WHERE agent_id = ? AND stream = 'bulk'",
                      ag.agent_id)[0][0]
target = None
for seg in segs:
    data = open(seg, "rb").read()
    off = 0
    while target is None and off + 48 <= len(data) and data[off:off + 4] == b"YMB1":
        first = struct.unpack_from("<Q", data, off + 8)[0]
        gz_len = struct.unpack_from("<I", data, off + 32)[0]
        if first > delivered and gz_len > 20:
            target = (seg, off + 48 + 10)
        off += 48 + gz_len
t.need(target is not None, "a record not delivered yet (after %d) to damage" % delivered)
with open(target[0], "r+b") as f:
    f.seek(target[1])
    b = f.read(1)
    f.seek(target[1])
    f.write(bytes([b[0] ^ 0xFF]))
ag.proc = t.start([yit.binary("yamorid"), "--config", ag.conf_path], name="agent-after-flip")
t.wait_for(lambda: "sensors armed" in ag.proc.stderr_text(), what="agent restarted")
con.start()
linkutil.drained(t, ag, timeout=300)
gaps = [json.loads(js) for (js,) in con.query(
    "SELECT json FROM events WHERE agent_id = ? AND action = 'gap'", ag.agent_id)]
t.check(any(get(g, "yamori.gap.reason") == "spool_corrupt" for g in gaps),
        "the damaged record is reported as a gap")
r = ag.ctl("--json", "status")
k = json.loads(r.stdout)["counters"]
t.check(k.get("spool_corrupt", 0) >= 1, "status counts the damaged record")
linkutil.stream_check(t, con, ag, "after the flipped byte")
t.done()
