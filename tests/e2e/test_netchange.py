#!/usr/bin/env python3
"""A client whose network changes (issue 11, items 2 and 5).

  namespace "c" (client)                        this namespace
  quicmux client  UDP from 10.231.K.2 ----veth----> 10.231.K.1  server (quicmux or v2ray)
                  TCP listen on 10.232.K.2 <------- test connections    -> echo target

Mid-transfer the test removes the client namespace's QUIC address 10.231.K.2 and,
0.3 s later, adds 10.231.K.3 instead (a walk from one network to another; the TCP side
sits on a second address that stays).  The client's UDP socket can no longer send
(ENETUNREACH): it moves the session to a fresh socket (connection migration, the path
validated first).

  netchange.qm-server     the transfer (2 connections, byte-exact both ways) completes on
                          the same session; the client logs the move; a fresh connection
                          right after the change works.
  netchange.v2ray-server  v2ray's server forbids migration (disable_active_migration): the
                          client says so in one log line and falls back at once; a fresh
                          connection started right after the change works (on a new
                          session).  How long it took is a note, not a pass/fail figure.
"""

import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402
from qmtest import MiB  # noqa: E402

SEC, KEY = "aes-128-gcm", "netchange-key"


def ip(*args):
    r = subprocess.run(("ip",) + args, stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    if r.returncode != 0:
        raise qm.CheckFailed("ip %s: %s" % (" ".join(args), r.stderr.decode(errors="replace").strip()))


def setup(c, server):
    ok, why = qm.have_netns()
    if not ok:
        raise qm.Skip("no network namespaces here: %s" % why)
    h = c.netns_host("c")
    k = h.addr.split(".")[2]
    tcp_here, tcp_there = "10.232.%s.1" % k, "10.232.%s.2" % k
    ip("addr", "add", tcp_here + "/24", "dev", h.veth)
    ip("-n", h.name, "addr", "add", tcp_there + "/24", "dev", "eth0")
    target = c.echo_server()
    if server == "quicmux":
        sp, saddr = c.qm_server(target.addr, host=h.peer_addr, security=SEC, key=KEY,
                                  log_level=os.environ.get("NC_LOG", "info"))
    else:
        sp, saddr = c.v2ray_server(target.addr, host=h.peer_addr, security=SEC, key=KEY)
    lport = 20000 + os.getpid() % 20000
    cp = c.spawn(qm._qm_argv("client", qm.hostport(tcp_there, lport), "--server", qm.hostport(*saddr),
                             SEC, KEY, None, tuple(os.environ.get("NC_EXTRA", "").split()),
                             os.environ.get("NC_LOG", "info")), "qm-client", netns=h)
    qm.wait_tcp_connect(tcp_there, lport, timeout=10, proc=cp)
    return h, sp, cp, (tcp_there, lport)


def change_network(h):
    """Remove the client's QUIC address, then add another one: a new network."""
    old = h.addr
    new = old.rsplit(".", 1)[0] + ".3"
    ip("-n", h.name, "addr", "del", old + "/24", "dev", "eth0")
    time.sleep(0.3)
    ip("-n", h.name, "addr", "add", new + "/24", "dev", "eth0")
    return new


def qm_server_case(c):
    h, sp, cp, caddr = setup(c, "quicmux")
    ok, why = qm.echo_once(caddr, b"before\n" * 100, timeout=10)
    qm.check(ok, "tunnel does not work before the change: %s" % why)
    out = {}

    def run():
        out["res"] = qm.check_transfer(caddr, conns=2, nbytes=128 * MiB, seed=31, timeout=90, stall=20)
    th = threading.Thread(target=run, daemon=True)
    th.start()
    time.sleep(0.5)
    qm.check(th.is_alive(), "the transfer ended before the network change (too fast to test)")
    t_change = time.monotonic()
    new = change_network(h)
    ok, why = qm.echo_once(caddr, b"fresh after the change\n" * 100, timeout=10)
    t_fresh = time.monotonic() - t_change
    qm.check(ok, "fresh connection after the network change failed: %s" % why)
    th.join(100)
    qm.check(not th.is_alive(), "transfer did not end")
    out["res"].raise_if_failed("transfer across a network change")
    log = cp.log()
    qm.check("moved to a new UDP socket" in log, "the client did not log a move to a new socket")
    qm.check("a new session takes over" not in log, "the client fell back to a new session")
    sessions = [ln for ln in sp.log().splitlines() if "peer moved from" in ln]
    qm.check(any(new in ln for ln in sessions), "the server did not follow the client to %s" % new)
    return "%s; fresh connection %.2f s after the change; server: %s" % (
        out["res"].summary(), t_fresh, sessions[-1].split("] ", 1)[-1].strip() if sessions else "?")


def v2ray_server_case(c):
    if not qm.have_v2ray():
        raise qm.Skip("v2ray not installed")
    h, sp, cp, caddr = setup(c, "v2ray")
    ok, why = qm.echo_once(caddr, b"before\n" * 100, timeout=10)
    qm.check(ok, "tunnel does not work before the change: %s" % why)
    held = qm.open_held(caddr, 2)
    for s in held:
        c.on_close(s.close)
    # traffic on the held connections, so the client notices at once
    for s in held:
        s.sendall(b"x" * 1000)
    t_change = time.monotonic()
    change_network(h)
    for s in held:
        try:
            s.sendall(b"y" * 1000)
        except OSError:
            pass
    ok, why = qm.echo_once(caddr, b"fresh after the change\n" * 100, timeout=15)
    t_fresh = time.monotonic() - t_change
    qm.check(ok, "fresh connection after the network change failed: %s" % why)
    log = cp.log()
    qm.check("does not follow migrations" in log, "no log line saying the server does not follow migrations")
    qm.check(log.count("does not follow migrations") == 1, "said more than once per session")
    c.note("v2ray server: a fresh connection worked %.2f s after the address change" % t_fresh)
    return "fresh connection worked %.2f s after the change (includes the 0.3 s without address)" % t_fresh


def main():
    r = qm.Runner("test_netchange: a client whose network changes")
    r.run("netchange.qm-server", qm_server_case)
    r.run("netchange.v2ray-server", v2ray_server_case)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
