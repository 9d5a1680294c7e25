#!/usr/bin/env python3
"""Port hopping's cost on a bulk transfer (issue 11: "throughput with hopping >= 80 % of
the same transfer without"; stall per hop; bytes sent again).

client --UDP--> 4 relays (tests/e2e/relay.py, ports P..P+3, --delay-ms each way)
       --UDP--> quicmux server --TCP--> echo target

One TCP connection sends --mib MiB through the tunnel and reads it back (byte-exact)
for --time seconds at most, first with --hop-interval 0 (one port), then with
--hop-interval --hop (default 2 s), alternating --runs times.  Reported per mode:
median throughput (echoed bytes / time), hops (from the client's debug log), the
longest gap in the echoed byte stream around each hop (the stall, ms), and the UDP
bytes the relays carried up beyond the payload (wrapping + headers + bytes sent again;
the difference between the modes is what hopping cost in retransmissions).

  QUICMUX_BIN=build/quicmux python3 bench/hop.py --time 20 --runs 3 --delay-ms 10

Run it on a quiet machine: the figures are meaningless on a loaded one.
"""

import argparse
import datetime
import os
import re
import socket
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import qmtest as qm  # noqa: E402
from relay import Relay  # noqa: E402

SEC, KEY = "aes-128-gcm", "hop-bench"


def port_run(n):
    try:
        return qm.free_udp_range(n)
    except RuntimeError:
        raise SystemExit("no %d free UDP ports in a row" % n)


def one_run(c, hop, a):
    target = c.echo_server()
    sp, saddr = c.qm_server(target.addr, security=SEC, key=KEY)
    base = port_run(4)
    relays = [Relay("127.0.0.1", upstream=saddr, listen_port=p, delay_ms=a.delay_ms,
                    process=True) for p in range(base, base + 4)]
    for r in relays:
        c.on_close(r.close)
    lport = qm.free_tcp_port()
    cp = c.spawn(qm._qm_argv("client", qm.hostport("127.0.0.1", lport), "--server",
                             "127.0.0.1:%d-%d" % (base, base + 3), SEC, KEY, None,
                             ("--hop-interval", str(hop)), "debug"), "qm-client")
    qm.wait_tcp_listen(lport, pid=cp.pid, timeout=10, proc=cp)
    data = qm.seeded_bytes(5, a.mib * qm.MiB)
    s = socket.create_connection(("127.0.0.1", lport), timeout=10)
    s.settimeout(10)
    marks = []  # (time, bytes echoed so far)
    got = bytearray()
    t0 = time.time()

    def send():
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    th = threading.Thread(target=send, daemon=True)
    th.start()
    while len(got) < len(data) and time.time() - t0 < a.time:
        try:
            d = s.recv(1 << 20)
        except socket.timeout:
            break
        if not d:
            break
        got += d
        marks.append((time.time(), len(got)))
    took = time.time() - t0
    s.close()
    ok = bytes(got) == data[:len(got)]
    hops = []
    for ln in cp.log().splitlines():
        if "hopped to server port" in ln:
            ts = datetime.datetime.strptime(ln.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
            hops.append(ts.replace(tzinfo=datetime.timezone.utc).timestamp())
    stalls = []
    times = [m[0] for m in marks]
    for h in hops:
        near = [t for t in times if h - 1 <= t <= h + 1]
        gaps = [b - a_ for a_, b in zip(near, near[1:])]
        if gaps:
            stalls.append(max(gaps) * 1000)
    up = sum(r.stats["up"]["bytes"] for r in relays)
    for r in relays:
        r.close()
    return {"mbit": len(got) * 8 / took / 1e6, "ok": ok, "bytes": len(got), "hops": len(hops),
            "stall_ms": stalls, "overhead": up - len(got)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--time", type=float, default=20.0, help="seconds per transfer at most")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mib", type=int, default=256, help="MiB sent (and echoed) per run")
    ap.add_argument("--delay-ms", type=float, default=10.0, help="one-way delay in the relays")
    ap.add_argument("--hop", type=int, default=2, help="hop interval (s) of the hopping runs")
    a = ap.parse_args()
    qm.install_signal_handlers()
    res = {0: [], a.hop: []}
    for i in range(a.runs):
        for hop in (0, a.hop):
            c = qm.Case("hop-bench-%d-%d" % (hop, i), "/tmp")
            try:
                r = one_run(c, hop, a)
            finally:
                c.close()
            res[hop].append(r)
            print("run %d hop-interval %d: %.1f Mbit/s, %d MiB echoed%s, %d hops, stalls %s ms, "
                  "UDP bytes up beyond payload %d" % (
                      i, hop, r["mbit"], r["bytes"] >> 20, "" if r["ok"] else " (DIFFERS)",
                      r["hops"], [round(x) for x in r["stall_ms"]], r["overhead"]), flush=True)
    base = statistics.median(r["mbit"] for r in res[0])
    hopm = statistics.median(r["mbit"] for r in res[a.hop])
    stalls = [x for r in res[a.hop] for x in r["stall_ms"]]
    print("median: no hopping %.1f Mbit/s, hopping every %d s %.1f Mbit/s = %.0f %%" % (
        base, a.hop, hopm, 100 * hopm / base if base else 0))
    if stalls:
        print("stall per hop: median %.0f ms, max %.0f ms (%d hops)" % (
            statistics.median(stalls), max(stalls), len(stalls)))
    ov0 = statistics.median(r["overhead"] / max(r["bytes"], 1) for r in res[0])
    ov1 = statistics.median(r["overhead"] / max(r["bytes"], 1) for r in res[a.hop])
    print("UDP bytes up beyond payload: %.2f %% without, %.2f %% with hopping" % (100 * ov0, 100 * ov1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
