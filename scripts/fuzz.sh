#!/bin/sh
# Build the libFuzzer targets with clang (ASan + UBSan) in build-fuzz/ and run each
# for a fixed time.  Exit status: 0 when no target crashed, 1 otherwise.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 20; 4 targets = 80 s of fuzzing)
#   FUZZ_TARGETS="fuzz_unwrap" scripts/fuzz.sh 600    (one target, longer)
#   FUZZ_JOBS=2 ...                            (libFuzzer -jobs/-workers per target)
#
# Seeds come from fuzz/corpus/<target>/ (read only); new inputs go to
# build-fuzz/corpus/<target>/, crashes to build-fuzz/artifacts/.  To refresh the seeds:
#   python3 fuzz/make_corpus.py build-fuzz build/quicmux
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SECS=${1:-20}
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
JOBS=${FUZZ_JOBS:-1}

if ! command -v clang >/dev/null 2>&1; then
  echo "fuzz.sh: clang not found (libFuzzer needs clang)" >&2
  exit 2
fi
cmake -S . -B "$BUILD" -DCMAKE_C_COMPILER=clang -DQM_FUZZ=ON -DQM_TESTS=OFF \
  -DQM_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j2 --target fuzzers

TARGETS=${FUZZ_TARGETS:-$(cd "$BUILD/fuzz" && ls fuzz_* 2>/dev/null | grep -v gen_corpus | sort)}
mkdir -p "$BUILD/artifacts" "$BUILD/tmp"
# fuzz_config may make temporary files (inline certificates): keep them in the build dir.
export TMPDIR="$ROOT/$BUILD/tmp"
status=0
summary=""
for t in $TARGETS; do
  bin="$BUILD/fuzz/$t"
  [ -x "$bin" ] || { echo "fuzz.sh: no $bin" >&2; status=1; continue; }
  work="$BUILD/corpus/$t"
  mkdir -p "$work"
  seeds="$ROOT/fuzz/corpus/$t"
  [ -d "$seeds" ] || seeds=""
  log="$BUILD/artifacts/$t.log"
  echo "== $t: ${SECS}s"
  set +e
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$bin" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$t-" \
      $( [ "$JOBS" -gt 1 ] && echo "-jobs=$JOBS -workers=$JOBS" ) \
      "$work" $seeds >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -h 'stat::number_of_executed_units' "$log" | awk '{s += $2} END {print s + 0}')
  cov=$(grep -h '#[0-9]*.*cov:' "$log" | tail -1 | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  if [ "$rc" -ne 0 ]; then
    status=1
    echo "FAIL $t: exit $rc after $execs executions; see $log"
    grep -m5 -E 'ERROR: |SUMMARY: |runtime error|Test unit written' "$log" || true
    summary="$summary\n$t: CRASH after $execs executions (log $log)"
  else
    echo "PASS $t: $execs executions in ${SECS}s, coverage ${cov:-?} edges, corpus $(ls "$work" | wc -l) inputs"
    summary="$summary\n$t: $execs executions, cov ${cov:-?}"
  fi
done
printf "fuzz summary:$summary\n"
exit $status
