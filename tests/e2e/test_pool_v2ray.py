#!/usr/bin/env python3
"""Connection pool: 40 TCP connections held open at once through a quicmux client.

v2ray's server allows 32 bidirectional streams at once per QUIC connection, so the 33rd
stream needs a second QUIC connection, which (like v2ray's own dialer) has its own UDP
socket: with 40 open the quicmux client must have exactly 2 UDP sockets.  The same holds
against a quicmux server started with default settings.  After all are closed and
stream credit has come back, 40 new connections must fit into the same 2 sockets.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402

KEY = "k1"


def count_settled(pid, expect, timeout=3.0):
    """UDP socket count of pid, waiting up to timeout for it to reach `expect`."""
    deadline = time.monotonic() + timeout
    n = qm.count_udp_sockets(pid)
    while n != expect and time.monotonic() < deadline:
        time.sleep(0.1)
        n = qm.count_udp_sockets(pid)
    return n


def pool_case(c, client, server, defaults=False):
    if defaults:
        # Both ends with their defaults (security none, header none, empty key).
        t = c.tunnel(client, server, security=None if client == "quicmux" else "none",
                     key=None if client == "quicmux" else "", header=None if client == "quicmux" else "none",
                     server_security=None if server == "quicmux" else "none",
                     server_key=None if server == "quicmux" else "",
                     server_header=None if server == "quicmux" else "none")
    else:
        t = c.tunnel(client, server, security="aes-128-gcm", key=KEY, header="srtp")
    pid = t["client"].pid
    socks = qm.open_held(t["addr"], 32, seed=1)
    try:
        n32 = count_settled(pid, 1)
        qm.check(n32 == 1, "with 32 connections open the client has %d UDP sockets, expected 1 (%s)"
                 % (n32, qm.udp_sockets_of(pid)))
        socks += qm.open_held(t["addr"], 8, seed=100)
        n40 = count_settled(pid, 2)
        qm.check(n40 == 2, "with 40 connections open the client has %d UDP sockets, expected 2 (%s)"
                 % (n40, qm.udp_sockets_of(pid)))
        qm.check(t["target"].active == 40, "the target has %d connections open, expected 40" % t["target"].active)
    finally:
        qm.close_all(socks)
    qm.wait_until(lambda: t["target"].active == 0, 10, "the target's connections to close (%d open)"
                  % t["target"].active)
    # Stream credit comes back (v2ray needs ~1 s after the close): the next 40 connections
    # fit into the same two QUIC connections.
    time.sleep(2.5 if server == "v2ray" or client == "v2ray" else 0.5)
    socks = qm.open_held(t["addr"], 40, seed=200)
    try:
        n = count_settled(pid, 2)
        qm.check(n == 2, "after closing all and opening 40 again the client has %d UDP sockets, expected 2 (%s)"
                 % (n, qm.udp_sockets_of(pid)))
    finally:
        qm.close_all(socks)
    qm.check(t["client"].alive() and t["server"].alive(), "a process exited")
    return "32 -> 1 socket, 40 -> 2 sockets, 40 again -> 2"


def main():
    r = qm.Runner("test_pool_v2ray")
    r.run("pool.reference.v2ray-client.v2ray-server", pool_case, "v2ray", "v2ray")
    r.run("pool.qm-client.v2ray-server", pool_case, "quicmux", "v2ray")
    r.run("pool.qm-client.v2ray-server.defaults", pool_case, "quicmux", "v2ray", True)
    r.run("pool.qm-client.qm-server.defaults", pool_case, "quicmux", "quicmux", True)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
