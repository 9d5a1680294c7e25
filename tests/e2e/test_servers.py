#!/usr/bin/env python3
"""Several servers (issue 13 item 3): one quicmux client, three quicmux servers, one down.

Cases (loopback only):
  servers.one-down      --server A --server B --server C; A and B are quicmux servers, C is
                        a UDP socket that swallows everything (a host that vanished: no ICMP,
                        so the handshake times out; the client runs with
                        --handshake-timeout 1).
                        1. 90 connections at once, held open, each echoed byte-exact: none
                           fails (the ones queued on C's handshake move to A and B when it
                           times out); A and B then carry them evenly (fewest streams first:
                           counts differ by at most 2), C none, and C is backing off.
                        2. connections one after another while C stays down, until three
                           handshakes to it failed in a row: none fails, C gets exactly one
                           session (the probe) per back-off, the back-offs are 1, 2, 4 s.
                        3. C comes back (a quicmux server on its port): short connections
                           keep coming while the SIGUSR1 lines are polled (bounded wait, no
                           sleep) until C is "up" after a completed handshake; then 60 held
                           connections spread over all three (each within 2 of the others).
                        The metrics page has the per-server series (promtool-clean).
                        Figures (# lines): time from the first connection to C being skipped,
                        time from C's return to its first completed handshake, and C's
                        back-off left when it came back.
  servers.name          one --server NAME:PORT where NAME has three A records (127.0.0.1,
                        .2, .3 in a private mount namespace's /etc/hosts, so the machine's
                        file is not touched); .3 swallows: 60 connections at once, none
                        fails, every address is one server in the SIGUSR1 lines, .3 backs
                        off, .1 and .2 share the load.  SKIP where unshare -m is not usable.
  servers.config        a JSON list of servers passes --check and is described as "servers
                        a, b, c"; a bad entry is named by its index; an empty list is refused.

One server behaves as before: the other e2e scripts (test_pool, test_robust, ...) cover it.

Run: QUICMUX_BIN=build/quicmux python3 tests/e2e/test_servers.py [NAME-SUBSTRING ...]
"""

import calendar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402

SEC, KEY = "aes-128-gcm", "servers-test-key"
HS_TIMEOUT = 1  # --handshake-timeout: the smallest the option allows
PAYLOAD = 4096


# --------------------------------------------------------------------------- helpers

class Swallower:
    """A UDP socket that reads and drops every datagram: a server that is down without
    telling anyone (no ICMP), so a QUIC handshake to it times out."""

    def __init__(self, host, port):
        self.sock = socket.socket(qm.family_of(host), socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.1)
        self.datagrams = 0
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self._stop:
            try:
                self.sock.recvfrom(65536)
                self.datagrams += 1
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self):
        if self._stop:
            return
        self._stop = True
        self.thread.join(5)
        self.sock.close()


def echo_held(addr, n, seed, timeout=20.0):
    """n connections at once; each sends PAYLOAD seeded bytes and reads them back
    byte-exact, then stays open.  Returns (socks, failures) - the caller closes socks."""
    socks, fails = [None] * n, []
    lock = threading.Lock()

    def one(i):
        data = qm.seeded_bytes(seed * 7919 + i, PAYLOAD)
        try:
            s = socket.create_connection(addr, timeout=timeout)
        except OSError as e:
            with lock:
                fails.append("conn %d: connect: %r" % (i, e))
            return
        socks[i] = s
        try:
            s.settimeout(timeout)
            s.sendall(data)
            got = b""
            while len(got) < len(data):
                d = s.recv(65536)
                if not d:
                    break
                got += d
            if got != data:
                with lock:
                    fails.append("conn %d: got %d of %d bytes%s" % (
                        i, len(got), len(data), ", differs" if len(got) == len(data) else ""))
        except OSError as e:
            with lock:
                fails.append("conn %d: %r" % (i, e))

    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    deadline = time.monotonic() + timeout + 5
    for t in ts:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in ts):
        fails.append("%d connections still running after %.0f s" % (sum(t.is_alive() for t in ts), timeout))
    return [s for s in socks if s is not None], fails


SUMMARY_RE = re.compile(r"\[stats\] .*\d+ connections \(")
SERVER_RE = re.compile(r"\[stats\] .*?: server (\S+) (.+?): sessions (\d+) \((\d+) handshaking\), "
                       r"streams (\d+), opened (\d+), handshakes (\d+) ok / (\d+) failed \((\d+) in a row\)")


def server_states(proc, nservers, timeout=5.0):
    """SIGUSR1 -> {addr: dict(state, sessions, handshaking, streams, opened, ok, failed,
    in_a_row)} from the server lines that follow the new summary line."""
    def lines():
        return proc.log().splitlines()

    def parse():
        ls = lines()
        idx = [i for i, ln in enumerate(ls) if SUMMARY_RE.search(ln)]
        if len(idx) <= before:
            return None
        out = {}
        for ln in ls[idx[-1] + 1:]:
            m = SERVER_RE.search(ln)
            if not m:
                continue
            out[m.group(1)] = dict(state=m.group(2), sessions=int(m.group(3)), handshaking=int(m.group(4)),
                                   streams=int(m.group(5)), opened=int(m.group(6)), ok=int(m.group(7)),
                                   failed=int(m.group(8)), in_a_row=int(m.group(9)))
        return out if len(out) >= nservers else None

    before = len([ln for ln in lines() if SUMMARY_RE.search(ln)])
    proc.send_signal(signal.SIGUSR1)
    res = [None]

    def got():
        res[0] = parse()
        return res[0] is not None
    qm.wait_until(got, timeout, "%d server lines after SIGUSR1 from %s" % (nservers, proc.name), proc=proc)
    return res[0]


LOG_TS_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z")


def log_time(line):
    """The wall-clock time (epoch s) at the start of a quicmux log line, or None."""
    m = LOG_TS_RE.match(line)
    if not m:
        return None
    return calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + int(m.group(2)) / 1000.0


def first_log(proc, pattern):
    for ln in proc.log().splitlines():
        if re.search(pattern, ln):
            return ln
    return None


def backoff_left(state):
    m = re.match(r"backing off ([\d.]+) s", state)
    return float(m.group(1)) if m else 0.0


def spread_ok(counts, slack=2):
    return max(counts) - min(counts) <= slack


def wait_streams_gone(proc, n, timeout=15.0):
    """Bounded poll of the SIGUSR1 lines until no server has streams."""
    deadline = time.monotonic() + timeout
    st = server_states(proc, n)
    while any(v["streams"] for v in st.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
        st = server_states(proc, n)
    qm.check(not any(v["streams"] for v in st.values()),
             "streams still counted %.0f s after every connection closed: %s" % (timeout, st))
    return st


def check_metrics(port, dead, row):
    """The per-server series agree with the SIGUSR1 line of the dead server (and
    promtool accepts the page, where installed)."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        text = r.read().decode()

    def val(name):
        m = re.search(r'^%s\{[^}]*server="%s"[^}]*\} (\S+)$' % (name, re.escape(dead)), text, re.M)
        qm.check(m is not None, "no %s series for server %s in the metrics" % (name, dead))
        return float(m.group(1))
    qm.check(val("quicmux_server_handshakes_failed_total") >= row["failed"],
             "quicmux_server_handshakes_failed_total below the SIGUSR1 line's %d" % row["failed"])
    qm.check(val("quicmux_server_handshakes_ok_total") == 0, "handshakes ok with a dead server")
    val("quicmux_server_up")
    if shutil.which("promtool"):
        p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
        out = (p.stdout + p.stderr).decode(errors="replace").strip()
        qm.check(p.returncode == 0 and not out, "promtool check metrics: exit %d: %s" % (p.returncode, out[:600]))


def states_when(proc, n, pred, timeout=5.0):
    """SIGUSR1 lines polled (bounded) until pred(states) holds; the last states."""
    deadline = time.monotonic() + timeout
    st = server_states(proc, n)
    while not pred(st) and time.monotonic() < deadline:
        time.sleep(0.1)
        st = server_states(proc, n)
    return st


def client_argv(listen, servers, extra=()):
    argv = [qm.quicmux_bin(), "client", "--listen", qm.hostport(*listen)]
    for s in servers:
        argv += ["--server", s]
    return argv + ["--security", SEC, "--key", KEY, "--handshake-timeout", str(HS_TIMEOUT),
                   "--log-level", "info"] + list(extra)


# --------------------------------------------------------------------------- cases

def case_one_down(c):
    echo = c.echo_server()
    _pa, a = c.qm_server(echo.addr, security=SEC, key=KEY, name="qm-server-a")
    _pb, b = c.qm_server(echo.addr, security=SEC, key=KEY, name="qm-server-b")
    dead = ("127.0.0.1", qm.free_udp_port())
    sw = Swallower(*dead)
    c.on_close(sw.close)
    names = ["%s:%d" % x for x in (a, b, dead)]
    na, nb, nd = names
    lport = qm.free_tcp_port()
    mport = qm.free_tcp_port()
    cp = c.spawn(client_argv(("127.0.0.1", lport), names, ["--metrics", "127.0.0.1:%d" % mport]), "qm-client")
    qm.wait_tcp_listen(lport, pid=cp.pid, timeout=10, proc=cp)
    caddr = ("127.0.0.1", lport)

    # 1. a burst while C is not known to be down yet
    t_wall0 = time.time()
    socks, fails = echo_held(caddr, 90, seed=1)
    try:
        qm.check(not fails, "%d of 90 connections failed with one server of three down: %s"
                 % (len(fails), "; ".join(fails[:5])))
        st = states_when(cp, 3, lambda x: sum(v["streams"] for v in x.values()) == 90)
    finally:
        qm.close_all(socks)
    qm.check(st[nd]["state"].startswith("backing off"), "the dead server is not backing off: %s" % st[nd])
    qm.check(st[nd]["failed"] >= 1 and st[nd]["ok"] == 0, "dead server's handshakes: %s" % st[nd])
    qm.check(st[nd]["streams"] == 0, "streams left on the dead server: %s" % st[nd])
    qm.check(st[na]["streams"] + st[nb]["streams"] == 90,
             "A and B carry %d + %d streams, want 90" % (st[na]["streams"], st[nb]["streams"]))
    qm.check(spread_ok([st[na]["streams"], st[nb]["streams"]]),
             "uneven: A %d streams, B %d" % (st[na]["streams"], st[nb]["streams"]))
    qm.check(st[na]["sessions"] >= 1 and st[nb]["sessions"] >= 1, "sessions: A %d, B %d"
             % (st[na]["sessions"], st[nb]["sessions"]))
    ln = first_log(cp, r"server %s: handshake failed" % re.escape(nd))
    qm.check(ln is not None, "no 'handshake failed' line for the dead server")
    t_skip = log_time(ln) - t_wall0
    c.note("burst of 90: 0 failed; A %d streams on %d sessions, B %d on %d; dead one skipped "
           "%.2f s after the first connection (handshake timeout %d s)"
           % (st[na]["streams"], st[na]["sessions"], st[nb]["streams"], st[nb]["sessions"], t_skip, HS_TIMEOUT))

    # 2. one after another while C stays down, until three handshakes to it failed in a
    #    row: each probe (one stream, after each back-off) moves on when it times out
    opened0, row0 = st[nd]["opened"], st[nd]["in_a_row"]
    t0 = time.monotonic()
    bad, n, slowest = [], 0, 0.0
    while True:
        t1 = time.monotonic()
        ok, why = qm.echo_once(caddr, qm.seeded_bytes(500 + n, PAYLOAD), timeout=15.0)
        slowest = max(slowest, time.monotonic() - t1)
        if not ok:
            bad.append("conn %d: %s" % (n, why))
        n += 1
        st = server_states(cp, 3)
        if st[nd]["in_a_row"] >= 3:
            break
        qm.check(time.monotonic() - t0 < 60, "three failed handshakes to the dead server take over 60 s: %s"
                 % st[nd])
        time.sleep(0.05)
    took = time.monotonic() - t0
    qm.check(not bad, "%d of %d sequential connections failed: %s" % (len(bad), n, "; ".join(bad[:5])))
    probes = st[nd]["opened"] - opened0
    qm.check(probes == st[nd]["in_a_row"] - row0,
             "%d sessions to the dead server for %d more failures: more than one probe per back-off"
             % (probes, st[nd]["in_a_row"] - row0))
    skips = [int(x) for x in re.findall(r"server %s: handshake failed .*skipped for (\d+) s" % re.escape(nd),
                                         cp.log())]
    qm.check(skips[:3] == [1, 2, 4], "back-offs of the dead server: %s, want 1, 2, 4 s" % skips)
    check_metrics(mport, nd, st[nd])
    c.note("%d in a row over %.1f s: 0 failed, %d probe(s) of the dead server, back-offs %s s, slowest "
           "connection %.2f s" % (n, took, probes, skips[:3], slowest))

    # 3. C comes back
    wait_streams_gone(cp, 3)
    st = server_states(cp, 3)
    left = backoff_left(st[nd]["state"])
    sw.close()
    _pc, _c = c.qm_server(echo.addr, security=SEC, key=KEY, name="qm-server-c", port=dead[1])
    t_back_wall, t_back = time.time(), time.monotonic()
    bound = 30.0 + HS_TIMEOUT + 10.0  # the longest back-off, one handshake, slack for a busy machine
    n, bad = 0, []
    while True:
        ok, why = qm.echo_once(caddr, qm.seeded_bytes(900 + n, PAYLOAD), timeout=15.0)
        if not ok:
            bad.append("conn %d: %s" % (n, why))
        n += 1
        st = server_states(cp, 3)
        if st[nd]["state"] == "up" and st[nd]["ok"] >= 1:
            break
        qm.check(time.monotonic() - t_back < bound,
                 "the server that came back was not used again within %.0f s: %s" % (bound, st[nd]))
        time.sleep(0.1)
    qm.check(not bad, "%d connections failed while the server came back: %s" % (len(bad), "; ".join(bad[:5])))
    ln = first_log(cp, r"server %s answers again" % re.escape(nd))
    qm.check(ln is not None, "no 'answers again' line for the server that came back")
    t_reuse = log_time(ln) - t_back_wall
    c.note("came back with %.1f s of back-off left: used again %.2f s later (%d connections meanwhile, 0 failed)"
           % (left, t_reuse, n))

    # ... and takes its share again
    wait_streams_gone(cp, 3)
    socks, fails = echo_held(caddr, 60, seed=3)
    try:
        qm.check(not fails, "%d of 60 connections failed with all three up: %s" % (len(fails), "; ".join(fails[:5])))
        st = states_when(cp, 3, lambda x: sum(v["streams"] for v in x.values()) == 60)
    finally:
        qm.close_all(socks)
    counts = [st[x]["streams"] for x in names]
    qm.check(sum(counts) == 60, "streams on A, B, C: %s, want 60 in all" % counts)
    qm.check(spread_ok(counts), "uneven over three: A, B, C carry %s" % counts)
    return "then 60 at once over A, B, C: %s streams" % counts


NS_SCRIPT = 'mount --bind "$1" /etc/hosts && shift && exec "$@"'


def ns_usable():
    if not shutil.which("unshare") or not shutil.which("mount"):
        return "unshare or mount not found"
    rc, out, err, _ = qm.run_cmd(["unshare", "-m", "sh", "-c", "mount --bind /etc/hosts /etc/hosts"], timeout=10)
    if rc != 0:
        return "unshare -m / mount --bind not usable: rc %s %s" % (rc, (out + err).strip()[:200])
    return None


def port_free_on(hosts):
    """A UDP port free on every host given."""
    for _ in range(50):
        p = qm.free_udp_port(hosts[0])
        ok = True
        for h in hosts[1:]:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind((h, p))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return p
    raise RuntimeError("no UDP port free on %s" % ", ".join(hosts))


def case_name(c):
    why = ns_usable()
    if why:
        raise qm.Skip(why)
    hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    port = port_free_on(hosts)
    echo = c.echo_server()
    c.qm_server(echo.addr, host=hosts[0], security=SEC, key=KEY, name="qm-server-1", port=port)
    c.qm_server(echo.addr, host=hosts[1], security=SEC, key=KEY, name="qm-server-2", port=port)
    sw = Swallower(hosts[2], port)
    c.on_close(sw.close)
    hfile = c.write_file("hosts", "".join("%s multi.test\n" % h for h in hosts) + "127.0.0.1 localhost\n")
    lport = qm.free_tcp_port()
    argv = ["unshare", "-m", "sh", "-c", NS_SCRIPT, "qmns", hfile] + \
        client_argv(("127.0.0.1", lport), ["multi.test:%d" % port])
    cp = c.spawn(argv, "qm-client-ns")
    qm.wait_tcp_listen(lport, timeout=10, proc=cp)
    socks, fails = echo_held(("127.0.0.1", lport), 60, seed=5)
    try:
        qm.check(not fails, "%d of 60 connections failed: %s" % (len(fails), "; ".join(fails[:5])))
        st = states_when(cp, 3, lambda x: sum(v["streams"] for v in x.values()) == 60)
    finally:
        qm.close_all(socks)
    names = ["%s:%d" % (h, port) for h in hosts]
    qm.check(all(x in st for x in names), "want one server line per address %s, got %s" % (names, sorted(st)))
    qm.check(st[names[2]]["state"].startswith("backing off"), "the dead address is not backing off: %s"
             % st[names[2]])
    counts = [st[x]["streams"] for x in names[:2]]
    qm.check(sum(counts) == 60 and spread_ok(counts), "streams on .1, .2: %s (want 60, even)" % counts)
    return "multi.test -> 3 servers; 60 at once, 0 failed; .1/.2 carry %s streams, .3 %s" % (
        counts, st[names[2]]["state"])


def case_config(c):
    qm.require_quicmux()
    base = {"role": "client", "listen": "127.0.0.1:%d" % qm.free_tcp_port(), "streamSettings": {"network": "quic"}}

    def run(server):
        cfg = dict(base, server=server)
        path = c.write_file("c.json", json.dumps({"tunnels": [cfg]}))
        rc, out, err, _ = qm.run_cmd([qm.quicmux_bin(), "-c", path, "--check"], timeout=10)
        return rc, out + err

    rc, out = run(["127.0.0.1:4433", "example.invalid:443", "[::1]:4433"])
    qm.check(rc == 0, "a list of servers fails --check: %s" % out.strip())
    qm.check("servers 127.0.0.1:4433, example.invalid:443, [::1]:4433" in out,
             "--check does not list the servers: %s" % out.strip())
    rc, out = run("127.0.0.1:4433")
    qm.check(rc == 0 and "server 127.0.0.1:4433" in out, "one server as a string: rc %s %s" % (rc, out.strip()))
    rc, out = run(["127.0.0.1:4433", "127.0.0.1:0"])
    qm.check(rc == 2 and "tunnels[0].server[1]" in out and "port" in out,
             "a bad second entry: rc %s, %s" % (rc, out.strip()))
    rc, out = run(["127.0.0.1:4433", 5])
    qm.check(rc == 2 and "tunnels[0].server[1]" in out, "a number in the list: rc %s, %s" % (rc, out.strip()))
    rc, out = run([])
    qm.check(rc == 2 and "empty list" in out, "an empty list: rc %s, %s" % (rc, out.strip()))
    rc, out, err, _ = qm.run_cmd([qm.quicmux_bin(), "client", "--listen", "127.0.0.1:1", "--server",
                                  "127.0.0.1:2", "--server", "nope", "--check"], timeout=10)
    qm.check(rc == 2 and "--server 'nope'" in out + err, "a bad second --server: rc %s, %s" % (rc, out + err))
    return None


def main():
    r = qm.Runner("servers: one client, several servers")
    if not qm.have_quicmux():
        r.run("servers.binary", lambda c: qm.require_quicmux())
        return r.finish()
    want = sys.argv[1:]
    for name, fn in (("servers.config", case_config), ("servers.one-down", case_one_down),
                     ("servers.name", case_name)):
        if not want or any(w in name for w in want):
            r.run(name, fn)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
