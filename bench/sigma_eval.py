#!/usr/bin/env python3
"""Behaviour rules: Sigma events evaluated per second on one core.

Compiles two rule sets with `yamori-console rules compile-sigma` and times
the agent's evaluator (agent/src/sigma.c) on synthetic events with the
workload bench/sigma_bench.c (compiled on the fly against the build's
libraries; one thread, so the figure is per core):

  own        40 rules written for this benchmark in the shape of the
             project's behaviour rules (process starts and file writes on
             Linux: shells, downloads, persistence paths, ...). They are not
             the default rule set, which does not exist yet.
  generated  N rules (default 1,500) generated in the shape of a large
             public collection: mostly process starts with Image|endswith
             and CommandLine|contains lists, some |all, some filters under
             `not`, some regexes, some file rules; most of their literals are
             rare words, some are common ones (" -c ", "/tmp/", "http") that
             do occur in the events (always beside a rare one that must also
             match, so that the generated rules rarely fire); 3% have only a
             common literal beside a regex, so the prefilter lets them through
             often and the regex (PCRE2 JIT) decides.

The events (default 2,000, seeded) are synthetic: 75% process starts of
everyday programs (git, gcc, make, python3, apt, ls, ...) with their
arguments, parent, working directory and user, 25% file writes under home,
/tmp and /var; a few are made to match the own rules.

Events per second are per CPU second of the evaluating thread
(CLOCK_THREAD_CPUTIME_ID), so that other work on the machine does not
lower them; per wall second is in the JSON too. For each set the workload
reports two figures: `fields` hands the event over
by field index with the values taken out of the JSON beforehand (as the
agent will hand over its own event structure), `cjson` looks every field up
in the parsed JSON on each evaluation. Also: rules evaluated in full per
event (after the prefilter), rules without a prefilter, load time, and the
memory the loaded rules take.

    bench/sigma_eval.py [--rules 1500] [--events 2000] [--seconds 5] [--json OUT]

This is a benchmark, not a test: it never fails on a figure.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import BUILD_DIR, REPO, machine_info, loadavg  # noqa: E402


def rule_yaml(rid, title, category, detection, condition, level="medium", tags=()):
    lines = ["title: %s" % title, "id: %s" % rid, "status: test", "level: %s" % level]
    if tags:
        lines.append("tags: [%s]" % ", ".join(tags))
    lines += ["logsource:", "  category: %s" % category, "  product: linux", "detection:"]
    for name, items in detection:
        if isinstance(items, list):  # list of maps
            lines.append("  %s:" % name)
            for m in items:
                first = True
                for k, v in m.items():
                    lines.append("    %s %s: %s" % ("-" if first else " ", k, json.dumps(v)))
                    first = False
        else:
            lines.append("  %s:" % name)
            for k, v in items.items():
                lines.append("    %s: %s" % (k, json.dumps(v)))
    lines.append("  condition: %s" % condition)
    return "\n".join(lines) + "\n"


SHELLS = ["/sh", "/bash", "/dash", "/zsh"]
INTERP = ["/python3", "/python", "/perl", "/ruby", "/php"]


def own_rules():
    """40 benchmark rules (process starts and file writes)."""
    P, F = "process_creation", "file_event"
    r = []

    def add(title, cat, det, cond, level="medium", tech="t1059"):
        r.append(rule_yaml("bench-own-%02d" % (len(r) + 1), title, cat, det, cond, level,
                           ("attack.%s" % tech,)))

    add("Decoded text run by a shell", P,
        [("sel", {"CommandLine|contains|all": ["base64", " -d"]}),
         ("pipe", {"CommandLine|contains": ["| sh", "|sh", "| bash", "|bash"]})],
        "sel and pipe", "high", "t1140")
    add("Download piped to a shell", P,
        [("dl", {"CommandLine|contains": ["curl ", "wget "]}),
         ("sh", {"CommandLine|re": r"\|\s*(ba|da|z)?sh\b"})], "dl and sh", "high", "t1105")
    add("Shell redirected to /dev/tcp", P, [("sel", {"CommandLine|contains": "/dev/tcp/"})],
        "sel", "critical", "t1059.004")
    add("Interpreter spawns a pty", P,
        [("sel", {"Image|contains": ["python", "perl"], "CommandLine|contains|all": ["pty", "spawn"]})],
        "sel", "high", "t1059.006")
    add("Netcat runs a program", P,
        [("sel", {"Image|endswith": ["/nc", "/ncat", "/netcat"],
                  "CommandLine|contains": [" -e ", " -c "]})], "sel", "high", "t1059.004")
    add("Shell history removed", P,
        [("sel", {"CommandLine|contains": ["history -c", ".bash_history", ".zsh_history"]}),
         ("rm", {"Image|endswith": ["/rm", "/shred", "/truncate", "/ln"]})],
        "sel and rm", "medium", "t1070.003")
    add("Crontab replaced from a file", P,
        [("sel", {"Image|endswith": "/crontab"}), ("f", {"CommandLine|re": r"crontab\s+(-u\s+\S+\s+)?/"})],
        "sel and f", "medium", "t1053.003")
    add("SUID bit set", P,
        [("sel", {"Image|endswith": "/chmod", "CommandLine|contains": ["u+s", "4755", "4777", "+s "]})],
        "sel", "high", "t1548.001")
    add("Capabilities set", P, [("sel", {"Image|endswith": "/setcap"})], "sel", "medium", "t1548")
    add("Discovery from an interpreter", P,
        [("sel", {"Image|endswith": ["/whoami", "/id", "/uname", "/hostname", "/ifconfig"],
                  "ParentImage|endswith": INTERP})], "sel", "low", "t1033")
    add("Shadow file read", P,
        [("sel", {"CommandLine|contains": ["/etc/shadow", "/etc/gshadow"]}),
         ("filter", {"Image|endswith": ["/passwd", "/chpasswd", "/useradd", "/usermod"]})],
        "sel and not filter", "high", "t1003.008")
    add("Archive then encrypt", P,
        [("sel", {"CommandLine|contains|all": ["tar ", "openssl", "enc"]})], "sel", "medium",
        "t1560.001")
    add("File times copied", P,
        [("sel", {"Image|endswith": "/touch", "CommandLine|contains": [" -r ", " -d ", " -t "]})],
        "sel", "low", "t1070.006")
    add("Interpreter spawns a shell", P,
        [("sel", {"ParentImage|endswith": INTERP, "Image|endswith": SHELLS})], "sel", "medium",
        "t1059.004")
    add("Program started from a temporary directory", P,
        [("sel", {"Image|startswith": ["/tmp/", "/dev/shm/", "/var/tmp/"]})], "sel", "medium",
        "t1204")
    add("Program in a hidden directory", P, [("sel", {"Image|contains": "/."})], "sel", "low",
        "t1564.001")
    add("Kernel module loaded", P,
        [("sel", {"Image|endswith": ["/insmod", "/modprobe"], "CommandLine|contains": ".ko"})],
        "sel", "medium", "t1547.006")
    add("Firewall rules flushed", P,
        [("sel", {"Image|endswith": ["/iptables", "/nft"], "CommandLine|contains": [" -F", " flush"]})],
        "sel", "medium", "t1562.004")
    add("Key added to authorized_keys", P,
        [("sel", {"CommandLine|contains": "authorized_keys"}),
         ("w", {"CommandLine|contains": [">>", "tee "]})], "sel and w", "high", "t1098.004")
    add("Service enabled from a temporary path", P,
        [("sel", {"Image|endswith": "/systemctl", "CommandLine|contains|all": ["enable", "/tmp/"]})],
        "sel", "high", "t1543.002")
    add("User account created", P, [("sel", {"Image|endswith": ["/useradd", "/adduser"]})],
        "sel", "low", "t1136.001")
    add("Socat to an address", P,
        [("sel", {"Image|endswith": "/socat"}),
         ("ip", {"CommandLine|re": r"(?:\d{1,3}\.){3}\d{1,3}:\d{2,5}"})], "sel and ip", "medium",
        "t1095")
    add("Immutable bit set", P,
        [("sel", {"Image|endswith": "/chattr", "CommandLine|contains": "+i"})], "sel", "medium",
        "t1222.002")
    add("Logs wiped", P,
        [("sel", {"Image|endswith": ["/shred", "/truncate"], "CommandLine|contains": "/var/log/"})],
        "sel", "high", "t1070.002")
    add("Encoded shell path", P, [("sel", {"CommandLine|base64offset|contains": "/bin/sh"})],
        "sel", "medium", "t1027")
    add("Named pipe shell", P,
        [("sel", {"CommandLine|contains|all": ["mkfifo", "/tmp/"]}),
         ("nc", {"CommandLine|contains": ["nc ", "ncat ", "telnet "]})], "sel and nc", "high",
        "t1059.004")
    add("Preload variable on a command line", P,
        [("sel", {"CommandLine|contains": "LD_PRELOAD="})], "sel", "medium", "t1574.006")
    add("Sudoers touched", P, [("sel", {"CommandLine|contains": "/etc/sudoers"}),
                               ("f", {"Image|endswith": "/visudo"})], "sel and not f", "high",
        "t1548.003")
    add("Perl socket one-liner", P,
        [("sel", {"Image|endswith": "/perl", "CommandLine|contains|all": [" -e", "socket"]})],
        "sel", "high", "t1059")
    add("Shell started with an empty environment", P,
        [("sel", {"Image|endswith": SHELLS, "CommandLine|endswith": [" -i", " -li"]}),
         ("p", {"ParentImage|endswith": ["/nc", "/socat", "/ncat"]})], "sel and p", "high",
        "t1059.004")
    add("Cron file written", F,
        [("sel", {"TargetFilename|startswith": ["/etc/cron.d/", "/etc/cron.daily/",
                                                "/etc/cron.hourly/", "/var/spool/cron/"]})],
        "sel", "medium", "t1053.003")
    add("Systemd unit written", F,
        [("sel", {"TargetFilename|startswith": ["/etc/systemd/system/", "/usr/lib/systemd/system/"],
                  "TargetFilename|endswith": [".service", ".timer"]}),
         ("pkg", {"Image|endswith": ["/dpkg", "/apt", "/apt-get", "/systemctl"]})],
        "sel and not pkg", "medium", "t1543.002")
    add("Shell profile written", F,
        [("sel", {"TargetFilename|endswith": ["/.bashrc", "/.profile", "/.bash_profile", "/.zshrc"]}),
         ("d", {"TargetFilename|startswith": "/etc/profile.d/"})], "sel or d", "medium", "t1546.004")
    add("Preload file written", F, [("sel", {"TargetFilename": "/etc/ld.so.preload"})], "sel",
        "critical", "t1574.006")
    add("rc.local written", F, [("sel", {"TargetFilename": "/etc/rc.local"})], "sel", "high",
        "t1037.004")
    add("authorized_keys written", F,
        [("sel", {"TargetFilename|endswith": "/.ssh/authorized_keys"})], "sel", "medium",
        "t1098.004")
    add("File written to /dev/shm", F, [("sel", {"TargetFilename|startswith": "/dev/shm/"})],
        "sel", "low", "t1074.001")
    add("Ransom extension", F,
        [("sel", {"TargetFilename|endswith": [".locked", ".encrypted", ".crypt", ".enc0"]})],
        "sel", "high", "t1486")
    add("Sudoers drop-in written", F, [("sel", {"TargetFilename|startswith": "/etc/sudoers.d/"})],
        "sel", "high", "t1548.003")
    add("PAM module written", F,
        [("sel", {"TargetFilename|startswith": ["/lib/security/", "/usr/lib/x86_64-linux-gnu/security/"],
                  "TargetFilename|endswith": ".so"})], "sel", "high", "t1556.003")
    return r


COMMON = [" -c ", "/tmp/", "http", "--", " -o ", "/usr/", ".py", "/home/", "git ", ".sh"]


def word(rng):
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(5, 10)))


def generated_rules(n, rng):
    """n rules in the shape of a large public collection."""
    out = []
    for i in range(n):
        rid = "bench-gen-%05d" % i
        kind = rng.random()
        tok = lambda: rng.choice(COMMON) if rng.random() < 0.1 else word(rng)  # noqa: E731
        if kind < 0.55:
            det = [("sel_img", {"Image|endswith": ["/" + word(rng) for _ in range(rng.randint(1, 4))]}),
                   ("sel_cli", {"CommandLine|contains": [tok() for _ in range(rng.randint(1, 5))]})]
            cond = "all of sel_*"
            cat = "process_creation"
        elif kind < 0.70:
            det = [("sel", {"CommandLine|contains|all":
                            [word(rng)] + [tok() for _ in range(rng.randint(1, 2))]})]
            cond = "sel"
            cat = "process_creation"
        elif kind < 0.80:
            det = [("sel", {"CommandLine|contains": [word(rng) for _ in range(rng.randint(1, 3))]}),
                   ("filter", {"ParentImage|startswith": ["/usr/lib/", "/opt/" + word(rng)]})]
            cond = "sel and not filter"
            cat = "process_creation"
        elif kind < 0.85 and kind >= 0.82:
            # Only a common literal before a regex: the prefilter lets these
            # through often, and the regex decides.
            det = [("sel", {"CommandLine|contains": rng.choice(COMMON),
                            "CommandLine|re": word(rng) + r"[0-9]{2,}"})]
            cond = "sel"
            cat = "process_creation"
        elif kind < 0.85:
            det = [("sel", {"Image|endswith": "/" + word(rng),
                            "CommandLine|re": word(rng) + r"\s+-[a-z]{1,3}\s+\d+"})]
            cond = "sel"
            cat = "process_creation"
        else:
            det = [("sel", [{"TargetFilename|endswith": "." + word(rng)},
                            {"TargetFilename|startswith": "/" + word(rng) + "/"}])]
            cond = "sel"
            cat = "file_event"
        out.append(rule_yaml(rid, "Generated %d" % i, cat, det, cond, rng.choice(
            ["low", "medium", "high"]), ("attack.t%04d" % rng.randint(1000, 1600),)))
    return out


PROGRAMS = [
    ("/usr/bin/git", ["status", "log --oneline -5", "diff HEAD~1", "commit -m 'fix build'", "pull --rebase"]),
    ("/usr/bin/gcc", ["-O2 -c src/main.c -o build/main.o", "-Wall -g -o test test.c", "-MD -MF x.d -c y.c"]),
    ("/usr/bin/make", ["-j2", "all", "install DESTDIR=/tmp/stage", "clean"]),
    ("/usr/bin/python3", ["-m pytest -q", "setup.py build", "/home/user/bin/report.py --since 2d", "-c 'import sys; print(sys.path)'"]),
    ("/usr/bin/ls", ["-la", "--color=auto /home/user", "-1 /var/log"]),
    ("/usr/bin/grep", ["-rn TODO src/", "-i error /var/log/syslog", "-c http access.log"]),
    ("/usr/bin/bash", ["-c 'cd /home/user/project && make'", "/home/user/bin/backup.sh", "-l"]),
    ("/usr/bin/apt-get", ["update", "install -y libfoo-dev", "upgrade -y"]),
    ("/usr/lib/apt/methods/http", [""]),
    ("/usr/bin/ssh", ["-p 2222 user@build.example.org", "git@github.com git-upload-pack 'x.git'"]),
    ("/usr/bin/curl", ["-fsSL https://example.org/file.tar.gz -o /tmp/file.tar.gz", "-s http://localhost:8080/health"]),
    ("/usr/bin/tar", ["xzf /tmp/file.tar.gz -C /home/user/src", "czf backup.tgz docs/"]),
    ("/usr/bin/cat", ["/etc/os-release", "/proc/cpuinfo", "README.md"]),
    ("/usr/bin/sed", ["-i s/foo/bar/ config.ini", "-n 1,20p file.txt"]),
    ("/usr/bin/systemctl", ["status nginx", "--user restart pipewire", "is-active ssh"]),
    ("/usr/bin/node", ["/usr/share/nodejs/npm/bin/npm-cli.js ci", "server.js --port 3000"]),
    ("/usr/bin/find", [". -name '*.c' -newer Makefile", "/tmp -mtime +7 -delete"]),
    ("/usr/bin/rsync", ["-a --delete src/ /mnt/backup/src/"]),
    ("/usr/sbin/cron", ["-f"]),
    ("/usr/bin/sudo", ["apt-get update", "systemctl restart docker"]),
]
PARENTS = ["/usr/bin/bash", "/usr/bin/zsh", "/usr/bin/make", "/usr/lib/systemd/systemd",
           "/usr/sbin/cron", "/usr/bin/python3", "/usr/bin/sshd", "/usr/bin/code"]
FILES = ["/home/user/project/src/%s.c", "/home/user/project/build/%s.o", "/tmp/tmp%s",
         "/var/lib/apt/lists/partial/%s", "/home/user/.cache/pip/%s", "/var/log/%s.log",
         "/home/user/Documents/%s.odt", "/home/user/.config/Code/%s.json"]
# Events that the own rules are meant to catch (a few in every pass).
MATCHING = [
    ("process_creation", {"process": {"executable": "/usr/bin/bash", "command_line":
                                      "bash -c echo ZWNobyBoaQ== | base64 -d | sh",
                                      "parent": {"executable": "/usr/bin/python3"}}}),
    ("process_creation", {"process": {"executable": "/usr/bin/chmod", "command_line":
                                      "chmod u+s /tmp/sh"}}),
    ("file_event", {"file": {"path": "/etc/cron.d/update"},
                    "process": {"executable": "/usr/bin/cp"}}),
]


def events(n, rng):
    out = []
    for i in range(n):
        if i % 500 < len(MATCHING):
            cat, ev = MATCHING[i % 500]
            out.append({"category": cat, "event": ev})
            continue
        if rng.random() < 0.75:
            exe, args = rng.choice(PROGRAMS)
            arg = rng.choice(args)
            name = exe.rsplit("/", 1)[1]
            out.append({"category": "process_creation", "event": {"process": {
                "executable": exe, "name": name, "command_line": (name + " " + arg).strip(),
                "args": [name] + arg.split(), "pid": rng.randint(300, 400000),
                "working_directory": rng.choice(["/home/user", "/home/user/project", "/", "/tmp"]),
                "user": {"id": "1000", "name": "user"},
                "parent": {"executable": rng.choice(PARENTS), "pid": rng.randint(1, 300000)}}}})
        else:
            path = rng.choice(FILES) % word(rng)
            exe, _ = rng.choice(PROGRAMS)
            out.append({"category": "file_event", "event": {
                "file": {"path": path, "name": path.rsplit("/", 1)[1]},
                "process": {"executable": exe, "pid": rng.randint(300, 400000)}}})
    return out


def build_workload(work):
    exe = os.path.join(work, "sigma_bench")
    libs = [os.path.join(BUILD_DIR, "agent", "libyamori_agent.a"),
            os.path.join(BUILD_DIR, "common", "libyamori_common.a")]
    for lib in libs:
        if not os.path.exists(lib):
            raise SystemExit("sigma_eval: %s missing; build first (scripts/build.sh)" % lib)
    subprocess.run(["gcc", "-O2", "-D_GNU_SOURCE", "-o", exe,
                    os.path.join(REPO, "bench", "sigma_bench.c"),
                    "-I", os.path.join(REPO, "agent", "src"),
                    "-I", os.path.join(REPO, "common", "include")] + libs +
                   ["-lcjson", "-lpcre2-8"], check=True)
    return exe


def compile_rules(work, name, texts):
    d = os.path.join(work, name)
    os.makedirs(d)
    for i, t in enumerate(texts):
        with open(os.path.join(d, "r%05d.yml" % i), "w") as f:
            f.write(t)
    out = os.path.join(work, name + ".json")
    console = os.path.join(BUILD_DIR, "console", "yamori-console")
    p = subprocess.run([console, "rules", "compile-sigma", "--strict", d, "-o", out],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit("sigma_eval: %s did not compile:\n%s%s" % (name, p.stdout[-2000:], p.stderr))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rules", type=int, default=1500, help="generated rules (default 1500)")
    ap.add_argument("--events", type=int, default=2000, help="synthetic events (default 2000)")
    ap.add_argument("--seconds", type=float, default=5.0, help="timed seconds per figure")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--json", help="write the results here too")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    results = {"machine": machine_info(), "loadavg_before": loadavg(), "sets": {}}
    with tempfile.TemporaryDirectory(prefix="yamori-sigma-bench-") as work:
        exe = build_workload(work)
        evpath = os.path.join(work, "events.ndjson")
        with open(evpath, "w") as f:
            for e in events(a.events, rng):
                f.write(json.dumps(e) + "\n")
        for name, texts in (("own", own_rules()), ("generated", generated_rules(a.rules, rng))):
            rules = compile_rules(work, name, texts)
            p = subprocess.run([exe, rules, evpath, str(a.seconds)], capture_output=True,
                               text=True, check=True)
            results["sets"][name] = json.loads(p.stdout)
    print("| rule set | rules | unfiltered | events/s (fields) | ns/event | events/s (cJSON) "
          "| rules evaluated per event | matches per %d events | load s | rules RSS KiB |"
          % a.events)
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results["sets"].items():
        print("| %s | %d | %d | %s | %.0f | %s | %.2f | %d | %.3f | %d |" % (
            name, r["rules"], r["unfiltered_rules"], format(int(r["fields"]["events_per_s"]), ","),
            r["fields"]["ns_per_event"], format(int(r["cjson"]["events_per_s"]), ","),
            r["fields"]["candidates_per_event"], r["fields"]["matches_per_pass"], r["load_s"],
            r["rules_rss_kb"]))
    print("load average before: %s; per wall second (fields): %s" % (
        results["loadavg_before"],
        ", ".join("%s %s" % (k, format(int(v["fields"]["events_per_wall_s"]), ","))
                  for k, v in results["sets"].items())))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
