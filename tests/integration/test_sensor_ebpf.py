"""eBPF process sensor on real kernel events: 10,000 `/bin/true UNIQUE-ARG`
starts in a tight loop each arrive with their own argument, or their loss is
an exact gap record; the fallback to the proc connector is reported when
`process.sensor` is `proc`, and when the kernel refuses BPF (simulated with
YAMORI_TEST_DENY_BPF=1): `auto` falls back, `ebpf` does not start."""
import hashlib
import os
import subprocess
import sys
import time
import yit
from yit import get

yit.require_root()
t = yit.Test(__file__)

TRUE = os.path.realpath("/bin/true")

# User id changes come from syscall tracepoints, which libbpf finds through
# tracefs: mount it when the machine has not (systemd does at boot).
TRACEFS = "/sys/kernel/tracing"
if not os.path.exists(os.path.join(TRACEFS, "events")):
    r = subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS])
    t.check_eq(r.returncode, 0, "tracefs mounted for the test")
    t.on_cleanup(lambda: subprocess.run(["umount", TRACEFS]))


def status(ag):
    rc, lines = ag.ctl_json("status")
    t.check_eq(rc, 0, "yamorictl status answers")
    return lines[0] if lines else {}


def storm(ag, n, tag):
    """Runs n /bin/true starts from one shell, each with a unique argument;
    returns (shell pid, {argument: start event}, exact losses, all starts)."""
    script = 'i=0; while [ $i -lt %d ]; do /bin/true %s-$i; i=$((i+1)); done' % (n, tag)
    sh = subprocess.Popen(["/bin/bash", "-c", script], cwd=t.dir)
    sh.wait()
    # Events are handled in the order the kernel queued them: once a later
    # process has ended in the output, the storm has been handled.
    m = subprocess.Popen(["/bin/sleep", "0"])
    m.wait()
    ag.wait_event(lambda e: get(e, "event.action") == "end" and get(e, "process.pid") == m.pid,
                  timeout=120, what="marker end after the %s storm" % tag)
    evs = ag.events()
    starts = [e for e in evs if get(e, "event.action") == "exec"
              and get(e, "process.parent.pid") == sh.pid and get(e, "process.executable") == TRUE]
    by_arg = {}
    for e in starts:
        args = get(e, "process.args") or []
        if len(args) == 2 and args[1].startswith(tag + "-"):
            by_arg.setdefault(args[1], []).append(e)
    gaps = [e for e in evs if get(e, "event.action") == "gap"]
    return sh.pid, by_arg, gaps, starts


# --- eBPF: every start has its argument, or the loss is counted exactly.
ag = yit.Agent(t, conf={"process": {"sensor": "ebpf"}})
st = status(ag)
t.check_eq(get(st, "counters.process_sensor"), "ebpf", "status names the eBPF sensor")
t.check(get(st, "counters.process_sensor_fallback") is None, "no fallback reason with eBPF")

N = 10000
t0 = time.monotonic()
pid, by_arg, gaps, starts = storm(ag, N, "ymu")
print("ebpf storm: %d starts seen with their argument of %d, %.1fs" % (len(by_arg), N, time.monotonic() - t0))
t.check(all(len(v) == 1 for v in by_arg.values()), "no start reported twice")
t.check(all(k.split("-", 1)[1].isdigit() and int(k.split("-", 1)[1]) < N for k in by_arg),
        "only the arguments given")
unknown = [g for g in gaps if get(g, "yamori.gap.source") == "ebpf"
           and get(g, "yamori.gap.count") is None]
t.check_eq(len(unknown), 0, "every eBPF loss has its count")
lost = sum(get(g, "yamori.gap.count", 0) for g in gaps if get(g, "yamori.gap.source") == "ebpf")
t.check(len(starts) == len(by_arg), "every start of the storm carries its argument (%d of %d)"
        % (len(by_arg), len(starts)))
t.check(len(by_arg) + lost >= N, "every start seen or counted lost exactly (%d + %d of %d)"
        % (len(by_arg), lost, N))
if lost == 0:
    t.check_eq(len(by_arg), N, "no loss reported, so all starts seen")
sample = by_arg.get("ymu-0", [None])[0] or (starts[0] if starts else None)
if sample is not None:
    t.check_eq(get(sample, "process.working_directory"), t.dir, "working directory from the kernel")
    t.check_eq(get(sample, "process.args_count"), 2, "args_count")
    t.check(get(sample, "process.entity_id") is not None, "entity id present")
    t.check("process.args" not in (get(sample, "yamori.missing") or []), "arguments not missing")
    t.check_eq(get(sample, "process.group.id"), str(os.getgid()), "group id from the kernel")
    with open("/proc/self/loginuid") as f:
        login = f.read().strip()
    if login == "4294967295":
        t.check(get(sample, "yamori.process.login_uid") is None, "no login uid when unset")
    else:
        t.check_eq(get(sample, "yamori.process.login_uid"), login, "login uid from the kernel")
        with open("/proc/self/sessionid") as f:
            t.check_eq(get(sample, "yamori.process.session_id"), int(f.read().strip()),
                       "session id from the kernel")
# A login: a process that sets its login uid (as pam_loginuid does) and then
# starts a program; the program's start names the login and its session.
sess = t.path("session.txt")
lg = subprocess.Popen(["/bin/sh", "-c", 'echo 4242 > /proc/self/loginuid && '
                       'cat /proc/self/sessionid > "$0" && exec /bin/true ym-login', sess])
lg.wait()
e = ag.wait_event(lambda e: get(e, "event.action") == "exec" and get(e, "process.pid") == lg.pid
                  and get(e, "process.args") == ["/bin/true", "ym-login"], what="start after login")
with open(sess) as f:
    session = int(f.read().strip())
t.check_eq(get(e, "yamori.process.login_uid"), "4242", "login uid of the start")
t.check_eq(get(e, "yamori.process.session_id"), session, "session id of the start")

# The loader's environment variables are kept; the rest of the environment
# is not.
env = {"PATH": "/usr/bin:/bin", "LD_PRELOAD": "/nonexistent/ym-preload.so",
       "YM_SECRET": "not-reported", "LD_LIBRARY_PATH": "/opt/ym-lib"}
lp = subprocess.Popen(["/bin/true", "ym-env"], env=env, stderr=subprocess.DEVNULL)
lp.wait()
e = ag.wait_event(lambda e: get(e, "event.action") == "exec" and get(e, "process.pid") == lp.pid,
                  what="start with LD_PRELOAD")
t.check_eq(sorted(get(e, "process.env_vars") or []),
           ["LD_LIBRARY_PATH=/opt/ym-lib", "LD_PRELOAD=/nonexistent/ym-preload.so"],
           "LD_PRELOAD and LD_LIBRARY_PATH reported, nothing else")
if sample is not None and not any(k.startswith("LD_") for k in os.environ):
    t.check(get(sample, "process.env_vars") is None, "no env_vars without LD_ variables")

# A binding that does not fit (a long LD_LIBRARY_PATH first) cannot hide
# the loss: the start names process.env_vars as missing.
env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": "/" * 2100 + "opt/ym-long",
       "LD_PRELOAD": "/nonexistent/ym-preload2.so"}
lp = subprocess.Popen(["/bin/true", "ym-env-long"], env=env, stderr=subprocess.DEVNULL)
lp.wait()
e = ag.wait_event(lambda e: get(e, "event.action") == "exec" and get(e, "process.pid") == lp.pid,
                  what="start with a long LD_LIBRARY_PATH")
t.check("process.env_vars" in (get(e, "yamori.missing") or []),
        "a binding left out is said missing (%r, %r)" % (get(e, "yamori.missing"),
                                                       get(e, "process.env_vars")))
if sample is not None:
    t.check("process.env_vars" not in (get(sample, "yamori.missing") or []),
            "an ordinary start names no environment missing")

# A program run from memory (memfd_create + fexecve, as fileless malware
# does) is named as the kernel names it, never "/".
MEMFD = r"""
import os, sys
fd = os.memfd_create("ym-fileless")
with open("/bin/sleep", "rb") as f:
    os.write(fd, f.read())
os.execve(fd, ["ym-fileless", "2"], {})
"""
mp = subprocess.Popen([sys.executable, "-c", MEMFD])
e = ag.wait_event(lambda e: get(e, "event.action") == "exec" and get(e, "process.pid") == mp.pid
                  and (get(e, "process.args") or [None])[0] == "ym-fileless", what="start from a memfd")
t.check((get(e, "process.executable") or "").startswith("/memfd:ym-fileless"),
        "a program run from a memfd is named so (%r)" % get(e, "process.executable"))
mp.kill()
mp.wait()

# A process that drops to another user: its end names the new user.
dp = subprocess.Popen([sys.executable, "-c", "import os, time; os.setuid(65534); time.sleep(0.2)"])
dp.wait()
e = ag.wait_event(lambda e: get(e, "event.action") == "end" and get(e, "process.pid") == dp.pid,
                  what="end after setuid")
t.check_eq(get(e, "process.user.id"), "65534", "user id change followed (setuid)")

st = status(ag)
t.check_eq(get(st, "counters.ebpf_uid_events"), True, "status: user id changes followed")
t.check(get(st, "counters.ebpf_events", 0) >= 3 * N, "ebpf_events counts the records (%s)"
        % get(st, "counters.ebpf_events"))

# The start's entity id is the one /proc gives (start time in clock ticks
# since boot), so the eBPF and /proc paths name a process alike.
sl = subprocess.Popen(["/bin/sleep", "5"], cwd=t.dir)
e = ag.wait_event(lambda e: get(e, "event.action") == "exec" and get(e, "process.pid") == sl.pid,
                  what="sleep start")
with open("/proc/%d/stat" % sl.pid) as f:
    ticks = int(f.read().rsplit(")", 1)[1].split()[19])
with open("/proc/sys/kernel/random/boot_id") as f:
    boot_id = f.read().strip()
want = hashlib.sha256(("%s:%d:%d" % (boot_id, sl.pid, ticks)).encode()).hexdigest()[:len(get(e, "process.entity_id") or "")]
t.check_eq(get(e, "process.entity_id"), want, "entity id from the kernel's start time matches /proc")
sl.kill()
sl.wait()
ag.proc.stop()

# --- process.sensor: proc forces the proc connector, and status says so.
ag = yit.Agent(t, conf={"process": {"sensor": "proc"}}, name="proc")
st = status(ag)
t.check_eq(get(st, "counters.process_sensor"), "proc_connector", "status names the proc connector")
t.check_eq(get(st, "counters.process_sensor_fallback"), "process.sensor is proc",
           "status says why eBPF is not used")
M = 2000
pid, by_arg, gaps, starts = storm(ag, M, "ymp")
lacking = len(starts) - len(by_arg)
print("proc connector storm: %d of %d starts seen, %d without their argument" % (len(starts), M, lacking))
t.check(len(starts) > 0, "the proc connector reports starts")
ag.proc.stop()

# --- BPF refused by the kernel (simulated): auto falls back and says why.
os.environ["YAMORI_TEST_DENY_BPF"] = "1"
try:
    ag = yit.Agent(t, name="auto")
    st = status(ag)
    t.check_eq(get(st, "counters.process_sensor"), "proc_connector", "auto falls back")
    t.check("refused" in (get(st, "counters.process_sensor_fallback") or ""),
            "the fallback reason is shown (%s)" % get(st, "counters.process_sensor_fallback"))
    p = subprocess.Popen(["/bin/true", "ym-fallback"])
    p.wait()
    t.check(ag.wait_event(lambda e: get(e, "event.action") == "exec" and get(e, "process.pid") == p.pid,
                          what="start after fallback") is not None, "starts reported after the fallback")
    ag.proc.stop()
    # process.sensor: ebpf insists: the agent does not start.
    ag = yit.Agent(t, conf={"process": {"sensor": "ebpf"}}, name="insist", wait=False)
    t.wait_for(lambda: ag.proc.poll() is not None, timeout=20, what="agent exits without eBPF")
    t.check(ag.proc.poll() not in (None, 0), "ebpf without BPF: the agent exits with an error")
    t.check("eBPF process sensor not used" in ag.proc.stderr_text(), "the log says why")
finally:
    del os.environ["YAMORI_TEST_DENY_BPF"]
t.done()
