#!/usr/bin/env bash
# Fails when project C sources call a banned function. These functions are
# unbounded or unsafe with outside input (use snprintf, ym_buf_*, strtoll,
# execve/posix_spawn instead).
set -euo pipefail
cd "$(dirname "$0")/.."
banned='strcpy|strcat|sprintf|vsprintf|gets|strtok|atoi|system|popen'
files=$(git ls-files '*.c' '*.h' '*.c.in' 2>/dev/null || true)
[ -n "$files" ] || files=$(find agent common console tests bench installer -name '*.[ch]' 2>/dev/null)
# A call is the name not preceded by an identifier character or '.'/'->',
# followed by optional space and '('. Comments and strings are not parsed;
# a false hit is fixed by rewording, not by an exception list.
hits=$(grep -nE "(^|[^A-Za-z0-9_.>])($banned)[[:space:]]*\(" $files || true)
if [ -n "$hits" ]; then
  echo "checksrc: banned function calls:" >&2
  echo "$hits" >&2
  exit 1
fi
# The dashboard never turns text into HTML or code (docs/dashboard.md):
# no innerHTML, outerHTML, insertAdjacentHTML, document.write, eval or new
# Function in console/web. tests/browser/check_static.mjs checks more.
web=$(git ls-files 'console/web/*' 2>/dev/null || true)
[ -n "$web" ] || web=$(find console/web -type f 2>/dev/null)
if [ -n "$web" ]; then
  hits=$(grep -nE 'innerHTML|outerHTML|insertAdjacentHTML|document\.write|(^|[^A-Za-z0-9_.])eval[[:space:]]*\(|new[[:space:]]+Function[[:space:]]*\(' $web || true)
  if [ -n "$hits" ]; then
    echo "checksrc: HTML or code from strings in the dashboard:" >&2
    echo "$hits" >&2
    exit 1
  fi
fi
echo "checksrc: ok ($(echo "$files" | wc -w) files, $(echo "$web" | wc -w) dashboard files)"
