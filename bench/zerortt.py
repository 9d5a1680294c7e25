#!/usr/bin/env python3
"""Time to the first byte of a connection that needs a new QUIC session, with and without
0-RTT, on a path with a long round trip.

    python3 bench/zerortt.py [--quicmux PATH] [--samples 21] [--delay-ms 100] [--out FILE]

On loopback: an echo target, a quicmux server with --0rtt, and between client and server
the user-space relay of the tests (tests/e2e/relay.py) adding --delay-ms each way (100 ms
each way = a 200 ms round trip; this kernel has no netem). For each sample a NEW quicmux
client process is started (so the connection needs a new session), and once it listens,
one TCP connection sends 64 bytes; measured is the time from connect() to the first echoed
byte. Modes, alternated sample by sample so that a load change hits both alike:

  1-RTT   client without --0rtt: QUIC handshake (1 round trip), then the stream (1 more);
  0-RTT   client with --0rtt --0rtt-file F: each client process reads the ticket the
          previous one stored, so its first stream goes with the handshake.

A warm-up client fetches the first ticket. The server's counters (--metrics) must show
every 0-RTT sample's early data accepted, else the run is reported as invalid. Reported:
median, min and max per mode and the median difference (expected: one round trip).
"""

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import qmtest as qm  # noqa: E402
from relay import Relay  # noqa: E402


def metric(port, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        total = 0.0
        for ln in r.read().decode().splitlines():
            if ln.startswith(name + "{") or ln.startswith(name + " "):
                total += float(ln.rsplit(" ", 1)[1])
        return int(total)


def first_byte(addr, timeout=10.0):
    """Seconds from connect() to the first echoed byte (64 bytes sent, all checked)."""
    data = bytes(range(64))
    t0 = time.monotonic()
    s = socket.create_connection(addr, timeout=timeout)
    try:
        s.sendall(data)
        got = s.recv(64)
        t1 = time.monotonic()
        while len(got) < len(data):
            more = s.recv(64)
            if not more:
                break
            got += more
        if got != data:
            raise RuntimeError("echo mismatch")
        return t1 - t0
    finally:
        s.close()


def sample(c, dial, extra, name):
    cp, caddr = c.qm_client(dial, name=name, extra=list(extra), log_level="warning")
    try:
        return first_byte(caddr)
    finally:
        cp.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quicmux", default=None, help="quicmux binary (default $QUICMUX_BIN or build/quicmux)")
    ap.add_argument("--samples", type=int, default=21, help="per mode (default 21)")
    ap.add_argument("--delay-ms", type=int, default=100, help="one-way delay added by the relay (default 100)")
    ap.add_argument("--out", default=None, help="also write the result (markdown) to this file")
    a = ap.parse_args()
    if a.quicmux:
        os.environ["QUICMUX_BIN"] = os.path.abspath(a.quicmux)
    qm.install_signal_handlers()
    root = tempfile.mkdtemp(prefix="zerortt.")
    c = qm.Case("zerortt", root)
    times = {"1-RTT": [], "0-RTT": []}
    try:
        e = c.echo_server()
        mport = qm.free_tcp_port()
        sp, saddr = c.qm_server(e.addr, log_level="warning",
                                extra=["--0rtt", "--state-dir", os.path.join(c.dir, "state"),
                                       "--metrics", "127.0.0.1:%d" % mport])
        relay = Relay("127.0.0.1", upstream=saddr, delay_ms=a.delay_ms)
        c.on_close(relay.close)
        tickets = os.path.join(c.dir, "tickets")
        zero = ["--0rtt", "--0rtt-file", tickets]
        sample(c, relay.addr, zero, "warm-up")  # the first ticket
        before = metric(mport, "quicmux_early_data_accepted_total")
        for i in range(a.samples):
            for mode in (("1-RTT", "0-RTT") if i % 2 == 0 else ("0-RTT", "1-RTT")):
                t = sample(c, relay.addr, zero if mode == "0-RTT" else [], "%s-%d" % (mode, i))
                times[mode].append(t)
        accepted = metric(mport, "quicmux_early_data_accepted_total") - before
    finally:
        c.close()
    rows = ["| mode | median | min | max | samples |", "|---|---|---|---|---|"]
    for mode in ("1-RTT", "0-RTT"):
        v = times[mode]
        rows.append("| %s | %.1f ms | %.1f ms | %.1f ms | %d |" % (
            mode, 1000 * statistics.median(v), 1000 * min(v), 1000 * max(v), len(v)))
    d = statistics.median(times["1-RTT"]) - statistics.median(times["0-RTT"])
    lines = ["first byte of a connection on a new session, %d ms round trip (relay %d ms each way)"
             % (2 * a.delay_ms, a.delay_ms), ""] + rows + [
        "", "0-RTT sooner by %.1f ms (median); early data accepted in %d of %d 0-RTT samples"
        % (1000 * d, accepted, a.samples)]
    print("\n".join(lines))
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    if accepted != a.samples:
        print("INVALID: not every 0-RTT sample was 0-RTT", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
