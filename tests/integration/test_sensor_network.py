"""Network sensor on real kernel events: TCP connections on loopback between
the test's own listener and a client started as a subprocess with a unique
argument. The agent reports the connect with the client's pid, program and
arguments and both addresses and ports; the accepted side (attributed to
the test, which made the socket listen); the listen itself; the close on
both sides with the bytes each way (a known number sent); the same over
IPv6 ([::1]); a refused connection (connection-failed, with the caller); a
burst of 200 connections from one process to one peer
summarised into a few events whose yamori.network.count adds up to 200; a
reverse-shell-like bash /dev/tcp connection raising the behaviour alert of
the rule "Shell making an outgoing TCP connection"; network.enabled false
reported in status and no network events; and with BPF refused, status
says network_sensor off and why."""
import os
import socket
import subprocess
import sys
import threading
import time
import yit
from yit import get

yit.require_root()
t = yit.Test(__file__)

PY = os.path.realpath(sys.executable)
BASH = os.path.realpath("/bin/bash")
SHELL_RULE = "3f6c2a8e-5b1d-4e7a-9c4f-8a2d7e1b6c90"
SENT = 12345  # bytes the client sends
REPLY = 777   # bytes the server sends back


def status(ag):
    rc, lines = ag.ctl_json("status")
    t.check_eq(rc, 0, "yamorictl status answers")
    return lines[0] if lines else {}


class Listener:
    """A TCP listener in this process: each connection reads everything the
    client sends, answers REPLY bytes and closes."""

    def __init__(self, family, addr):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((addr, 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.received = []
        self.peers = []
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            self.peers.append(peer[1])
            c.settimeout(10)
            n = 0
            try:
                while True:
                    b = c.recv(65536)
                    if not b:
                        break
                    n += len(b)
                    if n >= SENT:
                        c.sendall(b"r" * REPLY)
            except OSError:
                pass
            self.received.append(n)
            c.close()

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


# The client: connects, sends SENT bytes, reads the reply, closes. Its last
# argument is unique so that its events can be told from any other.
CLIENT = r"""
import socket, sys
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.connect((sys.argv[1], int(sys.argv[2])))
print(s.getsockname()[1], flush=True)
s.sendall(b'x' * %d)
got = 0
while got < %d:
    b = s.recv(65536)
    if not b:
        break
    got += len(b)
s.shutdown(socket.SHUT_WR)
s.recv(1)
s.close()
""" % (SENT, REPLY)


def net(e):
    return get(e, "event.dataset") == "yamori.network"


def one_connection(ag, family, addr, tag, ntype):
    lst = Listener(family, addr)
    cl = subprocess.run([PY, "-c", CLIENT, addr, str(lst.port), tag], stdout=subprocess.PIPE,
                        timeout=30)
    t.need_eq(cl.returncode, 0, "%s: client ran" % ntype)
    cport = int(cl.stdout.split()[0])
    t.wait_for(lambda: len(lst.received) == 1, what="%s: server side done" % ntype)
    t.check_eq(lst.received, [SENT], "%s: the server received what was sent" % ntype)
    lst.close()
    port = lst.port
    me = os.getpid()

    def find(action, pid):
        return ag.wait_event(lambda e: net(e) and get(e, "event.action") == action
                             and get(e, "process.pid") == pid
                             and port in (get(e, "destination.port"), get(e, "source.port")),
                             timeout=20, what="%s: %s by %d" % (ntype, action, pid))

    lis = find("listening", me)
    if lis is not None:
        t.check_eq(get(lis, "source.port"), port, "%s: listening port" % ntype)
        t.check_eq(get(lis, "event.type"), ["start"], "%s: listening type" % ntype)

    c = find("connection-attempted", cl_pid(cl))
    if c is not None:
        t.check_eq(get(c, "event.category"), ["network"], "%s: category" % ntype)
        t.check_eq(get(c, "event.type"), ["connection", "start"], "%s: type of connect" % ntype)
        t.check_eq(get(c, "network.transport"), "tcp", "%s: transport" % ntype)
        t.check_eq(get(c, "network.type"), ntype, "%s: network.type" % ntype)
        t.check_eq(get(c, "network.direction"), "egress", "%s: direction of connect" % ntype)
        t.check_eq(get(c, "yamori.network.initiated"), True, "%s: initiated" % ntype)
        t.check_eq(get(c, "source.ip"), addr, "%s: source.ip" % ntype)
        t.check_eq(get(c, "source.port"), cport, "%s: source.port is the client's" % ntype)
        t.check_eq(get(c, "destination.ip"), addr, "%s: destination.ip" % ntype)
        t.check_eq(get(c, "destination.port"), port, "%s: destination.port" % ntype)
        t.check_eq(get(c, "process.executable"), PY, "%s: the client's program" % ntype)
        t.check_eq((get(c, "process.args") or [])[-1:], [tag], "%s: the client's arguments" % ntype)
        t.check(get(c, "process.entity_id") is not None, "%s: entity id" % ntype)
        t.check_eq(get(c, "yamori.network.count"), 1, "%s: count 1" % ntype)

    a = find("connection-accepted", me)
    if a is not None:
        t.check_eq(get(a, "network.direction"), "ingress", "%s: accept is ingress" % ntype)
        t.check_eq(get(a, "yamori.network.initiated"), False, "%s: not initiated" % ntype)
        t.check_eq(get(a, "source.port"), cport, "%s: accept source is the client" % ntype)
        t.check_eq(get(a, "destination.port"), port, "%s: accept destination is ours" % ntype)
        t.check_eq(get(a, "process.executable"), PY, "%s: accept names the listener's program"
                   % ntype)

    for pid, direction, src_bytes, dst_bytes in ((cl_pid(cl), "egress", SENT, REPLY),
                                                 (me, "ingress", SENT, REPLY)):
        e = ag.wait_event(lambda e: net(e) and get(e, "event.action") == "disconnect-received"
                          and get(e, "process.pid") == pid and get(e, "destination.port") == port,
                          timeout=20, what="%s: %s close" % (ntype, direction))
        if e is None:
            continue
        t.check_eq(get(e, "event.type"), ["connection", "end"], "%s: close type" % ntype)
        t.check_eq(get(e, "network.direction"), direction, "%s: %s close direction" % (ntype, direction))
        t.check_eq(get(e, "source.port"), cport, "%s: %s close source port" % (ntype, direction))
        t.check_eq(get(e, "source.bytes"), src_bytes, "%s: %s close: source.bytes" % (ntype, direction))
        t.check_eq(get(e, "destination.bytes"), dst_bytes,
                   "%s: %s close: destination.bytes" % (ntype, direction))


_pids = {}


def cl_pid(cl):
    """The client's pid: subprocess.run does not keep it, so the client's
    events are found by its unique argument first."""
    if id(cl) in _pids:
        return _pids[id(cl)]
    tag = cl.args[-1]
    e = ag.wait_event(lambda e: get(e, "event.action") == "exec"
                      and (get(e, "process.args") or [])[-1:] == [tag], what="client start " + tag)
    pid = get(e, "process.pid") if e else -1
    _pids[id(cl)] = pid
    return pid


ag = yit.Agent(t, conf={"process": {"sensor": "ebpf"}})
st = status(ag)
t.check_eq(get(st, "counters.network_sensor"), "on", "status: network sensor on")

tag = "ym-net4-%d" % os.getpid()
one_connection(ag, socket.AF_INET, "127.0.0.1", tag, "ipv4")
one_connection(ag, socket.AF_INET6, "::1", "ym-net6-%d" % os.getpid(), "ipv6")

# ---- a refused connection: connection-failed with the caller ----
probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
probe.bind(("127.0.0.1", 0))
closed_port = probe.getsockname()[1]  # bound, never listening: the kernel refuses
REFUSED = ("import socket, sys\ntry:\n    socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
           "except ConnectionRefusedError:\n    sys.exit(0)\nsys.exit(1)\n")
rf = subprocess.Popen([PY, "-c", REFUSED, str(closed_port), "ym-refused"])
rf.wait()
t.check_eq(rf.returncode, 0, "the connection was refused")
e = ag.wait_event(lambda e: net(e) and get(e, "event.action") == "connection-failed"
                  and get(e, "destination.port") == closed_port, timeout=20, what="refused connection")
if e is not None:
    t.check_eq(get(e, "process.pid"), rf.pid, "refused: the caller's pid")
    t.check_eq(get(e, "event.outcome"), "failure", "refused: outcome failure")
    t.check_eq(get(e, "network.direction"), "egress", "refused: egress")
probe.close()

# ---- a burst of 200 connections from one process to one peer ----
N = 200
lst = Listener(socket.AF_INET, "127.0.0.1")
BURST = r"""
import socket, sys
for i in range(%d):
    s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
    s.sendall(b'x' * %d)
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
    s.close()
""" % (N, SENT)
t0 = time.monotonic()
b = subprocess.Popen([PY, "-c", BURST, str(lst.port), "ym-burst"])
b.wait()
t.need_eq(b.returncode, 0, "burst client ran")
t.wait_for(lambda: len(lst.received) == N, timeout=30, what="server accepted the burst")
lst.close()
produced = lst.accepted
t.check_eq(produced, N, "the burst produced %d connections" % N)


def burst_events(action, pid, port_field):
    return [e for e in ag.events() if net(e) and get(e, "event.action") == action
            and get(e, "process.pid") == pid and get(e, port_field) == lst.port]


def counted(action, pid):
    return sum(get(e, "yamori.network.count", 0) for e in burst_events(action, pid, "destination.port"))


# The summary is written when the 10 s window of the first connection ends.
t.wait_for(lambda: counted("connection-attempted", b.pid) >= produced, timeout=40,
           what="burst summary of the connects")
t.wait_for(lambda: counted("disconnect-received", b.pid) >= produced, timeout=40,
           what="burst summary of the closes")
t.wait_for(lambda: counted("connection-accepted", os.getpid()) >= produced, timeout=40,
           what="burst summary of the accepts")
time.sleep(1.5)  # nothing more must come
for action, pid in (("connection-attempted", b.pid), ("disconnect-received", b.pid),
                    ("connection-accepted", os.getpid())):
    evs = burst_events(action, pid, "destination.port")
    total = counted(action, pid)
    print("burst %s: %d events, counts %s" % (action, len(evs),
                                               [get(e, "yamori.network.count") for e in evs]))
    t.check_eq(total, produced, "burst %s: counts add up to the connections made" % action)
    t.check(len(evs) <= 4, "burst %s: summarised into few events (%d)" % (action, len(evs)))
closes = burst_events("disconnect-received", b.pid, "destination.port")
t.check_eq(sum(get(e, "source.bytes", 0) for e in closes), produced * SENT,
           "burst closes: the bytes sent add up")
summ = [e for e in burst_events("connection-attempted", b.pid, "destination.port")
        if get(e, "yamori.network.count", 0) > 1]
t.check(len(summ) >= 1, "a summary event exists")
if summ:
    t.check_eq(get(summ[0], "process.executable"), PY, "summary names the program")
    t.check(get(summ[0], "event.start") is not None and get(summ[0], "event.end") is not None,
            "summary has event.start and event.end")
st = status(ag)
t.check(get(st, "counters.network_summarised", 0) >= 3 * (N - 1) - 3,
        "status counts the summarised connections (%s)" % get(st, "counters.network_summarised"))

# ---- a reverse-shell-like connection from bash ----
lst = Listener(socket.AF_INET, "127.0.0.1")
rs = subprocess.Popen([BASH, "-c", "exec 3<>/dev/tcp/127.0.0.1/%d; echo hi >&3" % lst.port])
rs.wait()
c = ag.wait_event(lambda e: net(e) and get(e, "event.action") == "connection-attempted"
                  and get(e, "process.pid") == rs.pid, timeout=20, what="bash connection")
t.check(c is not None and get(c, "process.executable") == BASH, "the shell's connection names bash")
al = ag.wait_event(lambda e: get(e, "event.kind") == "alert" and get(e, "rule.id") == SHELL_RULE
                   and get(e, "process.pid") == rs.pid, timeout=20, what="reverse shell alert")
if al is not None:
    t.check_eq(get(al, "event.dataset"), "yamori.behaviour", "behaviour alert")
    t.check_eq(get(al, "destination.port"), lst.port, "the alert names the peer's port")
    t.check("attack.t1059.004" in str(get(al, "threat.technique.id")) or
            "T1059.004" in (get(al, "threat.technique.id") or []), "the alert names T1059.004")
lst.close()

# ---- network.enabled false: no network events, status says why ----
conf = dict(ag.conf)
conf["network"] = {"enabled": False}
ag.write_conf(conf)
ag.proc.signal(1)  # SIGHUP: reload
t.wait_for(lambda: get(status(ag), "counters.network_sensor") == "off (network.enabled is false)",
           what="status after disabling")
lst = Listener(socket.AF_INET, "127.0.0.1")
off = subprocess.run([PY, "-c", CLIENT, "127.0.0.1", str(lst.port), "ym-net-off"],
                     stdout=subprocess.DEVNULL, timeout=30)
t.wait_for(lambda: len(lst.received) == 1, what="server side done (disabled)")
lst.close()
mk = subprocess.Popen(["/bin/true", "ym-net-marker"])
mk.wait()
ag.wait_event(lambda e: get(e, "event.action") == "end" and get(e, "process.pid") == mk.pid,
              what="marker after the disabled connection")
time.sleep(1)
t.check(not any(net(e) and get(e, "destination.port") == lst.port for e in ag.events()),
        "no network events while network.enabled is false")
ag.proc.stop()

# ---- BPF refused: no network events, status says why ----
os.environ["YAMORI_TEST_DENY_BPF"] = "1"
try:
    ag = yit.Agent(t, name="nobpf")
    st = status(ag)
    ns = get(st, "counters.network_sensor") or ""
    t.check(ns.startswith("off (") and "eBPF" in ns, "status without BPF: network off (%s)" % ns)
    ag.proc.stop()
finally:
    del os.environ["YAMORI_TEST_DENY_BPF"]
t.done()
