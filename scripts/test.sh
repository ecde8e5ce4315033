#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh -DYAMORI_WERROR=ON
dir=${YAMORI_BUILD_DIR:-build}
ctest --test-dir "$dir" -j2 --output-on-failure
