#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and runs
# Yamori's main job on its embedded default on this machine: the agent in
# the foreground with the default rules, printing what it sees as JSON lines.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
if [ "$(id -u)" -ne 0 ]; then
  echo "run: the agent watches the whole machine through the kernel; run as root" >&2
  exit 1
fi
state=${YAMORI_STATE_DIR:-$PWD/build/run/state}
mkdir -p "$state"
conf=build/run/agent.json
cat > "$conf" <<JSON
{
  "output": "-",
  "state_dir": "$state",
  "rules": {"dirs": ["$PWD/rules"]},
  "control": {"socket": "$PWD/build/run/yamorid.sock"},
  "policy": {"exec": "block", "file": "quarantine"}
}
JSON
cat >&2 <<MSG
run: starting the agent in the foreground; events follow as JSON lines (Ctrl-C stops).
run: in another terminal, as root:
run:   build/agent/yamorictl -c $conf status
run:   build/agent/yamorictl -c $conf selftest
MSG
exec build/agent/yamorid --foreground --config "$conf"
