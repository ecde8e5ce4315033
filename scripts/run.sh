#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and runs
# Yamori's main job on its embedded default on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
if [ "$(id -u)" -ne 0 ]; then
  echo "run: the agent watches the whole machine through the kernel; run as root" >&2
  exit 1
fi
echo "run: starting the agent in the foreground; events follow as JSON lines (Ctrl-C stops)"
exec build/agent/yamorid --foreground --output -
