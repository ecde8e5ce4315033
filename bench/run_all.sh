#!/usr/bin/env bash
# Runs the sensor benchmarks (file storm, exec storm, idle) with their
# defaults (idle twice: default configuration and sensors only) and writes
# everything they print to one results file, with each benchmark's JSON next
# to it.
#
#   sudo bench/run_all.sh [RESULTS_FILE]
#
# RESULTS_FILE defaults to build/bench-results/sensors-<UTC time>.md (under
# $YAMORI_BUILD_DIR when set). Counts can be changed through the environment:
#   FILES=100000 AUDIT_FILES=<FILES> RUNS=3 EXEC_COUNT=10000 IDLE_SECONDS=60
# YAMORI_AGENT=/path/to/yamorid measures that binary instead of the build's.
#
# Before running: installs the peers the file storm compares with
# (inotify-tools, auditd) and gcc with apt-get, only when missing, and builds
# the project with scripts/build.sh (when the build fails but an agent binary
# exists, that binary is measured and the results say so). Takes several
# minutes (the auditd runs are the slowest). Benchmarks are not tests: a
# figure never makes this fail; it exits 1 only when a benchmark could not
# run.
set -uo pipefail
cd "$(dirname "$0")/.."

build_dir=${YAMORI_BUILD_DIR:-build}
results=${1:-$build_dir/bench-results/sensors-$(date -u +%Y%m%dT%H%M%SZ).md}
FILES=${FILES:-100000}
AUDIT_FILES=${AUDIT_FILES:-$FILES}
RUNS=${RUNS:-3}
EXEC_COUNT=${EXEC_COUNT:-10000}
IDLE_SECONDS=${IDLE_SECONDS:-60}

if [ "$(id -u)" -ne 0 ]; then
  echo "run_all: the agent and auditd need root; run with sudo" >&2
  exit 1
fi

missing=()
for p in inotify-tools auditd gcc; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "run_all: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { echo "run_all: apt-get failed" >&2; exit 1; }
  # auditd starts its daemon on install; file_storm.py starts and stops its own.
  if printf '%s\n' "${missing[@]}" | grep -qx auditd; then
    systemctl stop auditd 2>/dev/null || service auditd stop 2>/dev/null || true
  fi
fi

agent=${YAMORI_AGENT:-$build_dir/agent/yamorid}
build_note=""
if [ -z "${YAMORI_AGENT:-}" ] && ! scripts/build.sh; then
  if [ -x "$agent" ]; then
    built=$(date -u -r "$agent" +%Y-%m-%dT%H:%M:%SZ)
    build_note="WARNING: scripts/build.sh failed; measuring the existing $agent (built $built)"
    echo "run_all: $build_note" >&2
  else
    echo "run_all: build failed and there is no agent binary" >&2
    exit 1
  fi
fi

mkdir -p "$(dirname "$results")"
base=${results%.md}
failed=0
{
  echo "# Yamori sensor benchmarks, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')," \
    "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)," \
    "Debian $(cat /etc/debian_version); git $(git rev-parse --short HEAD 2>/dev/null)" \
    "($(git status --porcelain -- agent common 2>/dev/null | wc -l) modified files under agent/ and common/)"
  echo "Agent binary: $agent"
  [ -z "$build_note" ] || echo "$build_note"
  echo "Load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "## File storm"
  echo
  python3 bench/file_storm.py --agent "$agent" --files "$FILES" --audit-files "$AUDIT_FILES" \
    --runs "$RUNS" --json "$base-file_storm.json" || { echo "file_storm.py failed ($?)"; failed=1; }
  echo
  echo "## Exec storm"
  echo
  python3 bench/exec_storm.py --agent "$agent" --count "$EXEC_COUNT" --runs "$RUNS" \
    --json "$base-exec_storm.json" || { echo "exec_storm.py failed ($?)"; failed=1; }
  echo
  echo "## Idle, default configuration"
  echo
  python3 bench/idle.py --agent "$agent" --seconds "$IDLE_SECONDS" --json "$base-idle.json" ||
    { echo "idle.py failed ($?)"; failed=1; }
  echo
  echo "## Idle, sensors only"
  echo
  python3 bench/idle.py --agent "$agent" --seconds "$IDLE_SECONDS" --sensors-only \
    --json "$base-idle-sensors.json" || { echo "idle.py --sensors-only failed ($?)"; failed=1; }
  echo
  echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  exit $failed
} 2>&1 | tee "$results"
rc=${PIPESTATUS[0]}
echo "run_all: results in $results (JSON: $base-*.json)"
exit "$rc"
