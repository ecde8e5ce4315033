#!/usr/bin/env bash
# Configures and builds Yamori into build/ (or $YAMORI_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${YAMORI_BUILD_DIR:-build}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=${YAMORI_BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
