"""Process sensor on real kernel events: start and end events with
executable, arguments, parents, user, hash and exit code; a burst of 1,000
short-lived processes is fully accounted for. Run with each process source
(process.sensor ebpf and proc)."""
import hashlib
import os
import subprocess
import yit
from yit import get

yit.require_root()
t = yit.Test(__file__)
# Both process sources: the eBPF programs and the proc connector.
for sensor, gap_source in (("ebpf", "ebpf"), ("proc", "proc_connector")):
    print("--- process.sensor: %s" % sensor)
    ag = yit.Agent(t, conf={"process": {"sensor": sensor}}, name="agent-" + sensor)

    # One process with known properties.
    script = t.path("child.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\nsleep 0.3\nexit 7\n")
    os.chmod(script, 0o755)
    p = subprocess.Popen(["/bin/sh", script, "arg one", "-x"], cwd=t.dir)
    p.wait()
    start = ag.wait_event(lambda e: get(e, "event.action") == "exec" and get(e, "process.pid") == p.pid,
                          what="start event")
    end = ag.wait_event(lambda e: get(e, "event.action") == "end" and get(e, "process.pid") == p.pid,
                        what="end event")
    if start and end:
        t.check_eq(get(start, "process.executable"), os.path.realpath("/bin/sh"), "executable")
        t.check_eq(get(start, "process.args"), ["/bin/sh", script, "arg one", "-x"], "args")
        t.check_eq(get(start, "process.args_count"), 4, "args_count")
        t.check_eq(get(start, "process.command_line"), "/bin/sh %s arg one -x" % script, "command_line")
        t.check_eq(get(start, "process.working_directory"), t.dir, "working directory")
        t.check_eq(get(start, "process.parent.pid"), os.getpid(), "parent pid")
        t.check_eq(get(start, "process.user.id"), "0", "user id")
        t.check_eq(get(start, "process.user.name"), "root", "user name")
        with open(os.path.realpath("/bin/sh"), "rb") as f:
            t.check_eq(get(start, "process.hash.sha256"), hashlib.sha256(f.read()).hexdigest(),
                       "sha256 of the executable")
        t.check_eq(get(end, "process.exit_code"), 7, "exit code")
        t.check_eq(get(start, "process.entity_id"), get(end, "process.entity_id"),
                   "start and end share the entity id")
        t.check(get(start, "event.sequence") < get(end, "event.sequence"), "start before end")
        me = [e for e in ag.events() if get(e, "process.pid") == os.getpid() and get(e, "process.entity_id")]
        t.check(get(start, "process.parent.entity_id") is not None, "parent entity id present")

    # A process killed by a signal.
    k = subprocess.Popen(["/bin/sleep", "30"])
    ag.wait_event(lambda e: get(e, "event.action") == "exec" and get(e, "process.pid") == k.pid, what="sleep start")
    k.kill()
    k.wait()
    e = ag.wait_event(lambda e: get(e, "event.action") == "end" and get(e, "process.pid") == k.pid,
                      what="sleep end")
    t.check(e is not None and get(e, "yamori.process.exit_signal") == 9 and get(e, "process.exit_code") == 137,
            "signal death reported as 128+9 with the signal")

    # Burst: 1,000 /bin/true from one shell.
    N = 1000
    sh = subprocess.Popen(["/bin/bash", "-c", "for i in $(seq %d); do /bin/true; done" % N])
    sh.wait()
    ag.wait_event(lambda e: get(e, "event.action") == "end" and get(e, "process.pid") == sh.pid,
                  timeout=60, what="burst shell end")
    # Process events are handled in kernel order: once a later process's end
    # is out, every start and end of the burst has been handled.
    m = subprocess.Popen(["/bin/sleep", "0"])
    m.wait()
    ag.wait_event(lambda e: get(e, "event.action") == "end" and get(e, "process.pid") == m.pid,
                  timeout=60, what="marker process end")
    evs = ag.events()
    starts = [e for e in evs if get(e, "event.action") == "exec" and get(e, "process.parent.pid") == sh.pid
              and get(e, "process.executable") == os.path.realpath("/bin/true")]
    ends = [e for e in evs if get(e, "event.action") == "end" and get(e, "process.parent.pid") == sh.pid
            and get(e, "process.name") == "true"]
    gaps = [e for e in evs if get(e, "event.action") == "gap" and get(e, "yamori.gap.source") == gap_source]
    lost = sum(get(g, "yamori.gap.count", 0) for g in gaps)
    unknown = [g for g in gaps if get(g, "yamori.gap.count") is None]
    print("burst: %d starts, %d ends, %d lost (exact), %d overruns" % (len(starts), len(ends), lost, len(unknown)))
    t.check_eq(len(unknown), 0, "no losses of unknown size")
    t.check(len(starts) + lost >= N, "every start seen or counted as lost (%d + %d)" % (len(starts), lost))
    t.check(len(ends) + lost >= N, "every end seen or counted as lost (%d + %d)" % (len(ends), lost))
    t.check(all(get(e, "process.parent.executable") == "/usr/bin/bash" for e in starts), "parents named")
    t.check_eq(len(set(get(e, "process.entity_id") for e in starts)), len(starts), "entity ids unique")
    ag.proc.stop()
t.done()
