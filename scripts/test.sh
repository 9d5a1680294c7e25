#!/usr/bin/env bash
# Install, build and run every test. This is what CI runs (.ci/run):
#   1. fuzzing: each libFuzzer target for a short fixed time (scripts/fuzz.sh)
#   2. sanitizers: unit and end-to-end tests under ASan + UBSan, and a transfer
#      under valgrind (scripts/sanitize.sh)
#   3. everything under CTest: unit (cmocka), end-to-end, interop with the real
#      v2ray, ss-server/ss-local/ss-tunnel + ss-v2ray-plugin and iperf3
# Extra arguments go to ctest (e.g. -R e2e.test_pool). QM_TEST_QUICK=1 skips 1-2.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test || exit 1
scripts/build.sh || exit 1

status=0
if [[ -z "${QM_TEST_QUICK:-}" ]]; then
  echo "== fuzzing (scripts/fuzz.sh 10)"
  scripts/fuzz.sh 10 || status=1
  echo "== sanitizers (scripts/sanitize.sh)"
  scripts/sanitize.sh || status=1
fi
echo "== ctest"
(cd build && ctest --output-on-failure --timeout 900 "$@") ||
  status=1
exit $status
