#!/bin/sh
# Memory-safety run (not part of the default CI):
#  1. build-asan/: -DQM_ASAN=ON (ASan + UBSan; CC=clang or gcc), unit tests (ctest -L unit)
#     and a subset of the end-to-end tests with ASAN_OPTIONS=detect_leaks=1; every
#     sanitizer report of every quicmux process goes to a log file (log_path), and any
#     such file fails the run, even when the test itself passed;
#  2. valgrind: one quicmux client + server transfer (each under
#     `valgrind --leak-check=full --error-exitcode=99`), stopped with SIGTERM; any invalid
#     access or definite/indirect/possible leak fails the run.
#
#   scripts/sanitize.sh                      everything
#   SANITIZE_E2E="test_e2e test_faults" scripts/sanitize.sh     choose the e2e scripts
#   SANITIZE_SKIP_VALGRIND=1 / SANITIZE_SKIP_ASAN=1
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${ASAN_BUILD_DIR:-build-asan}
E2E=${SANITIZE_E2E:-test_e2e test_faults test_hostile test_udp test_workers}
REPORTS="$ROOT/$BUILD/sanitizer-reports"
status=0

say() { printf '%s\n' "$*"; }

if [ -z "${SANITIZE_SKIP_ASAN:-}" ]; then
  say "== ASan/UBSan build in $BUILD (${CC:-cc})"
  cmake -S . -B "$BUILD" -DQM_ASAN=ON -DQM_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 2
  cmake --build "$BUILD" -j2 >/dev/null || { say "build failed"; exit 2; }
  rm -rf "$REPORTS"
  mkdir -p "$REPORTS"
  # halt_on_error=0 for UBSan so that one report does not hide the next; every report
  # lands in $REPORTS/<name>.<pid>.
  export ASAN_OPTIONS="detect_leaks=1:log_path=$REPORTS/asan:abort_on_error=0:detect_stack_use_after_return=1"
  export UBSAN_OPTIONS="print_stacktrace=1:log_path=$REPORTS/ubsan"
  say "== unit tests (ctest -L unit)"
  (cd "$BUILD" && ctest -L unit --output-on-failure) || status=1
  re=""
  for t in $E2E; do re="$re${re:+|}e2e\\.$t\$"; done
  say "== e2e: $E2E"
  (cd "$BUILD" && ctest -R "$re" --output-on-failure) || status=1
  n=$(ls "$REPORTS" | grep -v '^\.' | wc -l)
  if [ "$n" -gt 0 ]; then
    status=1
    say "FAIL sanitizers: $n report file(s) in $REPORTS:"
    for f in "$REPORTS"/*; do
      say "--- $f"
      grep -E 'ERROR: |SUMMARY: |runtime error|^    #[0-3] ' "$f" | head -12
    done
  else
    say "PASS sanitizers: no ASan/UBSan/LSan report from any process"
  fi
  unset ASAN_OPTIONS UBSAN_OPTIONS
fi

if [ -z "${SANITIZE_SKIP_VALGRIND:-}" ]; then
  if ! command -v valgrind >/dev/null 2>&1; then
    say "SKIP valgrind: not installed"
  else
    VBUILD=${VALGRIND_BUILD_DIR:-build-valgrind}
    say "== valgrind: plain build in $VBUILD"
    cmake -S . -B "$VBUILD" -DQM_TESTS=OFF -DQM_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 2
    cmake --build "$VBUILD" -j2 --target quicmux >/dev/null || { say "build failed"; exit 2; }
    QUICMUX_BIN="$ROOT/$VBUILD/quicmux" python3 - "$ROOT" <<'PYEOF' || status=1
import os, re, signal, sys, tempfile
sys.path.insert(0, os.path.join(sys.argv[1], "tests", "e2e"))
import qmtest as qm

VG = ["valgrind", "--leak-check=full", "--error-exitcode=99", "--errors-for-leak-kinds=definite,indirect,possible",
      "--show-leak-kinds=definite,indirect,possible", "--track-origins=yes", "--num-callers=30"]
root = tempfile.mkdtemp(prefix="qm-valgrind.")
c = qm.Case("valgrind", root)
ok = True
try:
    target = c.echo_server()
    sport = qm.free_udp_port()
    cport = qm.free_tcp_port()
    common = ["--security", "aes-128-gcm", "--key", "vg", "--header", "srtp", "--log-level", "info"]
    sp = c.spawn(VG + ["--log-file=%s/vg-server.%%p" % root, qm.quicmux_bin(), "server", "--listen",
                       "127.0.0.1:%d" % sport, "--target", qm.hostport(*target.addr)] + common, "vg-server")
    qm.wait_udp_bound(sport, timeout=60, proc=sp)
    cp = c.spawn(VG + ["--log-file=%s/vg-client.%%p" % root, qm.quicmux_bin(), "client", "--listen",
                       "127.0.0.1:%d" % cport, "--server", "127.0.0.1:%d" % sport] + common, "vg-client")
    qm.wait_tcp_listen(cport, timeout=60, proc=cp)
    res = qm.check_transfer(("127.0.0.1", cport), conns=4, nbytes=1024 * 1024, seed=9, timeout=240, stall=60)
    print("valgrind transfer: " + res.summary())
    if not res.ok:
        print("FAIL valgrind transfer: " + "; ".join(r.describe() for r in res.failures()))
        ok = False
    for p in (cp, sp):
        rc, secs, killed = p.stop(signal.SIGTERM, timeout=60)
        logs = [f for f in os.listdir(root) if f.startswith(p.name + ".")]
        text = "".join(open(os.path.join(root, f)).read() for f in logs)
        m = re.search(r"ERROR SUMMARY: (\d+) errors", text)
        errs = int(m.group(1)) if m else -1
        leak = {k: re.search(r"%s: ([\d,]+) bytes in ([\d,]+) blocks" % k, text) for k in
                ("definitely lost", "indirectly lost", "possibly lost", "still reachable")}
        leaks = ", ".join("%s %s bytes" % (k, v.group(1)) for k, v in leak.items() if v) or "no leak summary (all freed)"
        print("%s: exit %s after %.1fs%s; valgrind: %s errors; %s" % (
            p.name, rc, secs, " (killed)" if killed else "", errs, leaks))
        if rc != 0 or errs != 0 or killed:
            ok = False
            print("FAIL %s: exit status %s, %s valgrind errors; log %s" % (p.name, rc, errs, ", ".join(logs)))
            for ln in text.splitlines():
                if re.search(r"Invalid|uninitialised|definitely lost|indirectly lost|possibly lost|at 0x|by 0x", ln):
                    print("  " + ln)
finally:
    c.close()
print(("PASS" if ok else "FAIL") + " valgrind client+server (logs in %s)" % root)
sys.exit(0 if ok else 1)
PYEOF
  fi
fi
[ "$status" -eq 0 ] && say "sanitize.sh: all clean" || say "sanitize.sh: FAILURES (see above)"
exit $status
