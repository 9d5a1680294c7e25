#!/usr/bin/env python3
"""UDP through the tunnel (--udp: flows in QUIC DATAGRAM frames), on loopback.

  udp.sizes            datagrams of 1, 1200, 1500, 9000 and 65,507 bytes come back
                       byte-exact through quicmux client --udp -> quicmux server --udp
                       -> a UDP echo target (several local peers at once); the
                       client's metrics count them
  udp.dns              a real DNS server (dnsmasq) behind the tunnel, queried with dig:
                       every UDP query answered, and TCP queries through the same tunnel
  udp.iperf3           iperf3 -u at a fixed rate through the tunnel: the loss is reported
  udp.reassembly-loss  9000-byte datagrams (8 fragments) through tests/e2e/relay.py (5 %
                       loss, reordering, duplicates each way, 1280-byte MTU): whole
                       datagrams or nothing, never a corrupted one
  udp.flood            a flood of small datagrams: the bounded queue drops, client and
                       server memory (VmRSS) stay within a generous bound
  udp.idle             --udp-idle 1: the server closes a flow's socket after a second
  udp.server-restart   the server killed and started again: the same local peer's flow
                       moves to a new session
  udp.several-servers  --server twice, the first dead: the flow ends up on the live one
  udp.v2ray-server     quicmux client --udp against a v2ray server: UDP refused with one
                       log line, TCP through the same tunnel byte-exact
  udp.qm-server-no-udp the same against a quicmux server without --udp
  udp.v2ray-client     a v2ray client against a quicmux server --udp (datagrams
                       advertised): TCP byte-exact
  udp.options          bad UDP options stop before anything starts
"""

import os
import random
import re
import shutil
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402
from relay import Relay  # noqa: E402

MiB = qm.MiB
REFUSAL = "does not take QUIC datagrams"


class UdpEcho:
    """A UDP echo target on 127.0.0.1 (a thread; bounded close)."""

    def __init__(self, echo=True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MiB)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.addr = self.sock.getsockname()
        self.echo = echo
        self.count = 0
        self.peers = set()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                data, src = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.count += 1
            self.peers.add(src)
            if self.echo:
                try:
                    self.sock.sendto(data, src)
                except OSError:
                    pass

    def close(self):
        self._stop.set()
        self._t.join(2)
        self.sock.close()


def udp_echo(c, echo=True):
    e = UdpEcho(echo)
    c.on_close(e.close)
    return e


def udp_tunnel(c, target, client_extra=(), server_extra=(), relay=None, security=None, key=None,
               header=None):
    """quicmux server --udp -> target, client --udp (through a lossy relay if given)."""
    sp, saddr = c.qm_server(target, security=security, key=key, header=header,
                            extra=("--udp",) + tuple(server_extra))
    dial = saddr
    if relay is not None:  # tests/e2e/relay.py with these impairments
        c.relay = Relay("127.0.0.1", upstream=saddr, seed=5, process=True, **relay)
        c.on_close(c.relay.close)
        dial = c.relay.addr
    cp, caddr = c.qm_client(dial, security=security, key=key, header=header, port=free_port_both(),
                            extra=("--udp",) + tuple(client_extra))
    qm.udp_bound_at(caddr[1], cp.pid, cp)
    return sp, cp, caddr


def udp_sock():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MiB)
    s.bind(("127.0.0.1", 0))
    return s


def roundtrip(sock, addr, data, tries=3, wait=3.0):
    """Send data, wait for the same bytes back; UDP may lose one, so up to `tries` sends.
    Returns the reply that matched, or the last wrong one / None."""
    last = None
    for _ in range(tries):
        sock.sendto(data, addr)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                got, _src = sock.recvfrom(70000)
            except socket.timeout:
                break
            if got == data:
                return got
            last = got
    return last


def stats_line(proc, marker="UDP:"):
    """SIGUSR1 and wait for a new stats line that has marker."""
    def lines():
        return [ln for ln in proc.log().splitlines() if marker in ln]
    before = len(lines())
    proc.send_signal(signal.SIGUSR1)
    qm.wait_until(lambda: len(lines()) > before, 5, "a stats line from " + proc.name, proc=proc)
    return lines()[-1]


def stat(line, pattern):
    m = re.search(pattern, line)
    return int(m.group(1)) if m else None


def free_port_both():
    """A port free on 127.0.0.1 for both UDP and TCP (DNS serves both, and a client
    --udp listens on both)."""
    for _ in range(50):
        p = qm.free_udp_port()
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            t.close()
    raise qm.CheckFailed("no port free for both UDP and TCP")


def sanitized(pid):
    """Is the process built with AddressSanitizer (a runtime library in its maps, or the
    sanitizer environment of scripts/sanitize.sh)?"""
    try:
        with open("/proc/%d/maps" % pid) as f:
            if "asan" in f.read():
                return True
    except OSError:
        pass
    return "ASAN_OPTIONS" in os.environ


def vmrss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    raise qm.CheckFailed("no VmRSS for pid %d" % pid)


# --------------------------------------------------------------------------- cases

def sizes(c, security=None, header=None):
    e = udp_echo(c)
    mport = qm.free_tcp_port()
    _sp, cp, caddr = udp_tunnel(c, e.addr, client_extra=("--metrics", "127.0.0.1:%d" % mport),
                                security=security, key="k" if security else None, header=header)
    rnd = random.Random(12)
    socks = [udp_sock() for _ in range(3)]  # three local peers: three flows
    try:
        for n in (1, 1200, 1500, 9000, 65507):
            for i, s in enumerate(socks):
                data = bytes(rnd.getrandbits(8) for _ in range(n)) if n < 2000 else os.urandom(n)
                got = roundtrip(s, caddr, data)
                qm.check(got == data, "%d bytes from peer %d: %s" % (
                    n, i, "no reply" if got is None else "%d bytes back, not the same" % len(got)))
    finally:
        for s in socks:
            s.close()
    qm.check(len(e.peers) == 3, "the target saw %d source addresses for 3 local peers" % len(e.peers))
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=5) as r:
        text = r.read().decode()
    def metric(name, extra=""):
        m = re.search(r'^%s\{tunnel="client",role="client"%s\} (\d+)$' % (name, extra), text, re.M)
        return int(m.group(1)) if m else None
    flows = metric("quicmux_udp_flows_total")
    up = metric("quicmux_udp_flow_datagrams_total", ',direction="up"')
    down = metric("quicmux_udp_flow_datagrams_total", ',direction="down"')
    # 15 datagrams each way (more only if one was lost and sent again)
    qm.check(flows == 3 and up is not None and up >= 15 and down is not None and down >= 15,
             "metrics: flows %s, up %s, down %s" % (flows, up, down))
    line = stats_line(cp)
    return "5 sizes x 3 peers byte-exact; client: %s" % line.split("; ", 1)[-1]


def dns(c, n=60):
    for b in ("dnsmasq", "dig"):
        if not shutil.which(b) and not os.path.exists("/usr/sbin/" + b):
            raise qm.Skip("%s not installed (scripts/deps.sh --test)" % b)
    dport = free_port_both()
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    dp = c.spawn([dnsmasq, "--no-daemon", "--conf-file=/dev/null", "--port=%d" % dport,
                  "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
                  "--pid-file=", "--user=root", "--address=/example.test/192.0.2.1",
                  "--log-facility=-"], "dnsmasq")
    qm.wait_udp_bound(dport, pid=dp.pid, timeout=10, proc=dp)
    qm.wait_tcp_listen(dport, pid=dp.pid, timeout=10, proc=dp)
    _sp, cp, caddr = udp_tunnel(c, ("127.0.0.1", dport))
    names = ["q%d.example.test" % i for i in range(n)]
    batch = c.write_file("queries", "".join("%s A\n" % x for x in names))
    # +tries=2: UDP is unreliable; every query must still get its answer.
    rc, out, err, _ = qm.run_cmd(["dig", "@127.0.0.1", "-p", str(caddr[1]), "+tries=2", "+time=3",
                                  "+noall", "+answer", "-f", batch], timeout=120)
    answered = set()
    for ln in out.splitlines():
        parts = ln.split()
        if len(parts) >= 5 and parts[3] == "A" and parts[4] == "192.0.2.1":
            answered.add(parts[0].rstrip("."))
    missing = [x for x in names if x not in answered]
    qm.check(not missing, "%d of %d UDP queries unanswered (dig rc %s): %s; %s" % (
        len(missing), n, rc, missing[:5], err[-300:]))
    rc, out, err, _ = qm.run_cmd(["dig", "@127.0.0.1", "-p", str(caddr[1]), "+tcp", "+short",
                                  "tcp.example.test"], timeout=30)
    qm.check(out.strip() == "192.0.2.1", "the TCP query got %r (rc %s, %r)" % (out, rc, err[-200:]))
    line = stats_line(cp)
    c.figures = {"dns_queries": n, "dns_answered": len(answered)}
    return "%d/%d UDP queries answered, TCP query answered; %s" % (len(answered), n,
                                                                 line.split("; ", 1)[-1])


def iperf3(c, rate="20M", seconds=3, length=1200, check_loss=True, window="4M", extra=()):
    if not shutil.which("iperf3"):
        raise qm.Skip("iperf3 not installed")
    import json
    port = qm.free_tcp_port()
    c.spawn(["iperf3", "-s", "-p", str(port), "-1", "-B", "127.0.0.1"], "iperf3-server")
    qm.wait_tcp_listen(port, timeout=10)
    sp, cp, caddr = udp_tunnel(c, ("127.0.0.1", port), client_extra=extra, server_extra=extra)
    rc, out, err, _ = qm.run_cmd(["iperf3", "-c", "127.0.0.1", "-p", str(caddr[1]), "-u", "-b", rate,
                                  "-l", str(length), "-t", str(seconds), "-w", window, "--json"],
                                 timeout=seconds + 60)
    qm.check(rc == 0, "iperf3 -u failed (rc %s): %s %s" % (rc, out[-400:], err[-300:]))
    res = json.loads(out)
    s = res["end"]["sum"]
    qm.check(s["packets"] > 0, "iperf3 sent no datagrams: %r" % s)
    if check_loss:
        qm.check(s["lost_percent"] < 50, "iperf3: %.1f %% lost" % s["lost_percent"])
    line, sline = stats_line(cp), stats_line(sp)
    c.figures = {"iperf3_rate": rate, "iperf3_seconds": seconds, "iperf3_length": length,
                 "iperf3_packets": s["packets"], "iperf3_lost": s["lost_packets"],
                 "iperf3_lost_percent": s["lost_percent"], "iperf3_jitter_ms": s["jitter_ms"],
                 "iperf3_mbit_s": s.get("bits_per_second", 0) / 1e6,
                 "iperf3_client_up": stat(line, r"(\d+) datagrams up"),
                 "iperf3_client_queue_full": stat(line, r"dropped: (\d+) queue full"),
                 "iperf3_server_to_target": stat(sline, r"(\d+) datagrams up"),
                 "iperf3_server_local_drops": stat(sline, r"(\d+) local")}
    # what the tunnel itself lost: queued by the client, never sent on by the server
    if c.figures["iperf3_client_up"] is not None and c.figures["iperf3_server_to_target"] is not None:
        c.figures["tunnel_lost"] = c.figures["iperf3_client_up"] - c.figures["iperf3_server_to_target"]
    return ("iperf3 -u -b %s -l %d -w %s %ds: %d datagrams, %d lost (%.2f %%), jitter %.3f ms; "
            "the tunnel lost %s (client queued %s, server sent on %s)" % (
                rate, length, window, seconds, s["packets"], s["lost_packets"], s["lost_percent"],
                s["jitter_ms"], c.figures.get("tunnel_lost"), c.figures["iperf3_client_up"],
                c.figures["iperf3_server_to_target"]))


def reassembly_loss(c):
    e = udp_echo(c)
    # 5 % loss, reordering and duplicates each way, and a 1280-byte MTU (path MTU
    # discovery finds it; every piece must still fit)
    _sp, cp, caddr = udp_tunnel(c, e.addr, relay={"loss": 0.05, "reorder": 0.05, "duplicate": 0.02,
                                                  "mtu": 1280})
    s = udp_sock()
    c.on_close(s.close)
    n, size = 150, 9000
    sent = {}
    for i in range(n):
        data = i.to_bytes(4, "big") + random.Random(i).randbytes(size - 4)
        sent[i] = data
    good, bad = set(), []
    # pace the sends (one every 5 ms) so the queue is never the reason for a drop
    for i in range(n):
        s.sendto(sent[i], caddr)
        time.sleep(0.005)
        s.setblocking(False)
        while True:
            try:
                got = s.recv(70000)
            except BlockingIOError:
                break
            k = int.from_bytes(got[:4], "big") if len(got) >= 4 else -1
            (good.add(k) if sent.get(k) == got else bad.append(len(got)))
        s.setblocking(True)
    s.settimeout(3)
    while True:
        try:
            got = s.recv(70000)
        except socket.timeout:
            break
        k = int.from_bytes(got[:4], "big") if len(got) >= 4 else -1
        (good.add(k) if sent.get(k) == got else bad.append(len(got)))
    qm.check(not bad, "%d datagrams came back corrupted or cut (sizes %s)" % (len(bad), bad[:5]))
    qm.check(good, "no datagram came back over a 5 %% lossy link")
    qm.check(len(good) < n, "all %d datagrams of 8 fragments each crossed a 5 %% lossy link both ways "
             "without a loss: the relay dropped nothing?" % n)
    st = c.relay.stats
    wire = max(st["up"]["max_len"], st["down"]["max_len"])
    qm.check(wire <= 1452, "a UDP datagram of %d bytes on the wire (the limit is 1452)" % wire)
    qm.check(st["up"]["dropped_loss"] > 0 and st["down"]["dropped_loss"] > 0,
             "the relay dropped nothing: %r" % st)
    line = stats_line(cp)
    return ("%d of %d 9000-byte datagrams back whole, none corrupted; relay: %d/%d lost, %d/%d over "
            "the MTU (probes), largest %d; client: %s" % (
                len(good), n, st["up"]["dropped_loss"], st["down"]["dropped_loss"], st["up"]["dropped_mtu"],
                st["down"]["dropped_mtu"], wire, line.split("; ", 1)[-1]))


def flood(c, seconds=4.0):
    sink = udp_echo(c, echo=False)
    sp, cp, caddr = udp_tunnel(c, sink.addr)
    socks = [udp_sock() for _ in range(4)]
    try:
        payload = b"x" * 200
        for s in socks:  # warm up: flows, sessions, buffers
            for _ in range(200):
                s.sendto(payload, caddr)
        qm.wait_until(lambda: sink.count >= 400, 15, "the warm-up datagrams at the target")
        time.sleep(0.5)
        before = (vmrss_kib(cp.pid), vmrss_kib(sp.pid))
        stop = time.monotonic() + seconds
        sent = [0]

        def blast(s):
            s.setblocking(False)
            k = 0
            while time.monotonic() < stop:
                try:
                    s.sendto(payload, caddr)
                    k += 1
                except (BlockingIOError, OSError):
                    time.sleep(0.0005)
            sent[0] += k
        ts = [threading.Thread(target=blast, args=(s,)) for s in socks]
        for t in ts:
            t.start()
        peak = list(before)
        while any(t.is_alive() for t in ts):
            peak[0] = max(peak[0], vmrss_kib(cp.pid))
            peak[1] = max(peak[1], vmrss_kib(sp.pid))
            time.sleep(0.1)
        for t in ts:
            t.join(5)
        time.sleep(1.0)
        after = (vmrss_kib(cp.pid), vmrss_kib(sp.pid))
    finally:
        for s in socks:
            s.close()
    qm.check(cp.alive() and sp.alive(), "a tunnel end died under the flood")
    # The send queue is 1 MiB a session and the sockets' buffers are kernel memory:
    # 48 MiB is a generous bound; unbounded buffering of 4 s of flood would pass it.
    # (Not under AddressSanitizer: its quarantine keeps freed memory on purpose.)
    if not sanitized(cp.pid):
        for who, b, p in (("client", before[0], peak[0]), ("server", before[1], peak[1])):
            qm.check(p - b < 48 * 1024, "%s VmRSS grew from %d to %d KiB under the flood" % (who, b, p))
    else:
        c.note("AddressSanitizer build: the VmRSS bound is not checked")
    line = stats_line(cp)
    qfull = stat(line, r"dropped: (\d+) queue full")
    c.figures = {"flood_seconds": seconds, "flood_sent": sent[0], "flood_arrived": sink.count,
                 "client_rss_kib": [before[0], peak[0], after[0]],
                 "server_rss_kib": [before[1], peak[1], after[1]], "flood_client_queue_full": qfull}
    return ("%d datagrams of 200 bytes sent in %g s, %d reached the target; VmRSS KiB client %d -> peak "
            "%d -> %d, server %d -> peak %d -> %d; client dropped %s at the full queue" % (
                sent[0], seconds, sink.count, before[0], peak[0], after[0], before[1], peak[1], after[1], qfull))


def idle(c):
    e = udp_echo(c)
    sp, cp, caddr = udp_tunnel(c, e.addr, client_extra=("--udp-idle", "1"),
                               server_extra=("--udp-idle", "1"))
    base = qm.count_udp_sockets(sp.pid)
    s = udp_sock()
    c.on_close(s.close)
    qm.check(roundtrip(s, caddr, b"ping") == b"ping", "no echo")
    qm.wait_until(lambda: qm.count_udp_sockets(sp.pid) == base + 1, 5, "the server's flow socket")
    qm.wait_until(lambda: qm.count_udp_sockets(sp.pid) == base, 10,
                  "the server closing the idle flow's socket")
    qm.check(roundtrip(s, caddr, b"again") == b"again", "no echo after the flow closed")
    return None


def server_restart(c):
    """The server is killed and started again (same port and --state-dir): the flow
    (the same local peer) moves to a new session and UDP works again."""
    e = udp_echo(c)
    state = os.path.join(c.dir, "state")
    port = qm.free_udp_port()
    sp, saddr = c.qm_server(e.addr, port=port, extra=("--udp", "--state-dir", state), name="server-1")
    cp, caddr = c.qm_client(saddr, extra=("--udp",), port=free_port_both())
    qm.udp_bound_at(caddr[1], cp.pid, cp)
    s = udp_sock()
    c.on_close(s.close)
    qm.check(roundtrip(s, caddr, b"before") == b"before", "no echo before the restart")
    sp.send_signal(signal.SIGKILL)
    sp.wait(5)
    c.qm_server(e.addr, port=port, extra=("--udp", "--state-dir", state), name="server-2")
    t0 = time.monotonic()
    got = roundtrip(s, caddr, b"after", tries=10, wait=1.0)
    qm.check(got == b"after", "no echo within 10 s of the restart (got %r)" % (got,))
    dt = time.monotonic() - t0
    qm.check(roundtrip(s, caddr, b"again") == b"again", "no echo on the new session")
    line = stats_line(cp)
    return "echo again %.2f s after the restart; client: %s" % (dt, line.split("; ", 1)[-1])


def several_servers(c):
    """--server twice, the first one dead (nothing listens): flows go to the server set
    like streams; the one that fails backs off and the flow moves to the live one."""
    e = udp_echo(c)
    dead = qm.free_udp_port()
    sp, saddr = c.qm_server(e.addr, extra=("--udp",))
    cp, caddr = c.qm_client(("127.0.0.1", dead), port=free_port_both(),
                            extra=("--udp", "--server", "127.0.0.1:%d" % saddr[1],
                                   "--handshake-timeout", "1"))
    qm.udp_bound_at(caddr[1], cp.pid, cp)
    s = udp_sock()
    c.on_close(s.close)
    got = roundtrip(s, caddr, b"to the live one", tries=10, wait=1.0)
    qm.check(got == b"to the live one", "no echo within 10 s (got %r)" % (got,))
    qm.check(roundtrip(s, caddr, b"again") == b"again", "no second echo")
    return None


def refused(c, server_kind):
    tcp_echo = c.echo_server()
    if server_kind == "v2ray":
        sp, saddr = c.v2ray_server(tcp_echo.addr)
    else:
        sp, saddr = c.qm_server(tcp_echo.addr)  # no --udp
    cp, caddr = c.qm_client(saddr, extra=("--udp",), port=free_port_both())
    qm.udp_bound_at(caddr[1], cp.pid, cp)
    # TCP first, so the session exists, then UDP from several peers on it
    qm.check_transfer(caddr, conns=2, nbytes=256 * 1024, seed=3, timeout=60).raise_if_failed()
    socks = [udp_sock() for _ in range(3)]
    try:
        for s in socks:
            for _ in range(10):
                s.sendto(b"hello?", caddr)
        qm.wait_until(lambda: REFUSAL in cp.log(), 10, "the refusal in the client's log", proc=cp)
        for s in socks:
            s.settimeout(0.5)
            try:
                got = s.recv(100)
                raise qm.CheckFailed("a UDP reply came back: %r" % got)
            except socket.timeout:
                pass
        # more datagrams: still one line per session, not one per datagram
        for s in socks:
            for _ in range(10):
                s.sendto(b"hello again", caddr)
        time.sleep(0.5)
    finally:
        for s in socks:
            s.close()
    n = cp.log().count(REFUSAL)
    sessions = len(set(re.findall(r"session (\d+): the server " + REFUSAL, cp.log())))
    qm.check(n == sessions, "%d refusal lines for %d sessions" % (n, sessions))
    qm.check(cp.alive() and sp.alive(), "an end died")
    qm.check_transfer(caddr, conns=4, nbytes=MiB, seed=4, timeout=60).raise_if_failed()
    return "%d refusal line(s), %d session(s); TCP byte-exact before and after" % (n, sessions)


def v2ray_client(c):
    tcp_echo = c.echo_server()
    sp, saddr = c.qm_server(tcp_echo.addr, extra=("--udp",))
    cp, caddr = c.v2ray_client(saddr, target=tcp_echo.addr)
    qm.check_transfer(caddr, conns=4, nbytes=MiB, seed=5, timeout=60).raise_if_failed()
    qm.check(sp.alive(), "the server died")
    return None


def options(c):
    qmb = qm.quicmux_bin()
    rc, out, err, _ = qm.run_cmd([qmb, "server", "--listen", "127.0.0.1:1", "--target", "127.0.0.1:9",
                                  "--udp-idle", "5", "--check"], timeout=10)
    qm.check(rc == 2 and "--udp-idle needs --udp" in err, "rc %s, %r" % (rc, err))
    rc, out, err, _ = qm.run_cmd([qmb, "client", "--listen", "127.0.0.1:1", "--server", "127.0.0.1:9",
                                  "--udp", "--udp-max-flows", "0", "--check"], timeout=10)
    qm.check(rc == 2 and "--udp-max-flows" in err, "rc %s, %r" % (rc, err))
    rc, out, err, _ = qm.run_cmd([qmb, "client", "--listen", "127.0.0.1:1", "--server", "127.0.0.1:9",
                                  "--udp", "--udp-queue", "8", "--check"], timeout=10)
    qm.check(rc == 2 and "--udp-queue '8': want a whole number from 16 to 65536" in err, "rc %s, %r" % (rc, err))
    cfg = c.write_file("c.json", '{"tunnels": [{"role": "client", "listen": "127.0.0.1:1", '
                                 '"server": "127.0.0.1:9", "udp": "yes", '
                                 '"streamSettings": {"network": "quic"}}]}')
    rc, out, err, _ = qm.run_cmd([qmb, "-c", cfg, "--check"], timeout=10)
    qm.check(rc == 2 and "udp" in err and "true or false" in err, "rc %s, %r" % (rc, err))
    cfg = c.write_file("d.json", '{"tunnels": [{"role": "client", "listen": "127.0.0.1:1", '
                                 '"server": "127.0.0.1:9", "udp": true, "udpIdle": 30, '
                                 '"streamSettings": {"network": "quic"}}]}')
    rc, out, err, _ = qm.run_cmd([qmb, "-c", cfg, "--check"], timeout=10)
    qm.check(rc == 0, "a good UDP config was refused: rc %s, %r" % (rc, err))
    return None


def main():
    r = qm.Runner("test_udp")
    items = [
        ("udp.options", options, ()),
        ("udp.sizes", sizes, ()),
        # the largest wrap overhead: every frame must still fit 1452 bytes wrapped
        ("udp.sizes.chacha20-poly1305+wechat-video", sizes, ("chacha20-poly1305", "wechat-video")),
        ("udp.dns", dns, ()),
        ("udp.iperf3", iperf3, ()),
        ("udp.reassembly-loss", reassembly_loss, ()),
        ("udp.flood", flood, ()),
        ("udp.idle", idle, ()),
        ("udp.server-restart", server_restart, ()),
        ("udp.several-servers", several_servers, ()),
        ("udp.qm-server-no-udp", refused, ("quicmux",)),
    ]
    if qm.have_v2ray():
        items += [("udp.v2ray-server", refused, ("v2ray",)),
                  ("udp.v2ray-client", v2ray_client, ())]
    for name, fn, args in items:
        r.run(name, fn, *args)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
