#!/usr/bin/env python3
"""UDP through a quicmux tunnel (--udp, QUIC datagrams) on loopback: the figures of the
UDP row in the README.

    python3 bench/udp.py [--rate 100M] [--time 10] [--length 1200] [--queries 200]
                         [--flood 4] [--queue KIB] [--out FILE]

  iperf3   `iperf3 -u -b RATE -l LENGTH -t TIME -w 4M` through quicmux client --udp ->
           quicmux server --udp -> iperf3 -s: datagrams sent, lost (target 0), jitter;
           the datagrams the client dropped at its full send queue, and tunnel_lost =
           datagrams the client queued less those the server sent on to iperf3 (a loss
           iperf3 reports beyond that happened in iperf3's own socket buffer: -w 4M
           makes that rare, a busy machine does not)
  dns      dnsmasq behind the tunnel, QUERIES `dig` queries (one flow each): answered
  flood    4 sockets send 200-byte datagrams as fast as they can for FLOOD seconds:
           VmRSS of client and server before, at the peak and after (KiB), datagrams
           that arrived and that the client dropped at its bounded queue

Run it on a quiet machine (2 cores are enough): the iperf3 and flood figures depend on
the CPU that is free. Everything is started and stopped by PID (tests/e2e/qmtest.py);
the cases are the ones of tests/e2e/test_udp.py with bigger numbers.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import qmtest as qm  # noqa: E402
import test_udp  # noqa: E402


def run(name, fn, root, **kw):
    c = qm.Case(name, root)
    try:
        note = fn(c, **kw)
        print("%s: %s" % (name, note), flush=True)
        return getattr(c, "figures", {})
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quicmux", help="the quicmux binary (default build/quicmux)")
    ap.add_argument("--rate", default="100M")
    ap.add_argument("--time", type=int, default=10)
    ap.add_argument("--length", type=int, default=1200)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--flood", type=float, default=4.0)
    ap.add_argument("--queue", type=int, help="--udp-queue KIB on both ends (default: quicmux's, 1024)")
    ap.add_argument("--out", help="also write the figures as JSON here")
    a = ap.parse_args()
    if a.quicmux:
        os.environ["QUICMUX_BIN"] = os.path.abspath(a.quicmux)
    qm.install_signal_handlers()
    root = tempfile.mkdtemp(prefix="qmbench-udp.")
    figs = {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}
    try:
        extra = ("--udp-queue", str(a.queue)) if a.queue else ()
        figs.update(run("iperf3", test_udp.iperf3, root, rate=a.rate, seconds=a.time, length=a.length,
                        check_loss=False, extra=extra))
        figs["udp_queue_kib"] = a.queue or 1024
        figs.update(run("dns", test_udp.dns, root, n=a.queries))
        figs.update(run("flood", test_udp.flood, root, seconds=a.flood))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    figs["loadavg_end"] = os.getloadavg()
    print(json.dumps(figs, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(figs, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
