#!/usr/bin/env bash
# Install, build and run every test: unit (cmocka), end-to-end and interop
# against the real v2ray (Debian packages). This is what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
scripts/build.sh
cd build
ctest --output-on-failure --timeout 900 "$@"
