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
echo "checksrc: ok ($(echo "$files" | wc -w) files)"
