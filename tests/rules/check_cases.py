#!/usr/bin/env python3
"""Check the default YARA rule set against its data-driven test cases.

Each case in tests/rules/cases.json is decoded into a temporary directory
(under its "filename", or "sample.bin"), and the `yara` command line tool is
run on it with every rules/*.yar file and the external variables the agent
defines on every scan:

  filename   base name of the file
  filepath   full path of the file
  extension  lower-case extension without the dot ("" when none; a leading
             dot, as in ".bashrc", does not start an extension)
  filetype   "elf", "pe", "macho", "script" (starts with #!), "text" or "data"
             (a control character in the first 512 bytes), from the content
  owner      user name of the file owner (always "root" here)
  is_executable  true when the case says "executable": true (the sample is
             then also written with mode 0755), else false

The case passes when the named rule matches ("expect": "match") or does not
match ("expect": "nomatch"). The checker also fails when a case is malformed,
names a rule that does not exist, or when a public rule has no positive or no
negative case.

Usage: tests/rules/check_cases.py [--yara PATH] [--rules DIR] [--cases FILE]
                                  [-k SUBSTRING] [-v]
Prints "N passed, N failed" and exits non-zero on any failure.
"""

import argparse
import base64
import binascii
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))

RULE_DECL = re.compile(
    r"^[ \t]*((?:private|global)[ \t]+)*rule[ \t]+([A-Za-z_][A-Za-z0-9_]*)",
    re.MULTILINE)

MACHO_MAGICS = (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf",
                b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe",
                b"\xca\xfe\xba\xbe")


def extension_of(filename):
    """Lower-case (ASCII) extension without the dot; "" when there is none.

    As the agent computes it: the text after the last dot of the base name,
    unless that dot starts the name (".bashrc" has none) or the extension
    is 32 bytes or longer."""
    base = os.path.basename(filename)
    dot = base.rfind(".")
    if dot <= 0:
        return ""
    ext = base[dot + 1:]
    if len(ext.encode("utf-8")) >= 32:
        return ""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in ext)


def filetype_of(data):
    """Classify content the way the agent does: elf, pe, macho, script,
    text or data."""
    if data[:4] == b"\x7fELF":
        return "elf"
    if data[:2] == b"MZ":
        return "pe"
    if data[:4] in MACHO_MAGICS:
        return "macho"
    if data[:2] == b"#!":
        return "script"
    # "data" when the first 512 bytes hold a control character other than
    # tab, line feed, form feed or carriage return; otherwise "text".
    for b in data[:512]:
        if b < 0x20 and b not in (0x09, 0x0a, 0x0c, 0x0d):
            return "data"
    return "text"


def declared_rules(rule_files):
    """Map rule name -> (file, is_private) for every rule in the rule files."""
    rules = {}
    for path in rule_files:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for m in RULE_DECL.finditer(text):
            modifiers = m.group(1) or ""
            rules[m.group(2)] = (os.path.basename(path),
                                 "private" in modifiers)
    return rules


def load_cases(path):
    with open(path, encoding="utf-8") as f:
        cases = json.load(f)
    if not isinstance(cases, list):
        raise ValueError("cases file must hold a JSON list")
    return cases


def validate_case(case):
    """Return an error string, or None when the case is well formed."""
    if not isinstance(case, dict):
        return "case is not an object"
    allowed = {"name", "rule", "expect", "content_b64", "filename", "executable"}
    extra = set(case) - allowed
    if extra:
        return "unknown keys: %s" % ", ".join(sorted(extra))
    for key in ("name", "rule", "expect", "content_b64"):
        if not isinstance(case.get(key), str) or not case.get(key):
            if key == "content_b64" and case.get(key) == "":
                continue
            return "missing or non-string %r" % key
    if case["expect"] not in ("match", "nomatch"):
        return "expect must be 'match' or 'nomatch'"
    if not case["rule"].startswith("Yamori_"):
        return "rule names start with Yamori_"
    if not isinstance(case.get("executable", False), bool):
        return "executable must be true or false"
    fn = case.get("filename")
    if fn is not None:
        if (not isinstance(fn, str) or not fn or "/" in fn or "\\" in fn
                or fn in (".", "..") or "\x00" in fn):
            return "filename must be a plain base name"
    try:
        base64.b64decode(case["content_b64"], validate=True)
    except (binascii.Error, ValueError) as e:
        return "content_b64 is not valid base64: %s" % e
    return None


def run_yara(yara, rule_files, sample, data, executable, timeout):
    filename = os.path.basename(sample)
    cmd = [yara, "-w", "--no-follow-symlinks",
           "-d", "is_executable=" + ("true" if executable else "false"),
           "-d", "filename=" + filename,
           "-d", "filepath=" + sample,
           "-d", "extension=" + extension_of(filename),
           "-d", "filetype=" + filetype_of(data),
           "-d", "owner=root"]
    cmd += rule_files
    cmd.append(sample)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError("yara exited %d: %s" % (
            proc.returncode, proc.stderr.decode("utf-8", "replace").strip()))
    matched = set()
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        # "<rule> <path>"; the path may contain spaces.
        name = line.split(" ", 1)[0]
        if name:
            matched.add(name)
    return matched


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--yara", default=shutil.which("yara") or "yara")
    ap.add_argument("--rules", default=os.path.join(REPO, "rules"))
    ap.add_argument("--cases",
                    default=os.path.join(HERE, "cases.json"))
    ap.add_argument("-k", dest="filter", default=None,
                    help="only run cases whose name or rule contains this")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    rule_files = sorted(
        os.path.join(args.rules, f) for f in os.listdir(args.rules)
        if f.endswith(".yar"))
    if not rule_files:
        print("no rule files in %s" % args.rules)
        print("0 passed, 1 failed")
        return 1

    passed = 0
    failed = 0

    def fail(msg):
        nonlocal failed
        failed += 1
        print("FAIL " + msg)

    rules = declared_rules(rule_files)
    try:
        cases = load_cases(args.cases)
    except (OSError, ValueError) as e:
        print("cannot load %s: %s" % (args.cases, e))
        print("0 passed, 1 failed")
        return 1

    # Structural checks: names unique, rules exist, every public rule covered.
    seen_names = set()
    coverage = {}
    for i, case in enumerate(cases):
        err = validate_case(case)
        if err:
            continue  # reported below
        if case["name"] in seen_names:
            fail("case #%d %r: duplicate case name" % (i, case["name"]))
        seen_names.add(case["name"])
        coverage.setdefault(case["rule"], set()).add(case["expect"])
    if args.filter is None:
        for name, (path, private) in sorted(rules.items()):
            if private:
                continue
            kinds = coverage.get(name, set())
            for kind in ("match", "nomatch"):
                if kind not in kinds:
                    fail("rule %s (%s) has no %r case" % (name, path, kind))

    tmp = tempfile.mkdtemp(prefix="yamori-rule-cases-")
    try:
        for i, case in enumerate(cases):
            label = "case #%d" % i
            err = validate_case(case)
            if err:
                fail("%s: %s" % (label, err))
                continue
            label = "case #%d %r" % (i, case["name"])
            if args.filter and args.filter not in case["name"] \
                    and args.filter not in case["rule"]:
                continue
            if case["rule"] not in rules:
                fail("%s: no rule named %s" % (label, case["rule"]))
                continue
            if rules[case["rule"]][1]:
                fail("%s: %s is a private rule (never reported)"
                     % (label, case["rule"]))
                continue
            data = base64.b64decode(case["content_b64"])
            d = os.path.join(tmp, "%04d" % i)
            os.mkdir(d)
            sample = os.path.join(d, case.get("filename") or "sample.bin")
            with open(sample, "wb") as f:
                f.write(data)
            executable = case.get("executable", False)
            os.chmod(sample, 0o755 if executable else 0o644)
            try:
                matched = run_yara(args.yara, rule_files, sample, data,
                                   executable, args.timeout)
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
                fail("%s: %s" % (label, e))
                continue
            got = "match" if case["rule"] in matched else "nomatch"
            if got == case["expect"]:
                passed += 1
                if args.verbose:
                    print("ok   %s: %s %s" % (label, case["rule"], got))
            else:
                others = sorted(matched - {case["rule"]})
                fail("%s: expected %s for %s, got %s%s" % (
                    label, case["expect"], case["rule"], got,
                    (" (other matches: %s)" % ", ".join(others))
                    if others else ""))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
