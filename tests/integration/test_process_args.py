"""No silent loss in program-start events: thousands of very short
processes, each with a unique argument, run under the real agent. Every
start event produced for them either carries its arguments (the unique one)
or names process.args in yamori.missing; likewise for the executable. The
starts seen plus the starts the kernel reported lost (exact gap records)
account for every process started, and no start event anywhere has an
empty argument list without saying it is missing.

The processes are started in small batches and reaped only after each
batch, so many of them are zombies while the agent reads /proc: a zombie's
command line reads empty, which once came out as `process.args: []` with
nothing missing."""
import os
import re
import subprocess
import sys
import yit
from yit import get

yit.require_root()
t = yit.Test(__file__)
# The proc connector's path, which reads /proc after the event: the eBPF
# source has the arguments from the kernel (it.sensor_ebpf checks it).
ag = yit.Agent(t, conf={"process": {"sensor": "proc"}})

N = 3000
TAG = "yamori-args-%d" % os.getpid()
TRUE = os.path.realpath("/bin/true")
# A launcher of its own, so that its children are easy to tell apart.
LAUNCH = r"""
import os, sys
n, tag, prog = int(sys.argv[1]), sys.argv[2], sys.argv[3]
started = 0
batch = []
for i in range(1, n + 1):
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(prog, [prog, "%s-%d" % (tag, i)])
        finally:
            os._exit(127)
    started += 1
    batch.append(pid)
    if len(batch) == 25:
        for p in batch:
            os.waitpid(p, 0)
        batch = []
for p in batch:
    os.waitpid(p, 0)
print(started)
"""
launcher = subprocess.Popen([sys.executable, "-c", LAUNCH, str(N), TAG, TRUE],
                            stdout=subprocess.PIPE)
out, _ = launcher.communicate(timeout=300)
t.check_eq(launcher.returncode, 0, "the launcher ran")
started = int(out.decode().strip() or 0)
t.check_eq(started, N, "processes started (as the launcher counted them)")

# Process events are handled in kernel order: once a later process's end
# is out, every start of the burst has been handled.
m = subprocess.Popen(["/bin/sleep", "0"])
m.wait()
ag.wait_event(lambda e: get(e, "event.action") == "end" and get(e, "process.pid") == m.pid,
              timeout=120, what="marker process end")
evs = ag.events()

arg_re = re.compile(re.escape(TAG) + r"-(\d+)$")
mine, seen_numbers, bad = [], {}, []
for e in evs:
    if get(e, "event.action") != "exec":
        continue
    args = get(e, "process.args")
    missing = get(e, "yamori.missing") or []
    if args == [] and "process.args" not in missing:
        bad.append(e)  # anywhere on this machine: an empty list is never the whole story
    tagged = args is not None and len(args) >= 2 and arg_re.match(str(args[1]))
    if tagged:
        n = int(tagged.group(1))
        seen_numbers[n] = seen_numbers.get(n, 0) + 1
    if tagged or get(e, "process.parent.pid") == launcher.pid:
        mine.append(e)

t.check_eq(len(bad), 0, "no start event with an empty argument list and nothing missing%s"
           % ("" if not bad else ": %r" % [(get(e, "process.pid"), get(e, "process.executable"),
                                              get(e, "yamori.missing")) for e in bad[:3]]))
with_args = [e for e in mine if get(e, "process.args")]
without = [e for e in mine if not get(e, "process.args")]
for e in with_args:
    if get(e, "process.args")[0] != TRUE or len(get(e, "process.args")) != 2:
        t.check(False, "arguments as given: %r" % get(e, "process.args"))
        break
t.check(all(c == 1 for c in seen_numbers.values()), "each unique argument seen once")
t.check(all(get(e, "process.executable") == TRUE or "process.executable" in
            (get(e, "yamori.missing") or []) for e in mine),
        "each start names the program or says it is missing")
t.check(all("process.args" in (get(e, "yamori.missing") or []) for e in without),
        "each start without arguments names process.args in yamori.missing")
gaps = [e for e in evs if get(e, "event.action") == "gap" and get(e, "yamori.gap.source") == "proc_connector"]
lost = sum(get(g, "yamori.gap.count", 0) for g in gaps)
unknown = [g for g in gaps if get(g, "yamori.gap.count") is None]
print("info: %d started, %d starts with arguments, %d with args missing, %d lost (exact), "
      "%d overruns" % (started, len(with_args), len(without), lost, len(unknown)), flush=True)
t.check_eq(len(unknown), 0, "no kernel-side loss of unknown size")
t.check(len(with_args) + len(without) + lost >= started,
        "every start seen or counted lost (%d + %d + %d >= %d)"
        % (len(with_args), len(without), lost, started))
t.check(len(with_args) + len(without) <= started, "no start counted twice")
t.done()
