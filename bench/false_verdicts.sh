#!/bin/bash
# Count false dead-path verdicts and false resets: run the lossy and end-to-end suites
# (nothing in them kills a server, so no session should ever be taken out of the pool or
# reset) with each quicmux binary given, keep the logs, and count the clients' "taking it
# out of the pool" and "stateless reset from the server" lines.
#   bash bench/false_verdicts.sh build/quicmux [other builds ...]     (root, ~3 min each)
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
for bin in "$@"; do
  for t in test_lossy test_e2e; do
    out=$(QMTEST_KEEP=1 QUICMUX_BIN=$bin timeout 900 python3 "$here/tests/e2e/$t.py" 2>&1)
    root=$(echo "$out" | grep -o "/tmp/qmtest\.[A-Za-z0-9_]*" | tail -1)
    n=$(grep -rh "taking it out of the pool" "$root" 2>/dev/null | wc -l)
    r=$(grep -rh "stateless reset from the server" "$root" 2>/dev/null | wc -l)
    echo "$bin $t: $(echo "$out" | tail -1); false verdicts: $n, resets: $r (logs: $root)"
  done
done
