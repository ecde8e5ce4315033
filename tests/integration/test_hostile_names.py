"""Hostile file names: newline, tab, ESC, invalid UTF-8, a leading dash,
255-byte components and 4,000-byte paths. Every output line stays valid
JSON and every name can be recovered byte for byte."""
import json
import os
import yit
from yit import get

yit.require_root()
t = yit.Test(__file__)
ag = yit.Agent(t)
base = t.path("names").encode()
os.mkdir(base)

names = [b"new\nline", b"tab\there", b"esc\x1b[31mred", b"bad\xff\xfeutf8", b"\xc0\xafoverlong",
         b"-leading-dash", b"quote\"back\\slash", b"\xe5\xae\xb6\xe5\xae\x88.txt", b"L" * 255,
         b"ctl\x01\x7f"]
paths = []
for n in names:
    p = os.path.join(base, n)
    with open(p, "wb") as f:
        f.write(b"x")
    paths.append(p)

# A path of about 4,000 bytes: nested 200-byte directories.
deep = base
while len(deep) < 3700:
    deep = os.path.join(deep, b"d" * 200)
    os.mkdir(deep)
long_file = os.path.join(deep, b"f" * (4000 - len(deep) - 1))
with open(long_file, "wb") as f:
    f.write(b"x")
paths.append(long_file)
t.check(len(long_file) == 4000, "long path is 4,000 bytes")

marker = os.path.join(base, b"zz-marker")
open(marker, "wb").close()
ag.wait_event(lambda e: get(e, "file.path") == marker.decode(), what="marker")

# Every line is valid JSON (Python's parser accepts the \udcXX escapes).
bad = 0
for line in ag.raw_lines():
    if line:
        try:
            json.loads(line)
        except ValueError:
            bad += 1
t.check_eq(bad, 0, "every output line parses as JSON")
t.check(all(b"\n" not in l for l in ag.raw_lines()), "no raw newline inside a line")

seen = set()
for e in ag.events():
    p = get(e, "file.path")
    if p is not None and get(e, "event.action") == "creation":
        seen.add(yit.fs_text(p))
for p in paths:
    t.check(p in seen, "recovered %r" % p[-60:])
t.done()
