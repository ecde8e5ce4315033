#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and runs
# Yamori's main job on its embedded default on this machine: the console
# (SQLite store, its own certificates, on https://127.0.0.1:8443) and an
# agent enrolled to it, watching this machine with the default rules. The
# agent stays in the foreground and prints every event as a JSON line;
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
if [ "$(id -u)" -ne 0 ]; then
  echo "run: the agent watches the whole machine through the kernel; run as root" >&2
  exit 1
fi
run=$PWD/build/run
listen=${YAMORI_LISTEN:-127.0.0.1:8443}
mkdir -p "$run"
console=build/console/yamori-console
ctl=build/agent/yamorictl

"$console" --data-dir "$run/console" --listen "$listen" serve >"$run/console.log" 2>&1 &
console_pid=$!
trap 'kill $console_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q "console listening" "$run/console.log" 2>/dev/null && break
  if ! kill -0 $console_pid 2>/dev/null; then
    echo "run: the console did not start:" >&2
    cat "$run/console.log" >&2
    exit 1
  fi
  sleep 0.1
done
"$console" --data-dir "$run/console" tenant add demo --display "Demo company" >/dev/null 2>&1 || true
# The first start prints the administrator's password once; keep it for
# this demo installation only (root-only file).
password=$(sed -n 's/.*administrator "admin", password \([^ ]*\).*/\1/p' "$run/console.log" | head -1)
if [ -n "$password" ]; then
  (umask 077 && printf '%s\n' "$password" >"$run/admin-password")
fi

cat >"$run/agent.json" <<JSON
{
  "output": "-",
  "state_dir": "$run/agent",
  "rules": {"dirs": ["$PWD/rules"]},
  "control": {"socket": "$run/yamorid.sock"},
  "policy": {"exec": "block", "file": "quarantine"}
}
JSON
if [ ! -f "$run/agent/identity.json" ]; then
  token=$("$console" --data-dir "$run/console" token create --tenant demo --max-uses 1 2>/dev/null)
  YAMORI_TOKEN=$token "$ctl" -c "$run/agent.json" enroll >&2
fi

cat >&2 <<MSG
run: console on https://$listen (log: $run/console.log, database: $run/console/yamori.db)
run: dashboard: https://$listen/ — user admin, password in $run/admin-password
run:   (the certificate is the console's own: the browser asks to accept it once)
run: agent starting in the foreground; events follow as JSON lines (Ctrl-C stops both).
run: in another terminal, as root:
run:   $ctl -c $run/agent.json status      # agent, spool and uplink counters
run:   $ctl -c $run/agent.json selftest    # checks that protection works
run:   $console --data-dir $run/console tenant list
MSG
build/agent/yamorid --foreground --config "$run/agent.json"
