#!/usr/bin/env bash
# Installs the Debian 12 packages Yamori needs, and only those missing.
# Idempotent; needs root when something is missing. Used by both README
# commands and by CI.
#
#   scripts/install-deps.sh            build and test dependencies
#   scripts/install-deps.sh --bench    also the peers the benchmarks compare with
set -euo pipefail

# clang, libbpf-dev and bpftool build the eBPF process sensor: clang compiles
# its BPF programs, bpftool generates vmlinux.h from the kernel's BTF and the
# libbpf skeleton that embeds them, libbpf loads them (at run time only the
# kernel and libbpf1 are needed).
build_pkgs=(
  gcc make cmake pkg-config git ca-certificates clang libbpf-dev bpftool
  libuv1-dev libyara-dev libssl-dev libcjson-dev libcurl4-openssl-dev zlib1g-dev
  libh2o-dev libsqlite3-dev libyaml-dev libpcre2-dev
)
test_pkgs=(
  libcmocka-dev python3 libclang-rt-14-dev clang-format
  util-linux iproute2 procps
  python3-aiosmtpd python3-cryptography
  debootstrap systemd-container
  chromium nodejs
)
bench_pkgs=(yara inotify-tools auditd time)

want=("${build_pkgs[@]}" "${test_pkgs[@]}")
if [ "${1:-}" = "--bench" ]; then
  want+=("${bench_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# The dashboard's browser tests drive Debian's chromium with playwright-core
# from the npm registry, pinned in tests/browser/package-lock.json and kept
# in tests/browser/node_modules (never a downloaded browser).
browser_modules() {
  local dir
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/browser"
  if ! command -v npm >/dev/null 2>&1; then
    echo "install-deps: npm is missing; the browser tests will be skipped" >&2
    return 0
  fi
  if [ -f "$dir/node_modules/playwright-core/package.json" ] &&
     [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
    return 0
  fi
  echo "install-deps: npm ci in tests/browser"
  if ! (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund >/dev/null); then
    echo "install-deps: npm ci failed; the browser tests will be skipped" >&2
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#want[@]} packages present"
  browser_modules
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run as root (or with sudo) to install them" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# auditd starts its daemon on install; the benchmarks start and stop it
# themselves, so leave the machine as it was.
if printf '%s\n' "${missing[@]}" | grep -qx auditd; then
  systemctl stop auditd 2>/dev/null || service auditd stop 2>/dev/null || true
fi
# Debian's nodejs may come without npm (the distribution packages it apart).
if ! command -v npm >/dev/null 2>&1; then
  apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
browser_modules
echo "install-deps: done"
