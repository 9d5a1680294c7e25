#!/usr/bin/env python3
"""One-way bulk transfers over a slow link: which sender/receiver pairing is slow?

    python3 bench/slowlink.py [--delay-ms 50] [--mib 8] [--runs 1] [--security aes-128-gcm]

For each pairing of tunnel ends (quicmux or Debian's v2ray 4.34, client -> server) and each
direction, one TCP connection moves --mib MiB through
    TCP -> client -> UDP relay (tests/e2e/relay.py, --delay-ms one-way each way) -> server -> TCP
"up" = towards the target (the client's QUIC stack sends), "down" = from the target (the
server's QUIC stack sends).  Prints MiB/s per case and a table; loopback only, every process
started and stopped by PID (tests/e2e/qmtest.py).  Uses build/quicmux unless QUICMUX_BIN is set.

This is how the burst/pacing problem of quicmux -> v2ray was found (bench/RESULTS.md,
"Slow links"): a sender that bursts its whole congestion window overflows the default-sized
receive buffer of a v2ray peer.
"""

import argparse
import os
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import qmtest as qm  # noqa: E402
from relay import Relay  # noqa: E402

MiB = qm.MiB


class Sink:
    """Counts what one connection sends, live."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.addr = self.ls.getsockname()
        self.n = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            c, _ = self.ls.accept()
            while True:
                d = c.recv(262144)
                if not d:
                    break
                self.n += len(d)
        except OSError:
            pass

    def close(self):
        self.ls.close()


def one(c, client, server, direction, args, out):
    n = args.mib * MiB
    sec, key = args.security, "slowlink"
    if direction == "up":
        target = Sink()
        c.on_close(target.close)
    else:
        target = c.source_sink_server(send_bytes=n)
    if server == "quicmux":
        _, saddr = c.qm_server(target.addr, security=sec, key=key, header="none", log_level="warning")
    else:
        _, saddr = c.v2ray_server(target.addr, security=sec, key=key, header="none")
    relay = Relay("127.0.0.1", upstream=saddr, seed=1, process=True, delay_ms=args.delay_ms)
    c.on_close(relay.close)
    if client == "quicmux":
        _, caddr = c.qm_client(relay.addr, security=sec, key=key, header="none", log_level="warning")
    else:
        _, caddr = c.v2ray_client(relay.addr, security=sec, key=key, header="none", target=target.addr)
    s = socket.create_connection(caddr)
    c.on_close(s.close)
    t0 = time.monotonic()
    got = 0
    if direction == "up":
        threading.Thread(target=lambda: s.sendall(b"\0" * n), daemon=True).start()
        while target.n < n and time.monotonic() - t0 < args.timeout:
            time.sleep(0.005)
        got = target.n
    else:
        s.settimeout(args.timeout)
        s.sendall(b"go")
        while got < n:
            d = s.recv(262144)
            if not d:
                break
            got += len(d)
    dt = time.monotonic() - t0
    qm.check(got >= n, "only %d of %d bytes in %.0f s" % (got, n, dt))
    out.append(got / MiB / dt)
    c.note("%.2f MiB/s" % (got / MiB / dt))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--delay-ms", type=int, default=50)
    ap.add_argument("--mib", type=int, default=8)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--security", default="aes-128-gcm")
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    r = qm.Runner("one-way bulk over a %d ms (one-way) link" % args.delay_ms)
    pairs = [("quicmux", "quicmux"), ("quicmux", "v2ray"), ("v2ray", "quicmux"), ("v2ray", "v2ray")]
    res = {}
    for _ in range(args.runs):
        for cl, sv in pairs:
            for d in ("up", "down"):
                out = res.setdefault((cl, sv, d), [])
                r.run("%s->%s.%s" % (cl, sv, d), one, cl, sv, d, args, out)
    r.info("%-8s %-8s %-5s %s" % ("client", "server", "dir", "MiB/s (median of runs)"))
    for (cl, sv, d), v in res.items():
        r.info("%-8s %-8s %-5s %s" % (cl, sv, d, "%.2f" % statistics.median(v) if v else "-"))
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
