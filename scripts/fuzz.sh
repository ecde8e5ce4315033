#!/usr/bin/env bash
# Builds the libFuzzer harnesses with clang (ASan + UBSan) and runs each one
# for a short time on its seed corpus. Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
dir=build-fuzz
CC=clang cmake -S . -B "$dir" -DYAMORI_FUZZ=ON -DYAMORI_TESTS=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$dir" -j"$(nproc)" --target all >/dev/null
status=0
for f in "$dir"/tests/fuzz/fuzz_*; do
  [ -x "$f" ] || continue
  name=$(basename "$f")
  corpus_seed=tests/fuzz/corpus/$name
  work=$(mktemp -d)
  [ -d "$corpus_seed" ] && cp -r "$corpus_seed"/. "$work"/
  echo "fuzz: $name for ${secs}s"
  # A crashing input is kept as $dir/<name>-crash-<sha1> (add it to the
  # seed corpus with the fix).
  if ! "$f" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 \
       -artifact_prefix="$dir/$name-" "$work" >"$dir/$name.log" 2>&1; then
    echo "fuzz: $name FOUND A PROBLEM:" >&2
    tail -40 "$dir/$name.log" >&2
    status=1
  else
    echo "fuzz: $name ok ($(grep -c . "$dir/$name.log") log lines, $(ls "$work" | wc -l) corpus files)"
  fi
  rm -rf "$work"
done
exit $status
