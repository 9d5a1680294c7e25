#!/usr/bin/env python3
"""NAT rebinding under a live transfer (issue 11, item 1).

client --UDP--> relay.py --UDP--> server --TCP--> echo target

The relay is the NAT: `remap()` gives the client's session a new upstream socket (a
new source port as the server sees it) and closes the old one, so whatever the server
sends to the old port is lost.  While a bulk transfer (byte-exact, both ways through
the echo target) runs, the relay re-maps REMAPS times, each when a further share of the
payload has crossed it (byte counts, not clocks).  After each re-map a fresh TCP
connection must echo at once.

  quicmux client -> quicmux server   must complete byte-exact, on ONE QUIC session
  v2ray client   -> quicmux server   the same (the client does not know it moved)
  v2ray client   -> v2ray server     the reference: quic-go's server keeps answering
                                     the old address, so the transfer is lost
  quicmux client -> quicmux server on a 5-port range (--listen HOST:P1-P2), the
                                     relay pointed at the range's third port

What a re-map costs (pause, bytes sent again) is measured by bench/rebind.py, not here.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402
from qmtest import MiB  # noqa: E402
from relay import Relay  # noqa: E402

CONNS = 2
NBYTES = 8 * MiB  # per connection, each way
REMAPS = 3
SEC, KEY, HDR = "aes-128-gcm", "rebind-key", "srtp"


def _up_bytes(relay):
    return relay.stats["up"]["bytes"]


def remap_during(c, relay, addr, transfer_timeout, stall, upstreams=None):
    """Run the bulk transfer in a thread and re-map when 20 %, 40 %, 60 % ... of the
    payload has gone up through the relay; after each re-map one fresh connection.
    upstreams[i]: where re-map i sends the client (another server port), or None.
    Returns (TransferResult, [remap info], [fresh connection results])."""
    total = CONNS * NBYTES
    out = {}

    def run():
        out["res"] = qm.check_transfer(addr, conns=CONNS, nbytes=NBYTES, seed=4242,
                                       timeout=transfer_timeout, stall=stall)
    th = threading.Thread(target=run, daemon=True)
    th.start()
    remaps, fresh = [], []
    deadline = time.monotonic() + transfer_timeout
    for i in range(REMAPS):
        want = total * 0.2 * (i + 1)
        while th.is_alive() and time.monotonic() < deadline and _up_bytes(relay) < want:
            time.sleep(0.01)
        if not th.is_alive() or time.monotonic() >= deadline:
            break
        m = relay.remap(upstream=upstreams[i] if upstreams else None)
        remaps.append((time.monotonic(), m))
        ok, why = qm.echo_once(addr, b"fresh connection after re-map %d\n" % i * 50, timeout=10)
        fresh.append((ok, why))
    th.join(transfer_timeout + 20)
    qm.check(not th.is_alive(), "transfer thread did not end")
    return out["res"], remaps, fresh


def moved_lines(proc):
    with open(proc.log_path, errors="replace") as f:
        return [ln for ln in f if "peer moved from" in ln]


def qm_range_server(c, target, nports, sec=SEC, key=KEY, hdr=HDR):
    """A quicmux server on nports consecutive UDP ports: (Proc, first port)."""
    base = qm.free_udp_range(nports)
    sp = c.spawn(qm._qm_argv("server", "127.0.0.1:%d-%d" % (base, base + nports - 1),
                             "--target", qm.hostport(*target.addr), sec, key, hdr, (), "info"),
                 "qm-server")
    for p in range(base, base + nports):
        qm.wait_udp_bound(p, pid=sp.pid, timeout=10, proc=sp)
    return sp, base


def quicmux_server_case(c, client, server_range=0):
    target = c.echo_server()
    if server_range:
        sp, base = qm_range_server(c, target, server_range)
        saddr = ("127.0.0.1", base + 2)
    else:
        sp, saddr = c.qm_server(target.addr, security=SEC, key=KEY, header=HDR, log_level="info")
    relay = Relay("127.0.0.1", upstream=saddr, process=True)
    c.on_close(relay.close)
    if client == "quicmux":
        cp, caddr = c.qm_client(relay.addr, security=SEC, key=KEY, header=HDR)
    else:
        cp, caddr = c.v2ray_client(relay.addr, security=SEC, key=KEY, header=HDR, target=target.addr)
    res, remaps, fresh = remap_during(c, relay, caddr, transfer_timeout=90, stall=20)
    res.raise_if_failed("transfer across %d re-maps" % len(remaps))
    qm.check(len(remaps) == REMAPS, "only %d of %d re-maps happened during the transfer "
             "(it ended too soon to test anything)" % (len(remaps), REMAPS))
    for i, (ok, why) in enumerate(fresh):
        qm.check(ok, "fresh connection after re-map %d failed: %s" % (i, why))
    qm.check(sp.alive() and cp.alive(), "a tunnel end exited")
    # One QUIC session all along: the client never opened another UDP socket.
    nsess = relay.stats["sessions"]
    qm.check(nsess == 1, "the client opened %d sessions (the first one was lost)" % nsess)
    # The server moved the session to each new port; the last one it names is the
    # relay's last upstream port.
    moved = moved_lines(sp)
    qm.check(len(moved) >= REMAPS, "server logged %d 'peer moved' lines, want >= %d" % (len(moved), REMAPS))
    last_port = remaps[-1][1][0]["upstream_port"]
    qm.check(moved[-1].rstrip().endswith(":%d" % last_port),
             "server's last move was not to the relay's new port %d: %s" % (last_port, moved[-1].strip()))
    return "%s; %d re-maps, %d fresh connections ok, %d 'peer moved' lines" % (
        res.summary(), len(remaps), len(fresh), len(moved))


def reference_v2ray(c):
    """v2ray client -> v2ray server: the reference loses the session on a re-map."""
    target = c.echo_server()
    sp, saddr = c.v2ray_server(target.addr, security=SEC, key=KEY, header=HDR)
    relay = Relay("127.0.0.1", upstream=saddr, process=True)
    c.on_close(relay.close)
    cp, caddr = c.v2ray_client(relay.addr, security=SEC, key=KEY, header=HDR, target=target.addr)
    # 8 s without any progress is lost for a bulk transfer on loopback.
    res, remaps, fresh = remap_during(c, relay, caddr, transfer_timeout=30, stall=8)
    qm.check(len(remaps) >= 1, "no re-map happened during the transfer")
    qm.check(not res.ok, "v2ray survived %d re-maps (the issue says it does not): %s" % (
        len(remaps), res.summary()))
    bad = res.failures()
    return "lost as expected after %d re-map(s): %s; fresh connections after re-maps: %s" % (
        len(remaps), bad[0].describe(), ", ".join(why for _ok, why in fresh))


def main():
    r = qm.Runner("test_rebind: NAT re-map under a live transfer")
    r.run("rebind.qm-client.qm-server", quicmux_server_case, "quicmux")
    r.run("rebind.qm-client.qm-server-port-range", quicmux_server_case, "quicmux", 5)
    if qm.have_v2ray():
        r.run("rebind.v2ray-client.qm-server", quicmux_server_case, "v2ray")
        r.run("rebind.reference.v2ray-client.v2ray-server", reference_v2ray)
    else:
        r.run("rebind.v2ray", lambda c: (_ for _ in ()).throw(qm.Skip("v2ray not installed")))
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
