#!/usr/bin/env python3
"""quicmux client <-> quicmux server <-> echo target, on 127.0.0.1 and ::1.

* every security x header combination (3 x 6) on both address families: 4 concurrent
  connections x 4 MiB = 16 MiB each way, byte-exact, EOF (half-close) back;
* half-close in both directions, empty connections, many short connections
  (sequential and concurrent), a bulk single stream, a target that is down.
"""

import hashlib
import os
import random
import socket
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402
from qmtest import MiB  # noqa: E402

KEY = "k1"


def key_for(sec):
    return KEY if sec != "none" else None


def combo(c, host, sec, hdr):
    t = c.tunnel("quicmux", "quicmux", host=host, security=sec, key=key_for(sec), header=hdr)
    res = qm.check_transfer(t["addr"], conns=4, nbytes=4 * MiB, seed=zlib.crc32(("%s/%s/%s" % (host, sec, hdr)).encode()), timeout=30)
    res.raise_if_failed()
    qm.check(t["target"].accepted == 4, "target saw %d connections, expected 4" % t["target"].accepted)
    qm.check(t["client"].alive() and t["server"].alive(), "a quicmux process exited during the transfer")
    return res.summary()


def halfclose_delayed_read(c, host):
    """Client sends 1 MiB, shuts down its write side, reads only 1.5 s later: the full echo
    then EOF must arrive (the stream stays half-open meanwhile)."""
    t = c.tunnel("quicmux", "quicmux", host=host, security="aes-128-gcm", key=KEY, header="srtp")
    res = qm.check_transfer(t["addr"], conns=2, nbytes=MiB, seed=11, timeout=30, read_delay=1.5)
    res.raise_if_failed()
    return res.summary()


def halfclose_target_first(c, host):
    """The client sends 1 KiB and keeps its write side open; the target then sends 1 MiB
    and shuts down its write side.  The client must get the 1 MiB then EOF while its own
    direction is still open; only then does it send 1 MiB more and shut down; the target
    must get exactly 1 KiB + 1 MiB and then EOF."""
    target = c.source_sink_server(host, send_bytes=MiB, seed=21, wait_first=1024)
    t = c.tunnel("quicmux", "quicmux", host=host, security="chacha20-poly1305", key=KEY, header="dtls",
                 target=target)
    expect_down = hashlib.sha256(qm.seeded_bytes(21, MiB)).hexdigest()
    up = qm.seeded_bytes(22, 1024 + MiB)
    s = socket.create_connection(t["addr"], timeout=5)
    try:
        s.settimeout(10)
        s.sendall(up[:1024])
        h = hashlib.sha256()
        n = 0
        deadline = time.monotonic() + 20
        while True:
            qm.check(time.monotonic() < deadline, "no EOF from the target side after %d bytes" % n)
            try:
                d = s.recv(262144)
            except socket.timeout:
                raise qm.CheckFailed("no EOF from the target side (stalled after %d bytes)" % n)
            if not d:
                break
            h.update(d)
            n += len(d)
        qm.check(n == MiB and h.hexdigest() == expect_down,
                 "client got %d bytes (sha ok: %s), expected %d" % (n, h.hexdigest() == expect_down, MiB))
        # Our direction is still open after the peer's EOF.
        time.sleep(0.5)
        s.sendall(up[1024:])
        s.shutdown(socket.SHUT_WR)
    finally:
        s.close()
    qm.wait_until(lambda: len(target.results) >= 1, 20, "the target to finish reading")
    r = target.results[0]
    want = hashlib.sha256(up).hexdigest()
    qm.check(r["error"] is None, "target error: %s" % r["error"])
    qm.check(r["received"] == len(up) and r["sha256"] == want,
             "target got %d bytes (sha ok: %s), expected %d" % (r["received"], r["sha256"] == want, len(up)))
    qm.check(r["eof"], "target got no EOF")
    return "1 MiB down + EOF, then 1 MiB up + EOF"


def empty_conns(c, host):
    """Connections that send nothing and shut down at once get EOF back, 10 at a time."""
    t = c.tunnel("quicmux", "quicmux", host=host)
    res = qm.check_transfer(t["addr"], sizes=[0] * 10, seed=5, timeout=20)
    res.raise_if_failed("empty connections")
    return res.summary()


def many_short(c, host):
    """100 short connections one after another (stream credit must come back), then 200
    with 25 at a time; 1 B .. 32 KiB each, all byte-exact with EOF."""
    t = c.tunnel("quicmux", "quicmux", host=host, security="aes-128-gcm", key=KEY, header="wechat-video")
    rnd = random.Random(1234)
    seq = [rnd.randint(1, 32768) for _ in range(100)]
    res1 = qm.check_transfer(t["addr"], sizes=seq, seed=31, timeout=90, concurrency=1)
    res1.raise_if_failed("sequential short connections")
    conc = [rnd.randint(1, 32768) for _ in range(200)]
    res2 = qm.check_transfer(t["addr"], sizes=conc, seed=32, timeout=90, concurrency=25)
    res2.raise_if_failed("concurrent short connections")
    qm.check(t["target"].accepted == 300, "target saw %d connections, expected 300" % t["target"].accepted)
    return "100 sequential in %.2fs, 200 (25 at a time) in %.2fs" % (res1.elapsed, res2.elapsed)


def bulk_single(c, host):
    """One stream, 32 MiB each way (AES-128-GCM)."""
    t = c.tunnel("quicmux", "quicmux", host=host, security="aes-128-gcm", key=KEY)
    res = qm.check_transfer(t["addr"], conns=1, nbytes=32 * MiB, seed=41, timeout=60)
    res.raise_if_failed()
    return res.summary()


def target_down(c, host):
    """The TCP target refuses: the client's connection must be closed (no data) within
    10 s, the processes survive, and once the target is up the tunnel works."""
    port = qm.free_tcp_port(host)

    class _Addr:
        addr = (host, port)
        accepted = 0
    t = c.tunnel("quicmux", "quicmux", host=host, target=_Addr())
    got, outcome, dt = qm.probe_no_data(t["addr"], wait=10)
    qm.check(got == 0, "got %d bytes from a refused target" % got)
    qm.check(outcome in ("eof", "reset"), "connection to a refused target not closed within 10s (%s)" % outcome)
    qm.check(t["client"].alive() and t["server"].alive(), "a quicmux process exited")
    echo = qm.EchoServer(host, port)
    c.on_close(echo.close)
    res = qm.check_transfer(t["addr"], conns=2, nbytes=256 * 1024, seed=51, timeout=20)
    res.raise_if_failed("after the target came up")
    return "refused -> %s after %.2fs; then ok" % (outcome, dt)


def lossy(c, host, loss):
    """Through a relay that drops datagrams (seeded), data still arrives byte-exact."""
    t = c.tunnel("quicmux", "quicmux", host=host, security="aes-128-gcm", key=KEY, header="srtp", relay=loss)
    res = qm.check_transfer(t["addr"], conns=2, nbytes=MiB, seed=61, timeout=60, stall=20)
    res.raise_if_failed()
    n = len(t["relay"].datagrams())
    return "%s; %d datagrams seen by the relay" % (res.summary(), n)


def server_speaks_first(c, host):
    """The target sends first (like an SMTP or SSH banner) while the client
    has sent nothing yet: the stream must reach the server at once."""
    target = c.source_sink_server(host, send_bytes=64 * 1024, seed=31, wait_first=0)
    t = c.tunnel("quicmux", "quicmux", host=host, security="aes-128-gcm", key=KEY,
                 header="none", target=target)
    expect = qm.seeded_bytes(31, 64 * 1024)
    s = socket.create_connection(t["addr"], timeout=5)
    try:
        s.settimeout(10)
        got = b""
        while len(got) < len(expect):
            d = s.recv(65536)
            qm.check(d, "EOF after %d of %d banner bytes" % (len(got), len(expect)))
            got += d
        qm.check(got == expect, "banner bytes differ")
    except socket.timeout:
        raise qm.CheckFailed("nothing from a target that speaks first (got %d bytes)" % len(got))
    finally:
        s.close()
    return "64 KiB banner before the client sent a byte"


def main():
    r = qm.Runner("test_e2e")
    items = []
    for sec in qm.SECURITIES:
        for hdr in qm.HEADERS:
            for fam, host in (("v4", "127.0.0.1"), ("v6", "::1")):
                items.append(("e2e.%s.%s.%s" % (fam, sec, hdr), combo, (host, sec, hdr)))
    r.run_parallel(items, workers=2)

    extra = []
    for fam, host in (("v4", "127.0.0.1"), ("v6", "::1")):
        extra += [
            ("e2e.%s.halfclose-client-first-delayed-read" % fam, halfclose_delayed_read, (host,)),
            ("e2e.%s.halfclose-target-first" % fam, halfclose_target_first, (host,)),
            ("e2e.%s.empty-connections" % fam, empty_conns, (host,)),
            ("e2e.%s.server-speaks-first" % fam, server_speaks_first, (host,)),
        ]
    extra += [
        ("e2e.v4.many-short-connections", many_short, ("127.0.0.1",)),
        ("e2e.v6.many-short-connections", many_short, ("::1",)),
        ("e2e.v4.bulk-single-stream-32MiB", bulk_single, ("127.0.0.1",)),
        ("e2e.v4.target-down-then-up", target_down, ("127.0.0.1",)),
        ("e2e.v4.loss-5pct", lossy, ("127.0.0.1", 0.05)),
        ("e2e.v6.loss-15pct", lossy, ("::1", 0.15)),
    ]
    r.run_parallel(extra, workers=2)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
