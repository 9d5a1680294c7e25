#!/usr/bin/env python3
"""Interop with Debian's v2ray 4.34 (`/usr/bin/v2ray`).

For every security x header combination:
  (a) quicmux client -> v2ray server (dokodemo-door on quic) -> echo target
  (b) v2ray client (dokodemo-door -> freedom over quic) -> quicmux server -> echo target
byte-exact in both directions with EOF.  v2ray's proxies pass EOF on about 1 s late
(policy uplinkOnly/downlinkOnly), which the timeouts allow for.

Negative cases (mismatched settings must carry no data within 10 s): wrong key,
different security, different header size.  Same-size headers (srtp vs utp) are NOT a
mismatch for v2ray, so they are not tested as negative.
"""

import os
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402
from qmtest import MiB  # noqa: E402

KEY = "k1"
BIG = {("aes-128-gcm", "none"), ("chacha20-poly1305", "wechat-video"), ("none", "srtp")}


def positive(c, direction, host, sec, hdr):
    big = (sec, hdr) in BIG
    conns = 4 if big else 2
    key = KEY if sec != "none" else ""
    if direction == "qm-client":
        t = c.tunnel("quicmux", "v2ray", host=host, security=sec, key=key, header=hdr)
        qmproc = t["client"]
    else:
        t = c.tunnel("v2ray", "quicmux", host=host, security=sec, key=key, header=hdr)
        qmproc = t["server"]
    seed = zlib.crc32(("%s/%s/%s/%s" % (direction, host, sec, hdr)).encode())
    res = qm.check_transfer(t["addr"], conns=conns, nbytes=2 * MiB, seed=seed, timeout=30)
    res.raise_if_failed()
    qm.check(t["target"].accepted == conns, "target saw %d connections, expected %d" % (t["target"].accepted, conns))
    qm.check(qmproc.alive(), "quicmux exited during the transfer")
    qm.check(t["client"].alive() and t["server"].alive(), "a peer process exited during the transfer")
    return res.summary()


def negative(c, direction, csec, ckey, chdr, ssec, skey, shdr):
    if direction == "qm-client":
        t = c.tunnel("quicmux", "v2ray", security=csec, key=ckey, header=chdr,
                     server_security=ssec, server_key=skey, server_header=shdr)
        qmproc = t["client"]
    else:
        t = c.tunnel("v2ray", "quicmux", security=csec, key=ckey, header=chdr,
                     server_security=ssec, server_key=skey, server_header=shdr)
        qmproc = t["server"]
    got, outcome, dt = qm.probe_no_data(t["addr"], wait=10)
    qm.check(got == 0, "mismatched settings still carried data: %d bytes echoed (%s)" % (got, outcome))
    qm.check(t["target"].accepted == 0, "the target saw %d connection(s)" % t["target"].accepted)
    qm.check(qmproc.alive(), "quicmux exited (status %s) on the peer's mismatched packets" % qmproc.returncode())
    return "no data; %s after %.1fs" % (outcome, dt)


def many_conns(c, direction):
    """60 connections of 64 KiB, 10 at a time, through one tunnel: stream credit is given
    back as streams finish (v2ray server: 32 streams at once per connection)."""
    if direction == "qm-client":
        t = c.tunnel("quicmux", "v2ray", security="aes-128-gcm", key=KEY, header="utp")
    else:
        t = c.tunnel("v2ray", "quicmux", security="aes-128-gcm", key=KEY, header="utp")
    res = qm.check_transfer(t["addr"], sizes=[65536] * 60, seed=77, timeout=90, concurrency=10)
    res.raise_if_failed()
    qm.check(t["target"].accepted == 60, "target saw %d connections, expected 60" % t["target"].accepted)
    return res.summary()


def lossy(c, direction, loss):
    """5% of the datagrams (both ways, seeded) dropped between the two ends."""
    if direction == "qm-client":
        t = c.tunnel("quicmux", "v2ray", security="aes-128-gcm", key=KEY, header="wechat-video", relay=loss)
    else:
        t = c.tunnel("v2ray", "quicmux", security="aes-128-gcm", key=KEY, header="wechat-video", relay=loss)
    res = qm.check_transfer(t["addr"], conns=2, nbytes=MiB, seed=88, timeout=60, stall=20)
    res.raise_if_failed()
    return "%s; %d datagrams seen by the relay" % (res.summary(), len(t["relay"].datagrams()))


def main():
    r = qm.Runner("test_interop_v2ray")
    if not qm.have_v2ray():
        r.run("interop.v2ray-present", lambda c: (_ for _ in ()).throw(qm.Skip("v2ray not installed")))
        return r.finish()

    items = []
    for sec in qm.SECURITIES:
        for hdr in qm.HEADERS:
            for direction, label in (("qm-client", "qm-client.v2ray-server"), ("v2ray-client", "v2ray-client.qm-server")):
                items.append(("interop.v4.%s.%s.%s" % (label, sec, hdr), positive, (direction, "127.0.0.1", sec, hdr)))
    for direction, label in (("qm-client", "qm-client.v2ray-server"), ("v2ray-client", "v2ray-client.qm-server")):
        items.append(("interop.v6.%s.aes-128-gcm.srtp" % label, positive, (direction, "::1", "aes-128-gcm", "srtp")))
        items.append(("interop.v6.%s.none.none" % label, positive, (direction, "::1", "none", "none")))
    r.run_parallel(items, workers=3)

    mismatches = [
        ("key-k1-vs-k2", ("aes-128-gcm", "k1", "none"), ("aes-128-gcm", "k2", "none")),
        ("security-none-vs-aes", ("none", "", "none"), ("aes-128-gcm", KEY, "none")),
        ("security-aes-vs-chacha", ("aes-128-gcm", KEY, "none"), ("chacha20-poly1305", KEY, "none")),
        ("header-none-vs-srtp", ("none", "", "none"), ("none", "", "srtp")),
        ("header-srtp-vs-dtls", ("aes-128-gcm", KEY, "srtp"), ("aes-128-gcm", KEY, "dtls")),
    ]
    neg = []
    for name, cl, sv in mismatches:
        for direction, label in (("qm-client", "qm-client.v2ray-server"), ("v2ray-client", "v2ray-client.qm-server")):
            neg.append(("interop.negative.%s.%s" % (label, name), negative, (direction,) + cl + sv))
    r.run_parallel(neg, workers=len(neg))

    r.run_parallel([
        ("interop.qm-client.v2ray-server.60-connections", many_conns, ("qm-client",)),
        ("interop.v2ray-client.qm-server.60-connections", many_conns, ("v2ray-client",)),
        ("interop.qm-client.v2ray-server.loss-5pct", lossy, ("qm-client", 0.05)),
        ("interop.v2ray-client.qm-server.loss-5pct", lossy, ("v2ray-client", 0.05)),
    ], workers=4)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
