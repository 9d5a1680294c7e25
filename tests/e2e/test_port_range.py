#!/usr/bin/env python3
"""A quicmux server on a port range (--listen HOST:PORT1-PORT2; issue 11, item 3).

  range.each-port     a server on 5 ports; 5 quicmux clients, one per port, at once, each
                      a byte-exact transfer.  A quicmux client's UDP socket is connected
                      to its server port, so the kernel drops any reply from another
                      port: completing proves the server answers from the port used.
                      The server's SIGUSR1 lines name each session's local port.
  range.hop-relay     one quicmux client through relay.py, which moves the client to
                      another port of the range (and a new source port) 3 times during a
                      bulk transfer: what a hopping client looks like to the server.  The
                      relay's sockets are connected too, so the transfer completes only
                      if the server follows to each new port.  One session all along.
  range.v2ray-client  a v2ray client on one port of a range works like on a single port.
  range.bad           ranges that are refused before anything starts, naming the field.
(A NAT re-map with a range is in test_rebind.py.)
"""

import json
import os
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402
from qmtest import MiB  # noqa: E402
from relay import Relay  # noqa: E402
from test_rebind import HDR, KEY, REMAPS, SEC, moved_lines, qm_range_server, remap_during  # noqa: E402

NPORTS = 5


def stats_lines(c, sp, want, timeout=10):
    """SIGUSR1 the server and return its session lines once `want` of them appeared."""
    deadline = time.monotonic() + timeout
    sp.send_signal(signal.SIGUSR1)
    while time.monotonic() < deadline:
        with open(sp.log_path, errors="replace") as f:
            lines = [ln for ln in f if re.search(r"session \d+ \S+ peer ", ln)]
        if len(lines) >= want:
            return lines
        time.sleep(0.05)
    return lines


def each_port(c):
    target = c.echo_server()
    sp, base = qm_range_server(c, target, NPORTS)
    clients = []
    for i in range(NPORTS):
        cp, caddr = c.qm_client(("127.0.0.1", base + i), security=SEC, key=KEY, header=HDR,
                                name="qm-client-%d" % i, extra=("--session-idle", "0"))
        clients.append((cp, caddr))
    results = [None] * NPORTS

    def run(i):
        results[i] = qm.check_transfer(clients[i][1], conns=1, nbytes=2 * MiB, seed=100 + i,
                                       timeout=60)
    ts = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(NPORTS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(90)
    for i, res in enumerate(results):
        qm.check(res is not None, "client %d: transfer did not end" % i)
        res.raise_if_failed("client on port %d" % (base + i))
    # Each session is on its own port of the range.
    lines = stats_lines(c, sp, NPORTS)
    ports = sorted(int(m.group(1)) for m in (re.search(r"local port (\d+)", ln) for ln in lines) if m)
    qm.check(ports == list(range(base, base + NPORTS)),
             "server sessions' local ports %r, want %r" % (ports, list(range(base, base + NPORTS))))
    qm.check(sp.alive(), "server exited")
    return "%d clients on ports %d-%d, 2 MiB each way each, byte-exact; sessions on ports %s" % (
        NPORTS, base, base + NPORTS - 1, ports)


def hop_relay(c):
    target = c.echo_server()
    sp, base = qm_range_server(c, target, NPORTS)
    relay = Relay("127.0.0.1", upstream=("127.0.0.1", base), process=True)
    c.on_close(relay.close)
    cp, caddr = c.qm_client(relay.addr, security=SEC, key=KEY, header=HDR)
    hops = [("127.0.0.1", base + p) for p in (3, 1, 4)][:REMAPS]
    res, remaps, fresh = remap_during(c, relay, caddr, transfer_timeout=90, stall=20, upstreams=hops)
    res.raise_if_failed("transfer across %d port changes" % len(remaps))
    qm.check(len(remaps) == len(hops), "only %d of %d hops happened during the transfer" % (
        len(remaps), len(hops)))
    for i, (ok, why) in enumerate(fresh):
        qm.check(ok, "fresh connection after hop %d failed: %s" % (i, why))
    nsess = relay.stats["sessions"]
    qm.check(nsess == 1, "the client opened %d sessions (the first one was lost)" % nsess)
    moved = moved_lines(sp)
    qm.check(len(moved) >= len(hops), "server logged %d 'peer moved' lines, want >= %d" % (
        len(moved), len(hops)))
    lines = stats_lines(c, sp, 1)
    m = re.search(r"local port (\d+)", lines[-1]) if lines else None
    qm.check(m and int(m.group(1)) == hops[-1][1],
             "the session is not on the last port %d: %s" % (hops[-1][1], lines[-1:] or "no line"))
    return "%s; moved to ports %s, %d fresh connections ok" % (
        res.summary(), [h[1] for h in hops], len(fresh))


def v2ray_client(c):
    target = c.echo_server()
    sp, base = qm_range_server(c, target, NPORTS)
    cp, caddr = c.v2ray_client(("127.0.0.1", base + NPORTS - 1), security=SEC, key=KEY, header=HDR,
                               target=target.addr)
    res = qm.check_transfer(caddr, conns=2, nbytes=2 * MiB, seed=7, timeout=60)
    res.raise_if_failed()
    return res.summary()


def bad_ranges(c):
    bad = [
        (["server", "--listen", "127.0.0.1:20000-21024", "--target", "127.0.0.1:9"],
         "1025 ports, at most 1024"),
        (["server", "--listen", "127.0.0.1:20010-20000", "--target", "127.0.0.1:9"],
         "PORT1 <= PORT2"),
        (["server", "--listen", "127.0.0.1:0-3", "--target", "127.0.0.1:9"],
         "ports from 1 to 65535"),
        (["server", "--listen", "127.0.0.1:65535-65536", "--target", "127.0.0.1:9"],
         "PORT2 <= 65535"),
        (["client", "--listen", "127.0.0.1:20000-20003", "--server", "127.0.0.1:9"],
         "only for a server"),
    ]
    for args, want in bad:
        rc, _o, out, _t = qm.run_cmd([qm.quicmux_bin()] + args + ["--check"], timeout=10)
        qm.check(rc == 2, "%s: exit %s, want 2" % (" ".join(args), rc))
        qm.check("--listen" in out and want in out, "%s: message %r lacks %r" % (" ".join(args), out, want))
    rc, _o, out, _t = qm.run_cmd([qm.quicmux_bin(), "server", "--listen", "127.0.0.1:20000-21023",
                                  "--target", "127.0.0.1:9", "--check"], timeout=10)
    qm.check(rc == 0, "a 1024-port range was refused: %s" % out)
    # The same key in a config file: a range is good, a bad one names its JSON path.
    for listen, want_rc, want in (("127.0.0.1:20000-20099", 0, "OK"),
                                  ("127.0.0.1:20000-30000", 2, "tunnels[0].listen")):
        path = c.write_file("range.json", json.dumps({"tunnels": [{
            "role": "server", "listen": listen, "target": "127.0.0.1:9",
            "streamSettings": {"network": "quic"}}]}))
        rc, o, e, _t = qm.run_cmd([qm.quicmux_bin(), "-c", path, "--check"], timeout=10)
        qm.check(rc == want_rc and want in o + e, "config listen %s: exit %s, %r" % (listen, rc, (o + e)[-300:]))
    return "%d bad ranges refused with the field named; 1024 ports accepted; config key checked" % len(bad)


def main():
    r = qm.Runner("test_port_range: a quicmux server on a UDP port range")
    r.run("range.bad", bad_ranges)
    r.run("range.each-port", each_port)
    r.run("range.hop-relay", hop_relay)
    if qm.have_v2ray():
        r.run("range.v2ray-client", v2ray_client)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
