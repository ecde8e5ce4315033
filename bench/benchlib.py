"""Helpers the benchmarks share: where the build is, the machine's facts,
process CPU and memory from /proc, the agent configuration of the sensor
benchmarks, and copies of the binary and rules a run measures."""
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import time


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BUILD_DIR = os.environ.get("YAMORI_BUILD_DIR", os.path.join(REPO, "build"))

CLK_TCK = os.sysconf("SC_CLK_TCK")

# The storm benchmarks measure the sensors: scanning on write and the exec
# guard are turned off (the scanning benchmarks measure them), the rules are
# the repository's (--rules), and state, output and control socket are
# private to the run. --agent-conf merges more settings over these.
SENSORS_ONLY = {"scan": {"on_write": False}, "policy": {"exec": "off"}}


def merge(dst, src):
    """Deep-merges the dict src into dst; returns dst."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def agent_conf(workdir, output, rules_dir, extra):
    """The agent configuration for one run."""
    sock = os.path.join(workdir, "ctl.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    conf = {"state_dir": os.path.join(workdir, "agent-state"), "output": output,
            "rules": {"dirs": [rules_dir]}, "control": {"socket": sock}}
    merge(conf, json.loads(json.dumps(SENSORS_ONLY)))
    return merge(conf, extra)


def agent_notices(err_path):
    """The agent's startup lines worth keeping (rules, sensors armed)."""
    keep = []
    try:
        with open(err_path, errors="replace") as f:
            for line in f:
                if "rules" in line or "sensors armed" in line:
                    keep.append(line.strip().split(" ", 1)[-1])
    except OSError:
        pass
    return keep[:6]


def snapshot_agent(binary, workdir):
    """Copies the agent binary into the work directory, so that every run uses
    the same build even when the build directory is rebuilt meanwhile.
    Returns the copy's path and what it was built from."""
    dst = os.path.join(workdir, "yamorid")
    shutil.copy2(binary, dst)
    with open(dst, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    info = {"binary": binary, "sha256": digest,
            "built": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(os.stat(binary).st_mtime))}
    try:
        info["version"] = subprocess.run([dst, "--version"], capture_output=True, text=True,
                                         timeout=10).stdout.split("\n")[0]
        info["git_head"] = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                          capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "agent",
                                "common"], capture_output=True, text=True).stdout.strip()
        info["sources_modified"] = len(dirty.splitlines()) if dirty else 0
    except (OSError, subprocess.SubprocessError):
        pass
    return dst, info


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def status_kb(pid, key):
    """A kB field (VmRSS, VmHWM) of /proc/PID/status."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def loadavg():
    return [round(x, 2) for x in os.getloadavg()]


def git_state():
    """Commit of the tree the binaries were built from, and whether it had
    uncommitted changes (read-only git queries)."""
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip() != ""
        return {"head": head, "uncommitted_changes": dirty}
    except OSError:
        return {}


def other_agents(own_pids):
    n = 0
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in own_pids:
            continue
        try:
            with open("/proc/%s/comm" % d) as f:
                if f.read().strip() == "yamorid":
                    n += 1
        except OSError:
            pass
    return n


def snapshot_rules(src, work):
    """Copies the rule files (*.yar, *.yara directly in src) into the work
    directory, so that the whole run uses one version of them even when the
    tree changes meanwhile. Returns (dir, {file: sha256})."""
    import hashlib
    dst = os.path.join(work, "rules")
    os.makedirs(dst)
    sums = {}
    for n in sorted(os.listdir(src)):
        p = os.path.join(src, n)
        if n.endswith((".yar", ".yara")) and os.path.isfile(p):
            shutil.copyfile(p, os.path.join(dst, n))
            with open(p, "rb") as f:
                sums[n] = hashlib.sha256(f.read()).hexdigest()
    return dst, sums


def fmt(v, nd=0):
    if v is None:
        return "-"
    if isinstance(v, float):
        return ("{:,.%df}" % nd).format(v)
    if isinstance(v, int):
        return "{:,}".format(v)
    return str(v)


def machine_info():
    info = {"nproc": os.cpu_count(), "kernel": platform.release()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["mem_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        with open("/etc/debian_version") as f:
            info["debian"] = f.read().strip()
    except OSError:
        pass
    return info


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def stop_proc(p, timeout=5.0):
    """SIGTERM, then SIGKILL after timeout seconds. Returns True when the
    process ended on SIGTERM (or had already ended), False when it had to be
    killed."""
    if p is None or p.poll() is not None:
        return True
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return False
