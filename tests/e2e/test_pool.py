#!/usr/bin/env python3
"""Dialer pool end to end (SPEC §1.2, §1.5, §9 rows 1-5) with the quicmux client.

Cases (loopback only; namespaces only where the test makes them):
  pool.1000.<server>      1000 concurrent TCP connections through one quicmux client to a
                          v2ray server and to a quicmux server (aes-128-gcm): all held open at
                          once and echoed byte-exact (1 KiB each); sessions = client UDP
                          sockets = ceil(1000/32) = 32; all closed (both directions), then at
                          once a second wave of 1000 that must fit in the same 32 sessions.
                          Client RSS with 1000 open is reported, and the same load through a
                          v2ray client to the same server, side by side (information only).
  pool.parallel-handshakes
                          a relay delays every datagram by 150 ms each way (RTT 300 ms); 200
                          connections at once must come up on 7 sessions in < 3x the time
                          one connection on a fresh client takes (handshakes in parallel; one
                          after another would be ~7 handshakes).
  pool.restart.<server>   the server is killed and restarted on the same port while the client
                          runs: the held connections fail cleanly (EOF or reset) within 20 s,
                          and the first new connection succeeds within 2 s of the new server's
                          UDP port being bound.
  pool.kill.<server>      the server is killed and not restarted, no new connection: the held
                          connections end within 20 s (keep-alive PING after 10 s idle, three
                          unanswered probes, session closed 8 s later).
  pool.dead-path          the server is killed, then a new connection: the session is suspect
                          within 2 s and closed 8 s after that; the held connections end with it.
  pool.delay-spike.<server>
                          a 400 ms latency spike (server->client) while a new connection starts:
                          the target must get that connection exactly once (no duplicate delivery
                          by the move-unanswered-streams rule) and the echo must be exact.
  pool.idle-close         one connection opened and closed; the client keeps its UDP socket
                          until the session idle period (25 s by default) and then frees it,
                          after a CONNECTION_CLOSE to the server; no keep-alive meanwhile.
  pool.ipv6.<server>      40 held connections on ::1 -> 2 sessions; reuse for a second 40.
  pool.dns.dual-stack     a host name with 127.0.0.1 and ::1 (private mount namespace with its
                          own /etc/hosts), server on ::1 only: v4 is refused, v6 is tried next,
                          the connection works in < 2 s.
  pool.dns.unresolvable   a name that resolves nowhere: the connection is closed promptly and
                          the client logs why (the namespace's resolv.conf points at 127.0.0.1,
                          so no query leaves the machine).
  pool.caps               with --max-sessions 1 and a server allowing 2 streams, the 3rd
                          connection is refused with a log line, the first two keep working
                          (SKIP when the client has no such flag).

Run: QUICMUX_BIN=build/quicmux python3 tests/e2e/test_pool.py [NAME-SUBSTRING ...]
Environment: QMTEST_KEEP=1 keeps logs, QMTEST_VERBOSE=1 prints more.
"""

import asyncio
import concurrent.futures
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import qmtest as qm  # noqa: E402
from relay import Relay, format_stats  # noqa: E402

SEC = "aes-128-gcm"
KEY = "pool-test-key"
N_BIG = 1000
SIZE = 1024
STREAMS_PER_SESSION = 32


# --------------------------------------------------------------------------- small helpers

def raise_nofile(want=16384):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def mem_of(pid):
    """(VmRSS, VmHWM) in MiB."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                k, _, v = ln.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0]) / 1024.0
    except OSError:
        pass
    return out.get("VmRSS", 0.0), out.get("VmHWM", 0.0)


def udp6_inodes():
    return {ino for _p, _s, ino in qm._proc_net(["/proc/net/udp6"])}


def settle_udp(pid, expect, timeout=3.0):
    deadline = time.monotonic() + timeout
    n = qm.count_udp_sockets(pid)
    while n != expect and time.monotonic() < deadline:
        time.sleep(0.05)
        n = qm.count_udp_sockets(pid)
    return n


def qm_stats(proc, timeout=5.0):
    """SIGUSR1 -> the tunnel's '[stats] ... N sessions ...' summary line (one more line per
    session follows it); returns (line, sessions or None)."""
    def summaries():
        return [ln for ln in proc.log().splitlines()
                if "[stats]" in ln and re.search(r"\d+ sessions", ln)]
    before = len(summaries())
    proc.send_signal(signal.SIGUSR1)
    qm.wait_until(lambda: len(summaries()) > before, timeout,
                  "a stats line from %s" % proc.name, proc=proc)
    line = summaries()[-1]
    m = re.search(r"(\d+) sessions", line)
    return line, (int(m.group(1)) if m else None)


def qm_log_lines(proc, pattern):
    return [ln for ln in proc.log().splitlines() if re.search(pattern, ln)]


_help_cache = {}


def client_help():
    if "client" not in _help_cache:
        rc, out, err, _ = qm.run_cmd([qm.quicmux_bin(), "client", "--help"], timeout=10)
        _help_cache["client"] = out + err
    return _help_cache["client"]


def has_flag(flag):
    return re.search(r"(^|\s)%s(\s|=|$)" % re.escape(flag), client_help(), re.M) is not None


def find_flag(*cands):
    for f in cands:
        if has_flag(f):
            return f
    return None


# --------------------------------------------------------------------------- asyncio plumbing
# 1000 connections x 2 ends do not fit the thread-per-connection helpers of qmtest, so the
# big cases use one asyncio loop in a background thread (echo target and TCP clients).

class Aio:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="aio", daemon=True)
        self.thread.start()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro, timeout, what="async operation"):
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise qm.CheckFailed("%s timed out after %.0fs" % (what, timeout))

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


AIO = None


def aio():
    global AIO
    if AIO is None:
        AIO = Aio()
    return AIO


class AsyncEcho:
    """Echo target in the asyncio loop: echoes, half-closes after the peer's EOF."""

    def __init__(self, host="127.0.0.1"):
        self.host = host
        self.accepted = 0
        self.active = 0
        self.peak = 0
        self._writers = set()
        self.server = aio().call(self._start(), 10, "echo start")
        self.port = self.server.sockets[0].getsockname()[1]
        self.addr = (host, self.port)

    async def _start(self):
        return await asyncio.start_server(self._handle, self.host, 0, backlog=4096)

    async def _handle(self, r, w):
        self.accepted += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        self._writers.add(w)
        try:
            while True:
                d = await r.read(65536)
                if not d:
                    break
                w.write(d)
                await w.drain()
            if w.can_write_eof():
                w.write_eof()
            await w.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.active -= 1
            self._writers.discard(w)
            w.close()

    async def _close(self):
        self.server.close()
        for w in list(self._writers):
            w.transport.abort()
        await self.server.wait_closed()

    def close(self):
        try:
            aio().call(self._close(), 10, "echo close")
        except Exception:
            pass


def payload(seed, i, n=SIZE):
    return qm.seeded_bytes(seed * 1000003 + i * 7919 + 1, n)


async def _open_one(addr, data, timeout):
    r, w = await asyncio.wait_for(asyncio.open_connection(*addr), timeout)
    try:
        w.write(data)
        got = await asyncio.wait_for(r.readexactly(len(data)), timeout)
    except BaseException:
        w.transport.abort()
        raise
    if got != data:
        w.transport.abort()
        raise ValueError("echo differs")
    return r, w


async def _open_wave(addr, n, seed, timeout, size=SIZE):
    t0 = time.monotonic()
    res = await asyncio.gather(*(_open_one(addr, payload(seed, i, size), timeout) for i in range(n)),
                               return_exceptions=True)
    dt = time.monotonic() - t0
    conns, errs = [], []
    for i, x in enumerate(res):
        if isinstance(x, BaseException):
            errs.append("conn %d: %s" % (i, x.__class__.__name__ + (": %s" % x if str(x) else "")))
        else:
            conns.append(x)
    return conns, errs, dt


async def _finish_one(r, w, timeout):
    """Half-close, then read to EOF (no stray bytes), then close."""
    try:
        w.write_eof()
        extra = 0
        while True:
            d = await asyncio.wait_for(r.read(65536), timeout)
            if not d:
                break
            extra += len(d)
        if extra:
            raise ValueError("%d unexpected bytes before EOF" % extra)
    finally:
        w.close()


async def _finish_all(conns, timeout):
    t0 = time.monotonic()
    res = await asyncio.gather(*(_finish_one(r, w, timeout) for r, w in conns), return_exceptions=True)
    errs = ["%s: %s" % (x.__class__.__name__, x) for x in res if isinstance(x, BaseException)]
    return errs, time.monotonic() - t0


async def _abort_all(conns):
    for _r, w in conns:
        w.transport.abort()


def open_wave(addr, n, seed, timeout=30.0, size=SIZE):
    return aio().call(_open_wave(addr, n, seed, timeout, size), timeout + 30, "opening %d connections" % n)


def finish_all(conns, timeout=20.0):
    return aio().call(_finish_all(conns, timeout), timeout + 30, "closing %d connections" % len(conns))


def abort_all(conns):
    try:
        aio().call(_abort_all(conns), 10)
    except Exception:
        pass


def errs_summary(errs):
    return "%d failed: %s%s" % (len(errs), "; ".join(errs[:4]), "; ..." if len(errs) > 4 else "")


# --------------------------------------------------------------------------- processes

def start_server(c, kind, target, host="127.0.0.1", port=None, name=None, extra=()):
    if kind == "v2ray":
        return c.v2ray_server(target, host=host, security=SEC, key=KEY, port=port,
                              name=name or "v2ray-server")
    return c.qm_server(target, host=host, security=SEC, key=KEY, port=port, name=name or "qm-server",
                       extra=extra)


def start_qm_client(c, server, host="127.0.0.1", name="qm-client", extra=(), log_level=None):
    return c.qm_client(server, host=host, security=SEC, key=KEY, name=name, extra=extra, log_level=log_level)


def start_v2ray_client(c, server, target, name="v2ray-client"):
    return c.v2ray_client(server, security=SEC, key=KEY, target=target, name=name)


# --------------------------------------------------------------------------- 1000 connections

def big_load(c, caddr, proc, quicmux, seed, echo):
    """Wave 1 (held), figures, close, wave 2 at once, figures.  Returns a dict; raises
    CheckFailed only through the caller's checks."""
    out = {"errors": []}
    pid = proc.pid
    want = math.ceil(N_BIG / STREAMS_PER_SESSION)
    acc0 = echo.accepted
    conns, errs, dt = open_wave(caddr, N_BIG, seed)
    out["open1_s"] = dt
    try:
        if errs:
            out["errors"].append("wave 1: " + errs_summary(errs))
            return out
        # connections the target got for the 1000 (more = a stream delivered twice)
        out["acc1"] = echo.accepted - acc0
        out["udp1"] = settle_udp(pid, want, 3.0)
        out["rss1"], out["hwm1"] = mem_of(pid)
        if quicmux:
            out["stats1"], out["sess1"] = qm_stats(proc)
        ferrs, fdt = finish_all(conns)
        conns = []
        out["close1_s"] = fdt
        if ferrs:
            out["errors"].append("closing wave 1: " + errs_summary(ferrs))
            return out
        # second wave at once
        acc0 = echo.accepted
        conns, errs, dt = open_wave(caddr, N_BIG, seed + 1)
        out["open2_s"] = dt
        if errs:
            out["errors"].append("wave 2: " + errs_summary(errs))
            return out
        out["acc2"] = echo.accepted - acc0
        out["udp2"] = qm.count_udp_sockets(pid)
        out["rss2"], out["hwm2"] = mem_of(pid)
        if quicmux:
            out["stats2"], out["sess2"] = qm_stats(proc)
        ferrs, fdt = finish_all(conns)
        conns = []
        if ferrs:
            out["errors"].append("closing wave 2: " + errs_summary(ferrs))
    finally:
        if conns:
            abort_all(conns)
    return out


def case_1000(c, server_kind):
    want = math.ceil(N_BIG / STREAMS_PER_SESSION)
    echo = AsyncEcho()
    c.on_close(echo.close)
    sp, saddr = start_server(c, server_kind, echo.addr)
    cp, caddr = start_qm_client(c, saddr)
    q = big_load(c, caddr, cp, True, seed=11, echo=echo)
    peak_q = echo.peak
    alive_q = cp.alive()
    cp.stop()  # its sessions would otherwise hold server resources during the v2ray run
    # v2ray client, same server, same load: information only
    info_v = "v2ray client: not run"
    try:
        vp, vaddr = start_v2ray_client(c, saddr, echo.addr)
        v = big_load(c, vaddr, vp, False, seed=21, echo=echo)
        if v["errors"]:
            info_v = "v2ray client: %s" % "; ".join(v["errors"])
        else:
            info_v = ("v2ray client: %d UDP sockets with 1000 open (wave 2: %d), RSS %.1f MiB, HWM %.1f MiB, "
                      "wave 1 open in %.2fs, wave 2 in %.2fs"
                      % (v["udp1"], v["udp2"], v["rss1"], v["hwm1"], v["open1_s"], v["open2_s"]))
        vp.stop()
    except qm.Skip as e:
        info_v = "v2ray client: skipped (%s)" % e
    except Exception as e:  # information only
        info_v = "v2ray client: %s: %s" % (e.__class__.__name__, e)
    c.note(info_v)
    qm.check(not q["errors"], "; ".join(q["errors"]))
    info_q = ("quicmux client: %d UDP sockets / %s sessions with 1000 open, wave 2: %d / %s; "
              "RSS %.1f MiB, HWM %.1f MiB (wave 2: RSS %.1f, HWM %.1f); wave 1 open in %.2fs, "
              "closed in %.2fs, wave 2 open in %.2fs; target connections %d + %d"
              % (q["udp1"], q["sess1"], q["udp2"], q["sess2"], q["rss1"], q["hwm1"], q["rss2"], q["hwm2"],
                 q["open1_s"], q["close1_s"], q["open2_s"], q["acc1"], q["acc2"]))
    c.note(info_q)
    moved = [ln.split("] ", 1)[-1] for ln in qm_log_lines(cp, r"no answer for|answers again")]
    if moved:
        c.note("client log: %s" % "; ".join(moved[:6]) + (" ..." if len(moved) > 6 else ""))
    qm.check(q["acc1"] == N_BIG and q["acc2"] == N_BIG,
             "the target got %d + %d connections for 2 x 1000 (a connection's data delivered twice: a stream "
             "moved off a session that the client wrongly took for dead)" % (q["acc1"], q["acc2"]))
    qm.check(q["udp1"] == want, "%d UDP sockets on the client with 1000 open, expected %d%s"
             % (q["udp1"], want, " (sessions taken for dead under load: %s)" % "; ".join(moved[:4]) if moved else ""))
    qm.check(q["sess1"] == want, "stats say %s sessions with 1000 open, expected %d (%s)"
             % (q["sess1"], want, q["stats1"]))
    qm.check(q["udp2"] == want and q["sess2"] == want,
             "second wave: %d UDP sockets / %s sessions, expected %d (no reuse of returned credit?) [%s]"
             % (q["udp2"], q["sess2"], want, q["stats2"]))
    qm.check(peak_q >= N_BIG, "echo target saw at most %d connections at once" % peak_q)
    qm.check(alive_q, "the quicmux client exited during the load")
    return None


# --------------------------------------------------------------------------- parallel handshakes

# One-way delay the relay adds to every datagram (RTT +300 ms).  A connection then takes
# about 2 RTT (handshake, then the echo).  The echo payload is small (64 B): 32 streams x 1 KiB
# would not fit one initial congestion window and would add a round trip that has nothing
# to do with the pool.  (Delaying only the first N server datagrams of each session was
# tried: the client's Initial PTO and the echo data falling among the first N make that
# depend on packet counts.)
DELAY_MS = 150
HS_SIZE = 64


def timed_wave(addr, n, seed, timeout=30.0, size=HS_SIZE):
    conns, errs, dt = open_wave(addr, n, seed, timeout, size)
    ferrs, _ = finish_all(conns) if conns else ([], 0)
    return dt, errs + ferrs


def case_parallel_handshakes(c, server_kind="v2ray"):
    echo = AsyncEcho()
    c.on_close(echo.close)
    sp, saddr = start_server(c, server_kind, echo.addr)
    rl = Relay("127.0.0.1", upstream=saddr, seed=5, delay_ms=DELAY_MS, process=True)
    c.on_close(rl.close)
    # single-session handshake time, measured the same way, three times on fresh clients
    singles = []
    clients = [start_qm_client(c, rl.addr, name="qm-client-single%d" % i) for i in range(3)]
    for i, (cp, caddr) in enumerate(clients):
        dt, errs = timed_wave(caddr, 1, 100 + i)
        qm.check(not errs, "single connection failed: %s" % errs)
        singles.append(dt)
        cp.stop()
    single = sorted(singles)[1]
    n = 200
    want = math.ceil(n / STREAMS_PER_SESSION)
    cp, caddr = start_qm_client(c, rl.addr, name="qm-client-200")
    conns, errs, dt = open_wave(caddr, n, 7, size=HS_SIZE)
    try:
        qm.check(not errs, "200 at once: " + errs_summary(errs))
        udp = settle_udp(cp.pid, want, 2.0)
        _line, sess = qm_stats(cp)
    finally:
        ferrs, _ = finish_all(conns)
    qm.check(not ferrs, "closing: " + errs_summary(ferrs))
    info = ("single-session connection %.0f ms (median of %s); 200 at once: %.0f ms on %d sessions "
            "(%.1fx single; %d handshakes one after another would be ~%.0fx)"
            % (single * 1000, ", ".join("%.0f" % (s * 1000) for s in singles), dt * 1000, udp,
               dt / single, want, (want + 1) / 2.0))
    # v2ray's dialer for comparison (information only)
    try:
        vp, vaddr = start_v2ray_client(c, rl.addr, echo.addr)
        vdt, verrs = timed_wave(vaddr, n, 9)
        info += "; v2ray client: 200 at once in %.0f ms (%.1fx single)%s" % (
            vdt * 1000, vdt / single, ", %d failed" % len(verrs) if verrs else "")
        vp.stop()
    except Exception as e:
        info += "; v2ray client: %s" % e
    c.note(info)
    c.note("relay: " + format_stats(rl.stats))
    qm.check(single >= 4 * DELAY_MS / 1000.0, "single connection took %.0f ms, less than 2 RTT of the relay "
             "(%d ms): the relay is not in the path?" % (single * 1000, 4 * DELAY_MS))
    qm.check(udp == want and sess == want, "200 connections used %d UDP sockets / %s sessions, expected %d"
             % (udp, sess, want))
    qm.check(dt < 3 * single, "200 connections took %.0f ms = %.1fx the single-session %.0f ms (limit 3x): "
             "handshakes not in parallel?" % (dt * 1000, dt / single, single * 1000))
    return None


# --------------------------------------------------------------------------- server restart

def held_conns(addr, n, seed):
    socks = qm.open_held(addr, n, payload_len=SIZE, timeout=10, seed=seed)
    return socks


def watch_close(socks, t_ref, limit):
    """Wait (bounded) until each socket sees EOF or an error; returns [(outcome, seconds from t_ref)]."""
    res = [None] * len(socks)

    def one(i, s):
        s.settimeout(0.25)
        deadline = t_ref + limit
        while time.monotonic() < deadline:
            try:
                d = s.recv(65536)
            except socket.timeout:
                continue
            except OSError as e:
                res[i] = ("reset" if isinstance(e, ConnectionResetError) else e.__class__.__name__,
                          time.monotonic() - t_ref)
                return
            if not d:
                res[i] = ("eof", time.monotonic() - t_ref)
                return
            res[i] = ("data?", time.monotonic() - t_ref)
            return
        res[i] = ("open", time.monotonic() - t_ref)
    ts = [threading.Thread(target=one, args=(i, s), daemon=True) for i, s in enumerate(socks)]
    for t in ts:
        t.start()
    return ts, res


def try_echo(addr, seed, timeout):
    ok, why = qm.echo_once(addr, payload(seed, 0), timeout)
    return ok, why, time.monotonic()


def case_restart(c, server_kind):
    echo = c.echo_server()
    port = qm.free_udp_port()
    sp, saddr = start_server(c, server_kind, echo.addr, port=port, name="server-1")
    cp, caddr = start_qm_client(c, saddr)
    socks = held_conns(caddr, 5, seed=300)
    c.on_close(lambda: qm.close_all(socks))
    # kill the server hard
    t_kill = time.monotonic()
    sp.send_signal(signal.SIGKILL)
    sp.wait(5)
    watchers, outcomes = watch_close(socks, t_kill, 20.0)
    time.sleep(1.0)
    # restart on the same port, as a new process
    if server_kind == "v2ray":
        cfg = qm.v2ray_server_config("127.0.0.1", port, echo.addr[0], echo.addr[1], SEC, KEY, "none")
        path = c.write_file("server-2.json", json.dumps(cfg))
        sp2 = c.spawn(qm.v2ray_argv(path), "server-2")
    else:
        sp2 = c.spawn([qm.quicmux_bin(), "server", "--listen", qm.hostport("127.0.0.1", port), "--target",
                       qm.hostport(*echo.addr), "--security", SEC, "--key", KEY, "--log-level", qm.QM_LOG_LEVEL],
                      "server-2")
    t_bound = qm.udp_bound_at(port, sp2.pid, sp2, 15)
    # new connections right away, one every 250 ms, each with its own 10 s budget
    results = []
    lock = threading.Lock()

    def attempt(k):
        ok, why, t_end = try_echo(caddr, 400 + k, 10.0)
        with lock:
            results.append((k, ok, why, t_end - t_bound))
    ths = []
    first_ok = None
    deadline = t_bound + 10.0
    k = 0
    while time.monotonic() < deadline:
        t = threading.Thread(target=attempt, args=(k,), daemon=True)
        t.start()
        ths.append(t)
        k += 1
        time.sleep(0.25)
        with lock:
            oks = [r for r in results if r[1]]
        if oks:
            first_ok = min(r[3] for r in oks)
            break
    for t in ths:
        t.join(12)
    with lock:
        oks = [r for r in results if r[1]]
        if oks:
            first_ok = min(r[3] for r in oks)
        failed_attempts = [r for r in results if not r[1]]
    for t in watchers:
        t.join(max(0.0, t_kill + 21.0 - time.monotonic()))
    # the client is still fine afterwards
    later_ok, later_why, _ = try_echo(caddr, 999, 5.0)
    line, _sess = qm_stats(cp)
    held = ", ".join("%s@%.1fs" % (o[0], o[1]) if o else "?" for o in outcomes)
    info = ("first new connection OK %.2fs after the new server bound its port (%d attempts, %d failed); "
            "held connections: %s" % (first_ok if first_ok is not None else -1, len(results),
                                      len(failed_attempts), held))
    c.note(info)
    c.note("after: " + line.split("[stats] ", 1)[-1])
    qm.check(first_ok is not None, "no new connection succeeded within 10 s of the restart: %s"
             % "; ".join("#%d %s at %.1fs" % (r[0], r[2], r[3]) for r in results[:5]))
    qm.check(first_ok < 2.0, "first new connection succeeded %.2fs after the restart (limit 2 s)" % first_ok)
    bad = [o for o in outcomes if not o or o[0] not in ("eof", "reset")]
    qm.check(not bad, "held connections did not all fail cleanly within 20 s of the kill: %s" % held)
    qm.check(later_ok, "a connection after the restart failed: %s" % later_why)
    qm.check(cp.alive(), "client exited")
    return None


LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z\s+\S+\s+\[(\w+)\]\s+(.*)$")


def log_events(proc, pattern):
    """[(wall time, message)] of the log lines of proc whose message matches pattern."""
    import datetime
    out = []
    for ln in proc.log().splitlines():
        m = LOG_TS.match(ln)
        if m and re.search(pattern, m.group(3)):
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(
                tzinfo=datetime.timezone.utc).timestamp()
            out.append((t, m.group(3)))
    return out


def case_kill(c, server_kind):
    """Server killed, never restarted, no new connection: the held connections must still end
    (a keep-alive PING at the latest 5 s after the last traffic, suspect after 1 s without an
    answer, closed 8 s later: < 20 s)."""
    echo = c.echo_server()
    sp, saddr = start_server(c, server_kind, echo.addr)
    relay = c.udp_relay(saddr)  # records datagrams; the client sees no ICMP from a dead port
    cp, caddr = start_qm_client(c, relay.addr)
    socks = held_conns(caddr, 3, seed=500)
    c.on_close(lambda: qm.close_all(socks))
    t_last = time.monotonic()  # last traffic on the session
    w_kill = time.time()
    t_kill = time.monotonic()
    sp.send_signal(signal.SIGKILL)
    sp.wait(5)
    watchers, outcomes = watch_close(socks, t_kill, 22.0)
    for t in watchers:
        t.join(max(0.0, t_kill + 23.0 - time.monotonic()))
    k = t_kill - relay._t0
    sent = ["%.1f" % (t - k) for d, _cl, t, _b in relay.datagrams("c2s") if t > k]
    ev = log_events(cp, r"no answer|path dead|idle timeout")
    held = ", ".join("%s@%.1fs" % o if o else "?" for o in outcomes)
    c.note("held connections after the kill: %s; client->server datagrams at %s s after the kill; client log: %s"
           % (held, ", ".join(sent[:12]) or "none",
              "; ".join("%+.1fs %s" % (t - w_kill, m) for t, m in ev) or "nothing about the dead path"))
    since_last = [float(x) + (t_kill - t_last) for x in sent]
    qm.check(any(x <= 6.5 for x in since_last),
             "the client sent nothing (keep-alive or probe) within 6.5 s of the last traffic "
             "(sent after the kill: %s)" % sent[:8])
    qm.check(any("no answer" in m for _t, m in ev), "the client never noticed the dead path")
    bad = [o for o in outcomes if not o or o[0] not in ("eof", "reset")]
    qm.check(not bad, "held connections still open %.0fs after the server was killed (expected closed within "
             "20 s: PING within 5 s, suspect 1 s later, closed 8 s later): %s" % (22.0, held))
    qm.check(max(o[1] for o in outcomes) < 20.0, "held connections ended only at %s" % held)
    qm.check(cp.alive(), "client exited")
    return None


def case_dead_path(c, server_kind="quicmux"):
    """Server killed; a new connection then finds the session dead: suspect after 3 probes
    (well under 2 s on loopback), the session closed 8 s later (the held connections with it)."""
    echo = c.echo_server()
    sp, saddr = start_server(c, server_kind, echo.addr)
    cp, caddr = start_qm_client(c, saddr)
    socks = held_conns(caddr, 3, seed=600)
    c.on_close(lambda: qm.close_all(socks))
    sp.send_signal(signal.SIGKILL)
    sp.wait(5)
    time.sleep(0.5)
    w_new = time.time()
    t_new = time.monotonic()
    watchers, outcomes = watch_close(socks, t_new, 20.0)
    got, outcome, dt = qm.probe_no_data(caddr, wait=12.0)
    for t in watchers:
        t.join(max(0.0, t_new + 21.0 - time.monotonic()))
    sus = log_events(cp, r"no answer for ")
    dead = log_events(cp, r"path dead")
    held = ", ".join("%s@%.1fs" % o if o else "?" for o in outcomes)
    t_sus = sus[0][0] - w_new if sus else None
    t_dead = dead[0][0] - w_new if dead else None
    c.note("new connection: %s after %.2fs; suspect at %s, closed at %s after the new connection "
           "(gap %s); held connections: %s"
           % (outcome, dt, "%.2fs" % t_sus if sus else "never", "%.2fs" % t_dead if dead else "never",
              "%.1fs" % (t_dead - t_sus) if sus and dead else "-", held))
    qm.check(outcome in ("eof", "reset"), "the new connection to a dead server was not closed (%s after %.1fs)"
             % (outcome, dt))
    qm.check(sus, "the client never took the session out of the pool (no 'no answer for' line)")
    qm.check(t_sus < 2.0, "suspect only %.2fs after the new connection" % t_sus)
    qm.check(dead, "the suspect session was never closed")
    gap = t_dead - t_sus
    qm.check(7.5 <= gap <= 9.0, "the suspect session was closed %.1fs after it became suspect (expected 8 s)" % gap)
    bad = [o for o in outcomes if not o or o[0] not in ("eof", "reset")]
    qm.check(not bad, "held connections not closed within 20 s: %s" % held)
    return None


def case_delay_spike(c, server_kind):
    """A latency spike is not a dead path: with the server->client direction delayed by 400 ms
    for a while, a new connection must still be delivered to the target exactly once (a stream
    whose request reached the server but whose ACK is late must not be sent again on another
    session), and echo byte-exact."""
    echo = c.echo_server()
    sp, saddr = start_server(c, server_kind, echo.addr)
    rl = Relay("127.0.0.1", upstream=saddr, seed=3, process=True)
    c.on_close(rl.close)
    cp, caddr = start_qm_client(c, rl.addr)
    socks = held_conns(caddr, 1, seed=700)  # the session is up, RTT ~0 on loopback
    c.on_close(lambda: qm.close_all(socks))
    time.sleep(0.3)
    acc0, bytes0 = echo.accepted, echo.bytes_in
    rl.set(direction="down", delay_ms=400)
    t0 = time.monotonic()
    ok, why, t_end = try_echo(caddr, 701, 10.0)
    dt = t_end - t0
    time.sleep(0.5)
    acc, got = echo.accepted - acc0, echo.bytes_in - bytes0
    moved = [ln.split("] ", 1)[-1] for ln in qm_log_lines(cp, r"no answer for|answers again|path dead")]
    c.note("echo %s in %.2fs; the target got %d connection(s), %d bytes for 1 connection of %d bytes; "
           "client log: %s" % ("OK" if ok else "FAILED (%s)" % why, dt, acc, got, SIZE, "; ".join(moved) or "-"))
    qm.check(ok, "the connection failed during a 400 ms delay spike: %s" % why)
    qm.check(acc == 1 and got == SIZE,
             "one client connection reached the target %d times (%d bytes for %d sent): the stream was moved "
             "to a new session and sent again although the server had it (only its ACK was late) [%s]"
             % (acc, got, SIZE, "; ".join(moved)))
    return None


# --------------------------------------------------------------------------- idle close

def case_idle(c):
    flag = find_flag("--session-idle", "--session-idle-timeout", "--idle-close")
    idle = 25.0
    extra = ()
    if flag:
        idle = 3.0
        extra = (flag, "3")
    echo = c.echo_server()
    sp, saddr = c.qm_server(echo.addr, security=SEC, key=KEY, log_level="debug")
    relay = c.udp_relay(saddr)  # records every datagram with its time
    cp, caddr = start_qm_client(c, relay.addr, extra=extra)
    res = qm.check_transfer(caddr, conns=1, nbytes=SIZE, seed=5, timeout=20)
    res.raise_if_failed()
    t_closed = time.monotonic()
    n0 = qm.count_udp_sockets(cp.pid)
    qm.check(n0 == 1, "after one connection the client has %d UDP sockets, expected 1" % n0)
    # still there a little before the idle period ends
    time.sleep(max(0.0, idle - 2.0))
    n1 = qm.count_udp_sockets(cp.pid)
    t1 = time.monotonic() - t_closed
    qm.check(n1 == 1, "the UDP socket was freed %.1fs after the connection closed, before the %.0fs idle "
             "period" % (t1, idle))
    gone_at = None
    deadline = t_closed + idle + 6.0
    while time.monotonic() < deadline:
        if qm.count_udp_sockets(cp.pid) == 0:
            gone_at = time.monotonic() - t_closed
            break
        time.sleep(0.1)
    # what went to the server around the close
    tc = t_closed - relay._t0
    late = [(t, len(b)) for d, _c, t, b in relay.datagrams("c2s") if t > tc + idle - 2.0]
    # no keep-alive while the session carries no stream
    quiet = [round(t - tc, 1) for d, _c, t, b in relay.datagrams("c2s") if tc + 1.0 < t < tc + idle - 2.0]
    t_end = time.monotonic() + 3.0
    while "closed by peer" not in sp.log() and time.monotonic() < t_end:
        time.sleep(0.1)
    srv_saw = "closed by peer" in sp.log()
    info = ("flag %s; UDP socket freed %s after the connection closed (idle %.0fs); client->server "
            "datagrams 1-%.0fs after the close: %d, after %.0fs: %d; server log %s 'closed by peer'"
            % (flag or "none (default 25 s)", "%.1fs" % gone_at if gone_at is not None else "never",
               idle, idle - 2.0, len(quiet), idle - 2.0, len(late), "has" if srv_saw else "lacks"))
    c.note(info)
    qm.check(gone_at is not None, "the client still holds %d UDP socket(s) %.0fs after its only connection "
             "closed (idle period %.0fs)" % (qm.count_udp_sockets(cp.pid), idle + 6.0, idle))
    qm.check(not quiet, "the client sent datagrams while the session carried no stream (keep-alive should be "
             "off): at %s s after the close" % quiet[:8])
    qm.check(late, "no datagram to the server around the idle close (expected a CONNECTION_CLOSE)")
    qm.check(srv_saw, "the server did not log a close by the peer (CONNECTION_CLOSE not received?)")
    qm.check(cp.alive(), "client exited")
    # and a new connection afterwards works (new session)
    qm.check_transfer(caddr, conns=1, nbytes=SIZE, seed=6, timeout=20).raise_if_failed()
    return None


# --------------------------------------------------------------------------- IPv6

def case_ipv6(c, server_kind):
    echo = c.echo_server("::1")
    sp, saddr = start_server(c, server_kind, echo.addr, host="::1")
    cp, caddr = start_qm_client(c, saddr, host="::1")
    socks = qm.open_held(caddr, 40, payload_len=64, seed=1)
    try:
        n = settle_udp(cp.pid, 2)
        v6 = udp6_inodes()
        mine = qm.udp_sockets_of(cp.pid)
        qm.check(n == 2, "40 held connections over ::1 use %d UDP sockets, expected 2 (%s)" % (n, mine))
        qm.check(all(ino in v6 for _p, ino in mine), "client sockets are not all IPv6: %s" % mine)
    finally:
        qm.close_all(socks)
    time.sleep(1.5 if server_kind == "v2ray" else 0.3)  # v2ray returns credit ~1 s after close
    socks = qm.open_held(caddr, 40, payload_len=64, seed=2)
    try:
        n2 = settle_udp(cp.pid, 2)
        qm.check(n2 == 2, "second 40 over ::1 use %d UDP sockets, expected 2 (no reuse)" % n2)
    finally:
        qm.close_all(socks)
    return "2 IPv6 sessions for 40, reused for 40 more"


# --------------------------------------------------------------------------- names

NS_SCRIPT = 'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && shift 2 && exec "$@"'


def ns_usable():
    if not shutil.which("unshare") or not shutil.which("mount"):
        return "unshare or mount not found"
    rc, out, err, _ = qm.run_cmd(["unshare", "-m", "sh", "-c", "mount --bind /etc/hosts /etc/hosts"], timeout=10)
    if rc != 0:
        return "unshare -m / mount --bind not usable: rc %s %s" % (rc, (out + err).strip()[:200])
    return None


def ns_client(c, server_hostport, hosts_text, name, log_level="debug"):
    why = ns_usable()
    if why:
        raise qm.Skip(why)
    hosts = c.write_file("hosts", hosts_text)
    resolv = c.write_file("resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    port = qm.free_tcp_port()
    argv = ["unshare", "-m", "sh", "-c", NS_SCRIPT, "qmns", hosts, resolv,
            qm.quicmux_bin(), "client", "--listen", qm.hostport("127.0.0.1", port), "--server", server_hostport,
            "--security", SEC, "--key", KEY, "--log-level", log_level]
    p = c.spawn(argv, name)
    qm.wait_tcp_listen(port, timeout=10, proc=p)
    return p, ("127.0.0.1", port)


def free_port_both():
    """A UDP port free on ::1 and on 127.0.0.1 (so v4 is really refused)."""
    for _ in range(50):
        p = qm.free_udp_port("::1")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no port free on both families")


def case_dual_stack(c):
    echo = c.echo_server("127.0.0.1")
    port = free_port_both()
    sp, saddr = c.qm_server(echo.addr, host="::1", security=SEC, key=KEY, port=port)
    cp, caddr = ns_client(c, "dual.test:%d" % port, "127.0.0.1 dual.test\n::1 dual.test\n", "qm-client-ns")
    t0 = time.monotonic()
    ok, why, t_end = try_echo(caddr, 1, 10.0)
    dt = t_end - t0
    ok2, why2, t2 = try_echo(caddr, 2, 5.0)
    t_second = t2 - t_end
    log = cp.log()
    i4 = log.find("127.0.0.1|%d" % port)
    i6 = log.find("::1|%d" % port)
    socks = qm.udp_sockets_of(cp.pid)
    v6 = udp6_inodes()
    info = ("first connection %s in %.0f ms, second in %.0f ms; log mentions v4 session %s, v6 session %s%s; "
            "client UDP sockets now %d (%s)"
            % ("OK" if ok else "FAILED (%s)" % why, dt * 1000, t_second * 1000, i4 >= 0, i6 >= 0,
               " (v4 first)" if 0 <= i4 < i6 else "", len(socks),
               ", ".join("v6" if ino in v6 else "v4" for _p, ino in socks)))
    c.note(info)
    qm.check(ok, "connection via dual.test failed: %s" % why)
    qm.check(dt < 2.0, "connection via dual.test took %.2fs (limit 2 s)" % dt)
    qm.check(ok2, "second connection failed: %s" % why2)
    if i4 >= 0 and i6 >= 0:
        qm.check(i4 < i6, "the client tried ::1 before 127.0.0.1")
    qm.check(settle_udp(cp.pid, 1) == 1, "the refused v4 session's socket was not freed: %s"
             % qm.udp_sockets_of(cp.pid))
    return None


def case_unresolvable(c):
    cp, caddr = ns_client(c, "nonexistent.invalid:4433", "127.0.0.1 localhost\n::1 localhost\n",
                          "qm-client-nx", log_level="info")
    got, outcome, dt = qm.probe_no_data(caddr, wait=10.0)
    time.sleep(0.2)
    log = cp.log()
    lines = [ln for ln in log.splitlines() if "nonexistent.invalid" in ln and "$ " not in ln[:2]]
    c.note("connection: %s after %.2fs, %d bytes; log: %s" % (outcome, dt, got, lines[-1] if lines else "(none)"))
    qm.check(outcome in ("eof", "reset", "connect-failed"), "connection not closed within 10 s (%s)" % outcome)
    qm.check(dt < 3.0, "connection closed only after %.2fs (limit 3 s)" % dt)
    qm.check(any(re.search(r"resolve", ln, re.I) for ln in lines),
             "no clear error about the name in the client log: %s" % (lines or cp.tail(8)))
    qm.check(cp.alive(), "client exited")
    return None


# --------------------------------------------------------------------------- caps

def case_caps(c):
    flag = find_flag("--max-sessions", "--max-sessions-per-dest", "--max-sessions-per-destination")
    if not flag:
        raise qm.Skip("the client has no max-sessions flag (quicmux client --help lists none); "
                      "the caps are covered by tests/unit/test_policy.c")
    echo = c.echo_server()
    sp, saddr = c.qm_server(echo.addr, security=SEC, key=KEY, extra=("--max-streams", "2"))
    cp, caddr = start_qm_client(c, saddr, extra=(flag, "1"))
    socks = qm.open_held(caddr, 2, payload_len=64, seed=1)
    c.on_close(lambda: qm.close_all(socks))
    got, outcome, dt = qm.probe_no_data(caddr, wait=8.0)
    qm.check(outcome in ("eof", "reset"), "3rd connection: %s after %.1fs, expected it closed" % (outcome, dt))
    qm.check(got == 0, "3rd connection carried %d bytes" % got)
    qm.check(re.search(r"limit", cp.log(), re.I), "no log line about the session limit")
    for i, s in enumerate(socks):
        data = payload(50, i, 64)
        s.sendall(data)
        b = b""
        while len(b) < len(data):
            d = s.recv(4096)
            if not d:
                break
            b += d
        qm.check(b == data, "held connection %d stopped working after the refusal" % i)
    return "3rd refused (%s after %.2fs), first two still echo" % (outcome, dt)


# --------------------------------------------------------------------------- main

def main():
    lim = raise_nofile()
    r = qm.Runner("pool (SPEC §1, §9)")
    r.info("RLIMIT_NOFILE %s; quicmux client flags: session idle %s, max sessions %s"
           % (lim, find_flag("--session-idle", "--session-idle-timeout", "--idle-close") or "none",
              find_flag("--max-sessions", "--max-sessions-per-dest") or "none"))
    if not qm.have_quicmux():
        r._report("FAIL", "pool.binary", "quicmux binary not found: %s (set QUICMUX_BIN)" % qm.quicmux_bin())
        return r.finish()
    sel = sys.argv[1:]

    def want(name):
        return not sel or any(x in name for x in sel)
    # Phase 1: the idle case (mostly waiting) next to the heavy 1000-connection cases,
    # which are not timing-sensitive.
    r.run_parallel([x for x in [
        ("pool.idle-close", case_idle, ()),
        ("pool.1000.v2ray-server", case_1000, ("v2ray",)),
        ("pool.kill.quicmux-server", case_kill, ("quicmux",)),
        ("pool.1000.quicmux-server", case_1000, ("quicmux",)),
        ("pool.dead-path", case_dead_path, ("quicmux",)),
    ] if want(x[0])], workers=3)
    # Phase 2: timing-sensitive cases, one at a time.
    for name, fn, args in [
        ("pool.parallel-handshakes", case_parallel_handshakes, ("v2ray",)),
        ("pool.restart.quicmux-server", case_restart, ("quicmux",)),
        ("pool.restart.v2ray-server", case_restart, ("v2ray",)),
        ("pool.delay-spike.quicmux-server", case_delay_spike, ("quicmux",)),
        ("pool.delay-spike.v2ray-server", case_delay_spike, ("v2ray",)),
        ("pool.ipv6.v2ray-server", case_ipv6, ("v2ray",)),
        ("pool.ipv6.quicmux-server", case_ipv6, ("quicmux",)),
        ("pool.dns.dual-stack", case_dual_stack, ()),
        ("pool.dns.unresolvable", case_unresolvable, ()),
        ("pool.caps", case_caps, ()),
    ]:
        if want(name):
            r.run(name, fn, *args)
    rc = r.finish()
    if AIO is not None:
        AIO.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
