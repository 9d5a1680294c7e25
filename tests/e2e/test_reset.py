#!/usr/bin/env python3
"""Stateless resets (RFC 9000 §10.3): a restarted quicmux server tells clients at once.

The server derives its stateless-reset tokens from a secret kept in --state-dir, so a new
process answers a packet of a session it never knew with a reset the client accepts:

* reset.qm.restart:     a quicmux client holds an established session; the server is
  killed (SIGKILL) and started again on the same port with the same --state-dir; a new
  connection then works (byte-exact), the client logged the reset, the new server counted
  the resets it sent, and the client opened exactly one new session for it;
* reset.v2ray-client.restart: the same with a v2ray client: quic-go accepts the reset,
  and v2ray's dialer, which moves no stream to a new session, fails the connection that
  met it at once (it would hang until quic-go's idle timeout without the reset); the
  next connection works;
* reset.qm.forged:      during a byte-exact transfer, datagrams shaped like stateless
  resets but with wrong tokens are injected towards the client from the server's address
  (the relay's): the transfer completes, no reset is logged, no new session is made;
* reset.qm.no-false-reset: a transfer over a lossy, reordering path while nothing is
  restarted: no reset is sent or logged;
* reset.state-dir.bad: a secret file of the wrong size stops the server at start with a
  message that names the file.

How fast (median of repeated restarts, against v2ray too): bench/restart.py.
"""

import os
import random
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402
from qmtest import MiB  # noqa: E402
from relay import Relay  # noqa: E402

SEC, KEY = "aes-128-gcm", "reset-test-key"


def echo_ok(addr, seed, timeout=10.0):
    return qm.echo_once(addr, qm.seeded_bytes(seed, 4096), timeout)


def server_stats(proc):
    before = len(qm_stats_lines(proc))
    proc.send_signal(signal.SIGUSR1)
    qm.wait_until(lambda: len(qm_stats_lines(proc)) > before, 5, "a stats line from " + proc.name, proc=proc)
    return qm_stats_lines(proc)[-1]


def qm_stats_lines(proc):
    return [ln for ln in proc.log().splitlines() if "stateless resets sent" in ln]


def resets_logged(proc):
    return [ln for ln in proc.log().splitlines() if "stateless reset from the server" in ln]


def restart(c, client_kind):
    echo = c.echo_server()
    state = os.path.join(c.dir, "state")
    port = qm.free_udp_port()
    sp, saddr = c.qm_server(echo.addr, security=SEC, key=KEY, port=port, extra=("--state-dir", state),
                            name="server-1")
    qm.check(os.path.exists(os.path.join(state, "static-secret")), "no static-secret file in --state-dir")
    mode = os.stat(os.path.join(state, "static-secret")).st_mode & 0o777
    qm.check(mode == 0o600, "static-secret has mode %o, want 600" % mode)
    if client_kind == "qm":
        cp, caddr = c.qm_client(saddr, security=SEC, key=KEY)
    else:
        cp, caddr = c.v2ray_client(saddr, security=SEC, key=KEY, target=echo.addr)
    ok, why = echo_ok(caddr, 1)
    qm.check(ok, "before the restart: %s" % why)
    udp_before = qm.count_udp_sockets(cp.pid)
    sp.send_signal(signal.SIGKILL)
    sp.wait(5)
    sp2, _ = c.qm_server(echo.addr, security=SEC, key=KEY, port=port, extra=("--state-dir", state),
                         name="server-2")
    t0 = time.monotonic()
    ok, why = echo_ok(caddr, 2, timeout=15.0)
    note = ""
    if client_kind == "v2ray" and not ok:
        # v2ray's dialer does not move a stream to a new session: the connection that
        # met the reset fails at once, and the next one gets a new session
        note = "v2ray client: first connection failed after %.2fs (%s), " % (time.monotonic() - t0, why)
        ok, why = echo_ok(caddr, 4, timeout=15.0)
    qm.check(ok, "first connection after the restart: %s" % why)
    line = server_stats(sp2)
    m = __import__("re").search(r"(\d+) stateless resets sent", line)
    sent = int(m.group(1)) if m else -1
    qm.check(sent >= 1, "the new server sent no stateless reset: %s" % line)
    if client_kind == "qm":
        qm.check(resets_logged(cp), "the client did not log the reset")
        # the old session's socket is gone, one new one carries the new connection
        qm.wait_until(lambda: qm.count_udp_sockets(cp.pid) == udp_before, 5,
                      "the client back to %d UDP socket(s)" % udp_before, proc=cp)
    ok, why = echo_ok(caddr, 3)
    qm.check(ok, "second connection after the restart: %s" % why)
    return "%snew server: %d stateless reset(s) sent" % (note, sent)


def forged(c):
    """Fake resets (wrong tokens) from the server's address must change nothing."""
    echo = c.echo_server()
    sp, saddr = c.qm_server(echo.addr, security="none", key="", extra=("--state-dir", os.path.join(c.dir, "s")))
    relay = c.udp_relay(saddr)
    cp, caddr = c.qm_client(relay.addr, security="none", key="")
    stop = threading.Event()
    sent = [0]
    rnd = random.Random(5)

    def inject():
        while not stop.is_set() and sent[0] < 2000:
            for client in list(relay._up.keys()):
                size = rnd.randint(22, 60)
                pkt = bytearray(rnd.getrandbits(8) for _ in range(size))
                pkt[0] = 0x40 | (pkt[0] & 0x3F)  # short header, fixed bit
                try:
                    relay.sock.sendto(bytes(pkt), client)
                    sent[0] += 1
                except OSError:
                    pass
            time.sleep(0.002)
    t = threading.Thread(target=inject, daemon=True)
    # a first connection makes the session (and the relay learn the client's address)
    ok, why = echo_ok(caddr, 10)
    qm.check(ok, "before the forged resets: %s" % why)
    udp_before = qm.count_udp_sockets(cp.pid)
    t.start()
    try:
        res = qm.check_transfer(caddr, conns=4, nbytes=4 * MiB, seed=11, timeout=60)
    finally:
        stop.set()
        t.join(5)
    res.raise_if_failed()
    qm.check(sent[0] > 100, "only %d forged resets were injected" % sent[0])
    qm.check(not resets_logged(cp), "the client took a forged reset: %s" % resets_logged(cp)[:1])
    qm.check(qm.count_udp_sockets(cp.pid) == udp_before, "the client opened a new session")
    return "%d forged resets injected during 4 x 4 MiB each way" % sent[0]


def no_false_reset(c):
    """A lossy, reordering path and nothing restarted: nobody sends or takes a reset."""
    echo = c.echo_server()
    sp, saddr = c.qm_server(echo.addr, security=SEC, key=KEY, extra=("--state-dir", os.path.join(c.dir, "s")))
    relay = Relay("127.0.0.1", upstream=saddr, seed=3, loss=0.03, delay_ms=5, reorder=0.05, process=True)
    c.on_close(relay.close)
    cp, caddr = c.qm_client(relay.addr, security=SEC, key=KEY)
    res = qm.check_transfer(caddr, conns=4, nbytes=4 * MiB, seed=21, timeout=120)
    res.raise_if_failed()
    line = server_stats(sp)
    qm.check(" 0 stateless resets sent" in line, "the server sent resets: %s" % line)
    qm.check(not resets_logged(cp), "the client logged a reset")
    return None


def bad_state_file(c):
    state = os.path.join(c.dir, "state")
    os.makedirs(state)
    with open(os.path.join(state, "static-secret"), "wb") as f:
        f.write(b"too short")
    port = qm.free_udp_port()
    rc, out, err, _ = qm.run_cmd([qm.quicmux_bin(), "server", "--listen", "127.0.0.1:%d" % port, "--target",
                               "127.0.0.1:9", "--state-dir", state], timeout=10)
    qm.check(rc != 0, "the server started with a bad secret file")
    qm.check("static-secret" in err, "the error does not name the file: %r" % err)
    return None


def main():
    r = qm.Runner("test_reset")
    items = [
        ("reset.qm.restart", restart, ("qm",)),
        ("reset.qm.forged", forged, ()),
        ("reset.qm.no-false-reset", no_false_reset, ()),
        ("reset.state-dir.bad", bad_state_file, ()),
    ]
    if qm.have_v2ray():
        items.append(("reset.v2ray-client.restart", restart, ("v2ray",)))
    r.run_parallel(items, workers=2)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
