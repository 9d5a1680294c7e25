#!/usr/bin/env python3
"""Faults: peers that die or are stopped in the middle of traffic (loopback only).

  faults.server-killed.direct     SIGKILL the quicmux server while 4 connections stream
                                  through a client that talks to it directly.  Every TCP
                                  connection on the client side must end (EOF or reset)
                                  within BOUND_DIRECT s: the dead port answers with ICMP
                                  port-unreachable, which the client can act on.
  faults.server-killed.silent     Same, but through relay.py, which stays up and swallows
                                  everything (like a server host that vanished): no ICMP,
                                  no CONNECTION_CLOSE.  The client runs with
                                  --idle-timeout 10, so the connections must end within
                                  10 s + slack (loss recovery may notice earlier).
  faults.client-killed            SIGKILL the quicmux client mid-transfer; the server runs
                                  with --idle-timeout 3 and must drop the session (SIGUSR1
                                  stats: 0 sessions) and close the target-side TCP
                                  connections within 3 s + slack.
  faults.sigterm.<role>.<state>   SIGTERM to an idle client/server, or one with open
                                  connections: exit status 0, within 2 s when idle and
                                  within --drain (default 2 s) + 2 s with connections; a
                                  second SIGTERM during the drain stops at once.
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
from relay import Relay  # noqa: E402

SEC, KEY, HDR = "aes-128-gcm", "faults-key", "wechat-video"
BOUND_DIRECT = 15.0
CLIENT_IDLE = 10
SERVER_IDLE = 3
SLACK = 5.0


class Streamer:
    """N TCP connections that send data forever and read what comes back (echo), and
    record when and how each one ended."""

    def __init__(self, addr, n):
        self.addr = addr
        self.conns = []
        self.ended = {}  # idx -> (time, how)
        self.received = [0] * n
        self.stop = threading.Event()
        self.threads = []
        for i in range(n):
            s = socket.create_connection(addr, timeout=5)
            s.settimeout(0.5)
            self.conns.append(s)
            t1 = threading.Thread(target=self._writer, args=(i, s), daemon=True)
            t2 = threading.Thread(target=self._reader, args=(i, s), daemon=True)
            t1.start()
            t2.start()
            self.threads += [t1, t2]

    def _end(self, i, how):
        if i not in self.ended:
            self.ended[i] = (time.monotonic(), how)

    def _writer(self, i, s):
        buf = os.urandom(32768)
        while not self.stop.is_set() and i not in self.ended:
            try:
                s.send(buf)
            except socket.timeout:
                continue
            except OSError as e:
                self._end(i, "write error %s" % e.__class__.__name__)
                return
            time.sleep(0.005)  # ~6 MB/s per connection at most

    def _reader(self, i, s):
        while not self.stop.is_set():
            try:
                d = s.recv(65536)
            except socket.timeout:
                continue
            except OSError as e:
                self._end(i, "reset (%s)" % e.__class__.__name__)
                return
            if not d:
                self._end(i, "EOF")
                return
            self.received[i] += len(d)

    def wait_all_ended(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.ended) < len(self.conns):
            time.sleep(0.05)
        return len(self.ended) == len(self.conns)

    def close(self):
        self.stop.set()
        for s in self.conns:
            try:
                s.close()
            except OSError:
                pass
        for t in self.threads:
            t.join(2)


STATS_RE = re.compile(r"(\d+) sessions.*?(\d+) bad datagrams")


def sessions_of(proc, timeout=3.0):
    before = proc.log().count(" bad datagrams")
    proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = proc.log()
        if log.count(" bad datagrams") > before:
            line = [ln for ln in log.splitlines() if " bad datagrams" in ln][-1]
            m = STATS_RE.search(line)
            if m:
                return int(m.group(1))
        time.sleep(0.05)
    raise qm.CheckFailed("%s printed no stats line after SIGUSR1" % proc.name)


def server_killed(c, silent):
    target = c.echo_server()
    sp, saddr = c.qm_server(target.addr, security=SEC, key=KEY, header=HDR, log_level="info")
    extra = ()
    if silent:
        relay = Relay("127.0.0.1", upstream=saddr, seed=1)
        c.on_close(relay.close)
        srv = relay.addr
        extra = ("--idle-timeout", str(CLIENT_IDLE))
        bound = CLIENT_IDLE + SLACK
    else:
        srv = saddr
        bound = BOUND_DIRECT
    cp, caddr = c.qm_client(srv, security=SEC, key=KEY, header=HDR, extra=extra, log_level="info")
    st = Streamer(caddr, 4)
    c.on_close(st.close)
    qm.wait_until(lambda: min(st.received) > 256 * 1024, 20, "data flowing on all 4 connections")
    qm.check(not st.ended, "a connection ended before the fault: %s" % st.ended)
    t_kill = time.monotonic()
    sp.send_signal(signal.SIGKILL)
    sp.wait(5)
    ok = st.wait_all_ended(bound + 2)
    took = {i: round(t - t_kill, 2) for i, (t, _h) in st.ended.items()}
    hows = sorted({h for _t, h in st.ended.values()})
    c.note("connections ended %s after the kill (%s); bound %.0fs" % (sorted(took.values()), ", ".join(hows), bound))
    qm.check(ok, "%d of 4 TCP connections still open %.0f s after the server was killed (ended: %s)"
             % (4 - len(st.ended), bound + 2, took))
    worst = max(took.values())
    qm.check(worst <= bound, "the last connection ended %.1f s after the kill (bound %.0f s)" % (worst, bound))
    qm.check(cp.alive(), "the client exited (status %s) instead of just dropping the session" % cp.returncode())
    # The client must still work once a server is back on the same port.
    if not silent:
        sp2 = c.spawn([qm.quicmux_bin(), "server", "--listen", qm.hostport(*saddr), "--target",
                       qm.hostport(*target.addr), "--security", SEC, "--key", KEY, "--header", HDR,
                       "--log-level", "info"], "qm-server-2")
        qm.wait_udp_bound(saddr[1], pid=sp2.pid, timeout=10, proc=sp2)
        res = qm.check_transfer(caddr, conns=2, nbytes=256 * 1024, seed=5, timeout=30)
        res.raise_if_failed("transfer after the server came back")
        c.note("a new server on the same port works: " + res.summary())


def case_client_killed(c):
    target = c.echo_server()
    sp, saddr = c.qm_server(target.addr, security=SEC, key=KEY, header=HDR,
                            extra=("--idle-timeout", str(SERVER_IDLE)), log_level="info")
    cp, caddr = c.qm_client(saddr, security=SEC, key=KEY, header=HDR, log_level="info")
    st = Streamer(caddr, 4)
    c.on_close(st.close)
    qm.wait_until(lambda: min(st.received) > 256 * 1024, 20, "data flowing on all 4 connections")
    qm.check(sessions_of(sp) == 1 and target.active == 4,
             "expected 1 session and 4 target connections before the kill (target has %d)" % target.active)
    t_kill = time.monotonic()
    cp.send_signal(signal.SIGKILL)
    cp.wait(5)
    bound = SERVER_IDLE + SLACK
    gone_at = None
    deadline = t_kill + bound + 5
    while time.monotonic() < deadline:
        if sessions_of(sp) == 0 and target.active == 0:
            gone_at = time.monotonic() - t_kill
            break
        time.sleep(0.25)
    qm.check(sp.alive(), "the server exited (status %s)" % sp.returncode())
    qm.check(gone_at is not None, "server still has %d sessions / target %d connections %.0f s after the client "
             "was killed" % (sessions_of(sp), target.active, bound + 5))
    qm.check(gone_at <= bound, "session freed %.1f s after the kill (bound %.0f s)" % (gone_at, bound))
    c.note("session and target connections gone %.1f s after the client was killed (idle timeout %d s)"
           % (gone_at, SERVER_IDLE))


def case_sigterm(c, role, state):
    target = c.echo_server()
    sp, saddr = c.qm_server(target.addr, security=SEC, key=KEY, header=HDR, log_level="info")
    cp, caddr = c.qm_client(saddr, security=SEC, key=KEY, header=HDR, log_level="info")
    st = None
    if state != "idle":
        st = Streamer(caddr, 3)
        c.on_close(st.close)
        qm.wait_until(lambda: min(st.received) > 64 * 1024, 20, "data flowing")
    victim = sp if role == "server" else cp
    t0 = time.monotonic()
    victim.send_signal(signal.SIGTERM)
    if state == "twice":
        time.sleep(0.2)
        victim.send_signal(signal.SIGTERM)
    bound = {"idle": 2.0, "busy": 2.0 + 2.0, "twice": 1.5}[state]
    rc = victim.wait(bound + 5)
    took = time.monotonic() - t0
    qm.check(rc is not None, "%s still running %.0f s after SIGTERM" % (role, bound + 5))
    qm.check(rc == 0, "%s exited with status %s after SIGTERM (want 0)" % (role, rc))
    qm.check(took <= bound, "%s took %.2f s to exit after SIGTERM (bound %.1f s)" % (role, took, bound))
    note = "exit 0 after %.2fs" % took
    if st is not None:
        ok = st.wait_all_ended(10)
        note += "; client-side connections %s" % ("all ended" if ok else "NOT all ended")
        qm.check(ok, "TCP connections still open 10 s after the %s stopped" % role)
    return note


def main():
    r = qm.Runner("faults: killed and stopped peers")
    if not qm.have_quicmux():
        r.run("faults.binary", lambda c: qm.require_quicmux())
        return r.finish()
    help_text = qm.run_cmd([qm.quicmux_bin(), "server", "--help"])[1]
    r.run("faults.server-killed.direct", server_killed, False)
    r.run("faults.server-killed.silent", server_killed, True)
    if "--idle-timeout" in help_text:
        r.run("faults.client-killed", case_client_killed)
    else:
        r.run("faults.client-killed", lambda c: (_ for _ in ()).throw(qm.Skip("no --idle-timeout option")))
    for role in ("client", "server"):
        for state in ("idle", "busy", "twice"):
            r.run("faults.sigterm.%s.%s" % (role, state), case_sigterm, role, state)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
