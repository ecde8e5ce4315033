"""The state directory removed (rm -rf) while the agent runs: it keeps
detecting and alerting locally, costs under 5% of a core, creates its spool
directories again and writes what waited in memory there (a loss record
only for what did not fit in memory, never one per failed write); SIGTERM
stops it
within 3 s right after another removal."""
import os
import shutil
import time
import yit
import diskutil
from yit import get

yit.require_root()
t = yit.Test(__file__)
state = t.path("state")
work = t.path("work")
ag = yit.Agent(t, {"state_dir": state, "policy": {"exec": "off", "file": "detect"}})
control = diskutil.control_agent(t)
act = diskutil.Activity(work)
time.sleep(2.5)  # a bulk batch is written first

shutil.rmtree(state)
eicar = os.path.join(work, "eicar.com")
diskutil.write_eicar(eicar)
alert = ag.wait_event(lambda e: get(e, "event.kind") == "alert" and get(e, "file.path") == eicar,
                      timeout=30, what="an alert after the state directory was removed")
t.check(alert is not None, "detection and local alerts go on without the state directory")
diskutil.measure_cpu(t, ag, control, 10.0, "state directory removed")
alerts_dir = os.path.join(state, "spool", "alerts")
t.check(os.path.isdir(alerts_dir) and any(n.endswith(".seg") for n in os.listdir(alerts_dir)),
        "the spool directories were made again and the alert written there")
t.check_eq(os.stat(state).st_mode & 0o777, 0o700, "the state directory is 0700 again")
time.sleep(3)  # a report of losses would follow the next write
k = diskutil.counters(ag)
t.check(k.get("spool_failing") is False, "the spool is written again")
# Events wait in memory meanwhile: none are lost unless more than the
# memory bound arrived (other programs on this machine write files too);
# then exactly one record counts them.
gaps = diskutil.write_gaps(ag)
print("info: %d events could not be kept" % k.get("spool_unwritten", -1), flush=True)
if k.get("spool_unwritten") == 0:
    t.check_eq(len(gaps), 0, "nothing was lost and no loss record")
else:
    t.check(len(gaps) == 1 and get(gaps[0], "yamori.gap.count") == k.get("spool_unwritten"),
            "one loss record with the count (%r)" % [get(g, "yamori.gap.count") for g in gaps])
others = [e for e in ag.events() if get(e, "event.action") == "gap"
          and get(e, "yamori.gap.source") == "spool"
          and get(e, "yamori.gap.reason") != "spool_write_failed"]
t.check_eq(len(others), 0, "no other gap record about the spool")
# The removal runs while the agent makes its directories again, so there
# may be two short outages; each is logged once when it starts and once
# when it ends, never per failed write.
err = ag.proc.stderr_text()
down, up = err.count("cannot write the spool"), err.count("can be written again")
t.check(down == up and down <= 3, "each outage logged once (%d down, %d up)" % (down, up))

shutil.rmtree(state)
diskutil.write_eicar(os.path.join(work, "eicar2.com"))
ag.wait_event(lambda e: get(e, "event.kind") == "alert"
              and get(e, "file.path") == os.path.join(work, "eicar2.com"),
              timeout=30, what="a second alert")
diskutil.measure_stop(t, ag, "state directory removed")
act.stop()
t.done()
