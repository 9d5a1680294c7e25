#!/bin/sh
# Congestion-control A/B on loopback: one quicmux tunnel, iperf3 -t 5 through it, once per
# congestion controller given, alternating; prints throughput, the CPU seconds of both tunnel
# processes and (with -v) the client's SIGUSR1 session line once a second (rtt, min rtt,
# cwnd, bytes in flight), which shows whether the sender is cwnd-limited.
#
#   sudo sh bench/cc_ab.sh [-v] [-n ROUNDS] BINARY SECURITY STREAMS CC [CC ...]
#   e.g. sh bench/cc_ab.sh -n 3 /tmp/qm-final/build/quicmux chacha20-poly1305 1 cubic bbr
#
# Runs each test in a private network namespace (unshare -n, needs root) on fixed ports.
set -eu
VERBOSE=0
ROUNDS=1
while [ $# -gt 0 ]; do
  case "$1" in
    -v) VERBOSE=1; shift ;;
    -n) ROUNDS=$2; shift 2 ;;
    *) break ;;
  esac
done
[ $# -ge 4 ] || { sed -n '2,10p' "$0"; exit 2; }
BIN=$1; SEC=$2; P=$3; shift 3

if [ "${QM_CC_AB_INNER:-}" != 1 ]; then
  r=1
  while [ $r -le "$ROUNDS" ]; do
    for cc in "$@"; do
      QM_CC_AB_INNER=1 unshare -n -- sh "$0" $( [ $VERBOSE = 1 ] && echo -v ) "$BIN" "$SEC" "$P" "$cc"
    done
    r=$((r + 1))
  done
  exit 0
fi

# inside the namespace: one test
CC=$1
T=$(mktemp -d)
trap 'kill $C $S 2>/dev/null || true; rm -rf "$T"' EXIT
ip link set lo up
iperf3 -s -1 -B 127.0.0.1 -p 5201 >/dev/null 2>&1 &
sleep 0.3
COMMON="--security $SEC --key bench-key --header none --cc $CC"
"$BIN" server --listen 127.0.0.1:4443 --target 127.0.0.1:5201 $COMMON --log-level warning 2>/dev/null &
S=$!
sleep 0.3
"$BIN" client --listen 127.0.0.1:1080 --server 127.0.0.1:4443 $COMMON --log-level info 2>"$T/client.log" &
C=$!
sleep 0.5
cpu() { awk '{printf "%.2f", ($14 + $15) / 100}' /proc/$1/stat; }
c0=$(cpu $C); s0=$(cpu $S)
iperf3 -c 127.0.0.1 -p 1080 -t 5 -P "$P" -J >"$T/iperf.json" &
I=$!
k=0
while [ $k -lt 5 ]; do sleep 1; kill -USR1 $C; k=$((k + 1)); done
wait $I
c1=$(cpu $C); s1=$(cpu $S)
python3 - "$T/iperf.json" "$SEC" "$P" "$CC" "$c0" "$c1" "$s0" "$s1" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
r = j["end"]["sum_received"]
sec, p, cc = sys.argv[2:5]
c0, c1, s0, s1 = map(float, sys.argv[5:9])
gb = r["bytes"] / 1e9
print("%-18s P%-2s %-6s %6.0f Mbit/s  CPU s/GB client %.2f server %.2f" % (
    sec, p, cc, r["bits_per_second"] / 1e6, (c1 - c0) / gb, (s1 - s0) / gb))
EOF
if [ $VERBOSE = 1 ]; then
  grep "cwnd" "$T/client.log" | sed 's/^.*\(rtt [0-9.]* ms (min [0-9.]*), cwnd [0-9]*, in flight [0-9]*\).*$/    \1/'
fi
