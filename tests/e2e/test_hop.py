#!/usr/bin/env python3
"""Port hopping, client side (issue 11, items 3 and 5): --server HOST:P1-P2 --hop-interval.

  hop.interactive:  client --UDP--> quicmux server --listen 127.0.0.1:P..P+3 --> echo
  hop.bulk:         client --UDP--> relays on ports P..P+3 --> quicmux server --> echo

The relays of hop.bulk (tests/e2e/relay.py, in their own processes) stand for the ports
of a server range and slow the path down to what a Python relay carries, so that the
transfer lasts several hop intervals; a hop there reaches the server from another
source address, which the server takes as a migration of its peer.

  hop.interactive   --hop-interval 2 for 30 s: one connection held open does an echo
                    round trip every 0.2 s all along (byte-exact, never reset), and a
                    fresh connection every 2 s echoes at once.  SIGUSR1's session line
                    must show hops >= 10 and the session's current port; every relay
                    must have carried traffic; the client used one session throughout.
  hop.options       bad ranges and intervals stop with a message naming the option.
  hop.plugin        the SIP003 plugin client (ports=P1-P2;hopInterval=1) against a server
                    range: echo round trips for 6 s, >= 3 hops, one session.
  hop.bulk          --hop-interval 2 during a bulk transfer (2 connections, byte-exact
                    both ways through the echo target): at least 2 hops while it runs,
                    one session, and a fresh connection right after it works.

The throughput with hopping against without, and the stall per hop, are measured by
bench/hop.py, not here.
"""

import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402
from qmtest import MiB  # noqa: E402
from relay import Relay  # noqa: E402

NPORTS = 4
SEC, KEY = "aes-128-gcm", "hop-key"


def port_run(n):
    """n consecutive free UDP ports on 127.0.0.1 (qmtest.free_udp_range)."""
    try:
        return qm.free_udp_range(n)
    except RuntimeError:
        raise qm.Skip("no %d free UDP ports in a row" % n)


def hopping_tunnel(c, interval, relayed):
    """relayed: the range is 4 relays to a one-port server; else the server's own."""
    target = c.echo_server()
    base = port_run(NPORTS)
    relays = []
    if relayed:
        sp, saddr = c.qm_server(target.addr, security=SEC, key=KEY, log_level="info")
        for p in range(base, base + NPORTS):
            r = Relay("127.0.0.1", upstream=saddr, listen_port=p, process=True)
            c.on_close(r.close)
            relays.append(r)
    else:
        sp = c.spawn(qm._qm_argv("server", "127.0.0.1:%d-%d" % (base, base + NPORTS - 1), "--target",
                                 qm.hostport(*target.addr), SEC, KEY, None, (), "info"), "qm-server")
        for p in range(base, base + NPORTS):
            qm.wait_udp_bound(p, pid=sp.pid, timeout=10, proc=sp)
    lport = qm.free_tcp_port()
    cp = c.spawn(qm._qm_argv("client", qm.hostport("127.0.0.1", lport), "--server",
                             "127.0.0.1:%d-%d" % (base, base + NPORTS - 1), SEC, KEY, None,
                             ("--hop-interval", str(interval)), "info"), "qm-client")
    qm.wait_tcp_listen(lport, pid=cp.pid, timeout=10, proc=cp)
    caddr = ("127.0.0.1", lport)
    return sp, cp, caddr, relays, base


def session_lines(cp, timeout=5):
    """SIGUSR1, then the client's session lines of that dump."""
    before = len(cp.log().splitlines())
    cp.send_signal(signal.SIGUSR1)

    def got():
        return [ln for ln in cp.log().splitlines()[before:] if "hops=" in ln]
    qm.wait_until(lambda: got(), timeout, "a session stats line with hops=", proc=cp)
    return got()


def hops_of(line):
    m = re.search(r"hops=(\d+)", line)
    return int(m.group(1)) if m else -1


def current_port(line):
    m = re.search(r"peer [0-9.]+:(\d+)", line)
    return int(m.group(1)) if m else -1


def interactive(c):
    sp, cp, caddr, relays, base = hopping_tunnel(c, 2, relayed=False)
    s = socket.create_connection(caddr, timeout=10)
    c.on_close(s.close)
    s.settimeout(10)
    t0 = time.monotonic()
    rounds = fresh = 0
    worst = 0.0
    next_fresh = t0 + 2
    while time.monotonic() - t0 < 30:
        msg = b"round %06d " % rounds * 20
        t1 = time.monotonic()
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            d = s.recv(65536)
            qm.check(d, "the held connection ended after %d round trips (%.1f s)" %
                     (rounds, time.monotonic() - t0))
            got += d
        qm.check(got == msg, "round trip %d came back different" % rounds)
        worst = max(worst, time.monotonic() - t1)
        rounds += 1
        if time.monotonic() >= next_fresh:
            ok, why = qm.echo_once(caddr, b"fresh %d\n" % fresh * 100, timeout=10)
            qm.check(ok, "fresh connection %d (at %.1f s) failed: %s" % (fresh, time.monotonic() - t0, why))
            fresh += 1
            next_fresh += 2
        time.sleep(0.2)
    lines = session_lines(cp)
    qm.check(len(lines) == 1, "want one client session, the stats show %d: %r" % (len(lines), lines))
    hops = hops_of(lines[0])
    qm.check(hops >= 10, "only %d hops in 30 s at --hop-interval 2: %s" % (hops, lines[0]))
    port = current_port(lines[0])
    qm.check(base <= port < base + NPORTS, "session line names port %d, not one of the range" % port)
    # the server's view: the session's peer moved at every hop
    moved = [ln for ln in sp.log().splitlines() if "peer moved from" in ln]
    qm.check(len(moved) >= hops, "server logged %d moves of its peer for %d hops" % (len(moved), hops))
    ok, why = qm.echo_once(caddr, b"last\n" * 100, timeout=10)
    qm.check(ok, "fresh connection at the end failed: %s" % why)
    s.close()
    qm.check(cp.alive() and sp.alive(), "a tunnel end exited")
    return ("%d round trips (slowest %.0f ms), %d fresh connections, %d hops, now on port %d" %
            (rounds, worst * 1000, fresh, hops, port))


def options(c):
    qm.require_quicmux()
    bad = [(["--server", "127.0.0.1:9000-8000"], "a port range goes up"),
           (["--server", "127.0.0.1:9000-x"], "want HOST:PORT or HOST:PORT1-PORT2"),
           (["--server", "127.0.0.1:9000-70000"], "want HOST:PORT or HOST:PORT1-PORT2"),
           (["--server", "127.0.0.1:9000-9001", "--hop-interval", "-1"], "--hop-interval '-1'")]
    for args, want in bad:
        rc, out, err, _ = qm.run_cmd([qm.quicmux_bin(), "client", "--listen", "127.0.0.1:1"] + args +
                                     ["--check"], timeout=10)
        qm.check(rc == 2 and want in err, "%s: exit %s, %r (want 2 and %r)" % (args, rc, err[-200:], want))
    rc, out, err, _ = qm.run_cmd([qm.quicmux_bin(), "client", "--listen", "127.0.0.1:1", "--server",
                                  "127.0.0.1:9000-9009", "--hop-interval", "0", "--check"], timeout=10)
    qm.check(rc == 0, "a good range was refused: %r" % err[-200:])
    return "%d bad inputs refused with a clear message" % len(bad)


def plugin(c):
    import test_plugin as tp
    cert, key = tp.make_cert(c)
    target = c.echo_server()
    base = port_run(NPORTS)
    sp = c.spawn(qm._qm_argv("server", "127.0.0.1:%d-%d" % (base, base + NPORTS - 1), "--target",
                             qm.hostport(*target.addr), None, None, None,
                             ("--tls-cert", cert, "--tls-key", key), "info"), "qm-server")
    for p in range(base, base + NPORTS):
        qm.wait_udp_bound(p, pid=sp.pid, timeout=10, proc=sp)
    lport = qm.free_tcp_port()
    env = dict(os.environ, SS_REMOTE_HOST="127.0.0.1", SS_REMOTE_PORT=str(base + 1),
               SS_LOCAL_HOST="127.0.0.1", SS_LOCAL_PORT=str(lport),
               SS_PLUGIN_OPTIONS="mode=quic;host=%s;cert=%s;ports=%d-%d;hopInterval=1;loglevel=info" % (
                   tp.HOST, cert, base, base + NPORTS - 1))
    cp = c.spawn([qm.quicmux_bin(), "plugin"], "qm-plugin-client", env=env)
    qm.wait_tcp_listen(lport, pid=cp.pid, timeout=10, proc=cp)
    s = socket.create_connection(("127.0.0.1", lport), timeout=10)
    c.on_close(s.close)
    s.settimeout(10)
    t0 = time.monotonic()
    rounds = 0
    while time.monotonic() - t0 < 6:
        msg = b"plugin %05d " % rounds * 10
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            d = s.recv(65536)
            qm.check(d, "the held connection ended after %d round trips" % rounds)
            got += d
        qm.check(got == msg, "round trip %d came back different" % rounds)
        rounds += 1
        time.sleep(0.1)
    lines = session_lines(cp)
    qm.check(len(lines) == 1, "want one client session, the stats show %d: %r" % (len(lines), lines))
    hops = hops_of(lines[0])
    qm.check(hops >= 3, "only %d hops in 6 s at hopInterval=1: %s" % (hops, lines[0]))
    return "%d round trips, %d hops" % (rounds, hops)


def bulk(c):
    sp, cp, caddr, relays, base = hopping_tunnel(c, 2, relayed=True)
    out = {}

    def run():
        out["res"] = qm.check_transfer(caddr, conns=2, nbytes=128 * MiB, seed=77, timeout=90, stall=20)
    th = threading.Thread(target=run, daemon=True)
    t0 = time.monotonic()
    th.start()
    th.join(110)
    qm.check(not th.is_alive(), "transfer did not end")
    took = time.monotonic() - t0
    out["res"].raise_if_failed("bulk transfer while hopping")
    ok, why = qm.echo_once(caddr, b"after the bulk transfer\n" * 100, timeout=10)
    qm.check(ok, "fresh connection after the transfer failed: %s" % why)
    lines = session_lines(cp)
    qm.check(len(lines) == 1, "want one client session, the stats show %d: %r" % (len(lines), lines))
    hops = hops_of(lines[0])
    want = 2 if took > 8 else 1
    qm.check(hops >= want, "%d hops during a %.1f s transfer at --hop-interval 2" % (hops, took))
    used = [r.stats["up"]["forwarded"] > 0 for r in relays]
    qm.check(sum(used) >= 2, "only %d ports of the range carried traffic" % sum(used))
    return "%s; %d hops in %.1f s" % (out["res"].summary(), hops, took)


def main():
    r = qm.Runner("test_hop: port hopping (client)")
    r.run("hop.interactive", interactive)
    r.run("hop.options", options)
    r.run("hop.plugin", plugin)
    r.run("hop.bulk", bulk)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
