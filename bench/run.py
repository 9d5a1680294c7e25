#!/usr/bin/env python3
"""Side-by-side benchmark: quicmux vs v2ray 4.34 (Debian) QUIC transport, on loopback.

One command:
    python3 bench/run.py [--quick] [--runs N] [--out bench/out] [--secs S] [--no-netns]

What it measures (every figure for quicmux and v2ray in the same run, interleaved, and the
ratio quicmux/v2ray of the medians):
  * iperf3 through the tunnel (client -> tunnel client -> QUIC -> tunnel server -> iperf3
    server), 1 and 8 parallel streams, for security none / aes-128-gcm / chacha20-poly1305,
    header none: throughput, CPU seconds per GB (utime+stime from /proc/PID/stat over the
    test / bytes received by iperf3's server) of the tunnel client and server, their peak
    RSS (VmHWM), and UDP receive-buffer drops (RcvbufErrors delta, /proc/net/snmp{,6});
  * 100 and 1000 concurrent TCP connections to an echo target through the tunnel: time
    until all have their 16-byte echo back, failures, client UDP sockets (= sessions),
    client RSS with them open;
  * time to first byte (connect + send 1 byte + read its echo) on a new session (a fresh
    client process per sample) and on a pooled session (one warm client);
  * memory of idle sessions/streams (client RSS holding 1, 32 and 320 idle streams);
  * quicmux binary size and shared-library dependencies.

Each tunnel measurement uses fresh processes, so VmHWM is the peak of that test only.
As root the whole run is done in a private network namespace (unshare -n, loopback up),
so other users of the machine cannot disturb the UDP drop counters; --no-netns turns
that off.  All processes are started and stopped by PID (helpers of tests/e2e/qmtest.py).
Results: a Markdown table on stdout, and OUT/results.md + OUT/results.json.
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # leave no __pycache__ in tests/ or bench/
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
import qmtest as qt  # noqa: E402

KEY = "bench-key"
HOST = "127.0.0.1"
IMPLS = ("quicmux", "v2ray")
SECURITIES = ("none", "aes-128-gcm", "chacha20-poly1305")
TARGET_SEC = "aes-128-gcm"   # security used for the connection/TTFB/memory tests
CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 1024 * 1024


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc readers

def proc_cpu_s(pid):
    """utime+stime of a whole process (all threads), seconds."""
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_mem_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith(key + ":"):
                return int(ln.split()[1])
    return None


def cpu_totals():
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def rcvbuf_errors():
    """Sum of RcvbufErrors over UDP/UDP-Lite v4 and v6 (of this network namespace)."""
    total = 0
    with open("/proc/net/snmp") as f:
        lines = f.read().splitlines()
    for i in range(0, len(lines) - 1, 2):
        hdr, val = lines[i].split(), lines[i + 1].split()
        if hdr[0] in ("Udp:", "UdpLite:") and "RcvbufErrors" in hdr:
            total += int(val[hdr.index("RcvbufErrors")])
    try:
        with open("/proc/net/snmp6") as f:
            for ln in f:
                k, _, v = ln.partition(" ")
                if k in ("Udp6RcvbufErrors", "UdpLite6RcvbufErrors"):
                    total += int(v)
    except OSError:
        pass
    return total


# --------------------------------------------------------------------------- echo target (own process)

def echo_main(port):
    """Single-threaded epoll echo target: echoes everything, half-closes after EOF."""
    sel = selectors.DefaultSelector()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((HOST, port))
    ls.listen(4096)
    ls.setblocking(False)
    sel.register(ls, selectors.EVENT_READ, None)
    state = {}  # sock -> [outbuf, eof]

    def update(c):
        st = state[c]
        ev = 0 if st[1] else selectors.EVENT_READ
        if st[0]:
            ev |= selectors.EVENT_WRITE
        if ev == 0:
            sel.unregister(c)
            try:
                c.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            c.close()
            del state[c]
        else:
            sel.modify(c, ev, c)

    while True:
        for key, mask in sel.select(1.0):
            if key.data is None:
                while True:
                    try:
                        c, _ = ls.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    c.setblocking(False)
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    state[c] = [bytearray(), False]
                    sel.register(c, selectors.EVENT_READ, c)
                continue
            c = key.data
            st = state.get(c)
            if st is None:
                continue
            try:
                if mask & selectors.EVENT_READ:
                    d = c.recv(262144)
                    if d:
                        st[0] += d
                    else:
                        st[1] = True
                if st[0]:
                    n = c.send(st[0])
                    del st[0][:n]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                sel.unregister(c)
                c.close()
                del state[c]
                continue
            update(c)


def start_echo(case):
    port = qt.free_tcp_port(HOST)
    p = case.spawn([sys.executable, os.path.abspath(__file__), "--echo-target", str(port)], "echo")
    qt.wait_tcp_listen(port, pid=p.pid, timeout=10, proc=p)
    return p, (HOST, port)


# --------------------------------------------------------------------------- tunnels

def v2ray_log(cfg):
    cfg["log"] = {"loglevel": "warning", "access": "none"}
    return cfg


def start_server(case, impl, target, security, name="server"):
    if impl == "quicmux":
        return case.qm_server(target, HOST, security, KEY, "none", name=name, log_level="warning")
    port = qt.free_udp_port(HOST)
    cfg = v2ray_log(qt.v2ray_server_config(HOST, port, target[0], target[1], security, KEY, "none"))
    p = case.spawn(qt.v2ray_argv(case.write_file(name + ".json", json.dumps(cfg))), name)
    qt.wait_udp_bound(port, pid=p.pid, timeout=15, proc=p)
    return p, (HOST, port)


def start_client(case, impl, server, target, security, name="client"):
    if impl == "quicmux":
        return case.qm_client(server, HOST, security, KEY, "none", name=name, log_level="warning")
    port = qt.free_tcp_port(HOST)
    cfg = v2ray_log(qt.v2ray_client_config(HOST, port, server[0], server[1], security, KEY, "none",
                                           target=target))
    p = case.spawn(qt.v2ray_argv(case.write_file(name + ".json", json.dumps(cfg))), name)
    qt.wait_tcp_listen(port, pid=p.pid, timeout=15, proc=p)
    return p, (HOST, port)


def start_tunnel(case, impl, target, security):
    sp, saddr = start_server(case, impl, target, security)
    cp, caddr = start_client(case, impl, saddr, target, security)
    return sp, saddr, cp, caddr


# --------------------------------------------------------------------------- tests

def t_iperf(ctx, impl, security, streams, secs):
    case = qt.Case("iperf.%s.%s.P%d" % (impl, security, streams), ctx.root)
    try:
        iport = qt.free_tcp_port(HOST)
        isrv = case.spawn(["iperf3", "-s", "-1", "-B", HOST, "-p", str(iport)], "iperf3-server")
        qt.wait_tcp_listen(iport, pid=isrv.pid, timeout=10, proc=isrv)
        sp, _saddr, cp, caddr = start_tunnel(case, impl, (HOST, iport), security)
        time.sleep(0.3)
        c0, s0, d0, m0 = proc_cpu_s(cp.pid), proc_cpu_s(sp.pid), rcvbuf_errors(), cpu_totals()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        rc, out, err, wall = qt.run_cmd(["iperf3", "-c", HOST, "-p", str(caddr[1]), "-t", str(secs),
                                        "-P", str(streams), "-J", "--connect-timeout", "5000"],
                                       timeout=secs + 40)
        c1, s1, d1, m1 = proc_cpu_s(cp.pid), proc_cpu_s(sp.pid), rcvbuf_errors(), cpu_totals()
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        hwm_c, hwm_s = proc_mem_kb(cp.pid, "VmHWM"), proc_mem_kb(sp.pid, "VmHWM")
        alive = cp.alive() and sp.alive()
        try:
            j = json.loads(out)
        except ValueError:
            j = {"error": "no JSON from iperf3 (rc %s): %s" % (rc, (err or out)[-300:])}
        if rc != 0 or "error" in j or not alive:
            raise RuntimeError("iperf3 failed: rc=%s %s alive=%s" % (rc, j.get("error"), alive))
        recv = j["end"]["sum_received"]
        nbytes = recv["bytes"]
        cpuu = j["end"].get("cpu_utilization_percent", {})
        busy_cores = (m1[0] - m0[0]) / CLK_TCK / wall
        tunnel_cores = (c1 - c0 + s1 - s0) / wall
        iperf_cores = ((ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) +
                       cpuu.get("remote_total", 0.0) / 100.0 * recv["seconds"]) / wall
        gb = nbytes / 1e9
        return {
            "mbps": recv["bits_per_second"] / 1e6,
            "bytes": nbytes,
            "cpu_client_s_per_gb": (c1 - c0) / gb if gb else float("nan"),
            "cpu_server_s_per_gb": (s1 - s0) / gb if gb else float("nan"),
            "cpu_client_s": c1 - c0, "cpu_server_s": s1 - s0,
            "hwm_client_mib": hwm_c / 1024, "hwm_server_mib": hwm_s / 1024,
            "rcvbuf_drops": d1 - d0,
            "retransmits": j["end"].get("sum_sent", {}).get("retransmits"),
            "machine_busy_pct": 100.0 * (m1[0] - m0[0]) / max(1, m1[1] - m0[1]),
            "tunnel_cores": tunnel_cores,
            "iperf3_cores": iperf_cores,
            "other_load_cores": max(0.0, busy_cores - tunnel_cores - iperf_cores),
        }
    finally:
        case.close()


def concurrent_echo(addr, n, payload=b"0123456789abcdef", timeout=60.0):
    """Open n connections at once (non-blocking), send payload on each, wait for its echo.
    Returns (seconds until the last completed, per-connection seconds list, failures, socks)."""
    sel = selectors.DefaultSelector()
    t0 = time.perf_counter()
    conns = {}
    failures = 0
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rc = s.connect_ex(addr)
        if rc not in (0, 115):  # EINPROGRESS
            failures += 1
            s.close()
            continue
        conns[s] = {"state": "connecting", "got": b"", "t": None}
        sel.register(s, selectors.EVENT_WRITE, s)
    pending = len(conns)
    deadline = t0 + timeout
    while pending and time.perf_counter() < deadline:
        for key, _mask in sel.select(0.5):
            s = key.data
            c = conns[s]
            try:
                if c["state"] == "connecting":
                    e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if e:
                        raise OSError(e, os.strerror(e))
                    s.send(payload)
                    c["state"] = "reading"
                    sel.modify(s, selectors.EVENT_READ, s)
                else:
                    d = s.recv(4096)
                    if not d:
                        raise OSError("EOF before the echo")
                    c["got"] += d
                    if len(c["got"]) >= len(payload):
                        c["t"] = time.perf_counter() - t0
                        c["state"] = "done" if c["got"] == payload else "bad"
                        if c["state"] == "bad":
                            failures += 1
                        sel.unregister(s)
                        pending -= 1
            except OSError:
                c["state"] = "failed"
                failures += 1
                sel.unregister(s)
                pending -= 1
    failures += pending  # timed out
    sel.close()
    times = sorted(c["t"] for c in conns.values() if c["state"] == "done")
    total = max(times) if times else float("nan")
    return total, times, failures, list(conns)


def t_conns(ctx, impl, n):
    case = qt.Case("conns.%s.%d" % (impl, n), ctx.root)
    socks = []
    try:
        _ep, eaddr = start_echo(case)
        sp, _saddr, cp, caddr = start_tunnel(case, impl, eaddr, TARGET_SEC)
        time.sleep(0.3)
        d0 = rcvbuf_errors()
        total, times, failures, socks = concurrent_echo(caddr, n)
        time.sleep(0.3)
        res = {
            "all_done_ms": total * 1000,
            "p50_ms": times[len(times) // 2] * 1000 if times else float("nan"),
            "failures": failures,
            "sessions": qt.count_udp_sockets(cp.pid),
            "rss_client_mib": proc_mem_kb(cp.pid, "VmRSS") / 1024,
            "hwm_client_mib": proc_mem_kb(cp.pid, "VmHWM") / 1024,
            "hwm_server_mib": proc_mem_kb(sp.pid, "VmHWM") / 1024,
            "rcvbuf_drops": rcvbuf_errors() - d0,
        }
        return res
    finally:
        qt.close_all(socks)
        case.close()


def one_ttfb(addr):
    t0 = time.perf_counter()
    s = socket.create_connection(addr, timeout=10)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"x")
        d = s.recv(1)
        if d != b"x":
            raise OSError("bad echo %r" % d)
        return time.perf_counter() - t0
    finally:
        s.close()


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(math.ceil(p / 100.0 * len(sorted_vals))) - 1))
    return sorted_vals[k]


def t_ttfb_new(ctx, impl, samples):
    case = qt.Case("ttfb-new.%s" % impl, ctx.root)
    try:
        _ep, eaddr = start_echo(case)
        sp, saddr = start_server(case, impl, eaddr, TARGET_SEC)
        vals, fails, predial = [], 0, 0
        for i in range(samples):
            cp, caddr = start_client(case, impl, saddr, eaddr, TARGET_SEC, name="client%d" % i)
            time.sleep(0.1)
            if qt.count_udp_sockets(cp.pid):
                predial += 1
            try:
                vals.append(one_ttfb(caddr))
            except OSError:
                fails += 1
            cp.stop()
        vals.sort()
        return {"median_ms": statistics.median(vals) * 1000 if vals else float("nan"),
                "p99_ms": pct(vals, 99) * 1000, "failures": fails, "samples": len(vals),
                "predialed": predial}
    finally:
        case.close()


def t_ttfb_pooled(ctx, impl, samples, interval):
    case = qt.Case("ttfb-pooled.%s" % impl, ctx.root)
    held = []
    try:
        _ep, eaddr = start_echo(case)
        sp, _saddr, cp, caddr = start_tunnel(case, impl, eaddr, TARGET_SEC)
        held = qt.open_held(caddr, 1)   # makes the session and keeps it in use
        vals, fails = [], 0
        nxt = time.monotonic()
        for _ in range(samples):
            try:
                vals.append(one_ttfb(caddr))
            except OSError:
                fails += 1
            # Paced: through v2ray a closed stream lives ~2 s more (each proxy keeps the other
            # direction open 1 s after an EOF, TESTING.md); stay well under 32 open streams.
            nxt += interval
            time.sleep(max(0.0, nxt - time.monotonic()))
        sessions = qt.count_udp_sockets(cp.pid)
        # Reference: the same probe straight to the echo target (no tunnel), to show what
        # the measurement itself (Python, loopback TCP) costs.
        direct = []
        for _ in range(min(samples, 100)):
            direct.append(one_ttfb(eaddr))
            time.sleep(0.005)
        vals.sort()
        direct.sort()
        return {"median_ms": statistics.median(vals) * 1000 if vals else float("nan"),
                "p99_ms": pct(vals, 99) * 1000, "failures": fails, "samples": len(vals),
                "sessions": sessions, "direct_median_ms": statistics.median(direct) * 1000}
    finally:
        qt.close_all(held)
        case.close()


def _hold_and_measure(case, impl, eaddr, counts, server_extra=()):
    """Start a tunnel, hold idle streams (16-byte echo each) up to each count in turn, and
    read the client's and server's memory after each step."""
    held = []
    try:
        if impl == "quicmux" and server_extra:
            sp, saddr = case.qm_server(eaddr, HOST, TARGET_SEC, KEY, "none", extra=server_extra,
                                       name="server-x", log_level="warning")
            cp, caddr = start_client(case, impl, saddr, eaddr, TARGET_SEC, name="client-x")
        else:
            sp, _saddr, cp, caddr = start_tunnel(case, impl, eaddr, TARGET_SEC)
        time.sleep(0.2)
        out = {"rss0": proc_mem_kb(cp.pid, "VmRSS"), "anon0": proc_mem_kb(cp.pid, "RssAnon"),
               "file0": proc_mem_kb(cp.pid, "RssFile")}
        for n in counts:
            held += qt.open_held(caddr, n - len(held), timeout=20)
            time.sleep(0.5)
            out["rss%d" % n] = proc_mem_kb(cp.pid, "VmRSS")
            out["anon%d" % n] = proc_mem_kb(cp.pid, "RssAnon")
            out["file%d" % n] = proc_mem_kb(cp.pid, "RssFile")
            out["srv_rss%d" % n] = proc_mem_kb(sp.pid, "VmRSS")
            out["sessions%d" % n] = qt.count_udp_sockets(cp.pid)
        return out
    finally:
        qt.close_all(held)


def t_idle_mem(ctx, impl):
    """Client memory per idle stream and per idle session.
    Default servers allow 32 streams per session: 1 and 32 streams are one session, 320 are
    ten.  v2ray: per stream = (R32-R1)/31, per session = (R320-R32-288*per_stream)/9.
    quicmux also runs with a server allowing 1000 streams per session (--max-streams), so
    320 streams sit in one session: per stream = (R320one-R1)/319, per session =
    (R320-R320one)/(sessions-1) — less noisy."""
    case = qt.Case("idle-mem.%s" % impl, ctx.root)
    try:
        _ep, eaddr = start_echo(case)
        a = _hold_and_measure(case, impl, eaddr, (1, 32, 320))
        out = {"rss%d_kib" % n: a["rss%d" % n] for n in (0, 1, 32, 320)}
        out.update({"sessions%d" % n: a["sessions%d" % n] for n in (1, 32, 320)})
        out["client_anon1_mib"] = a["anon1"] / 1024
        out["client_file1_mib"] = a["file1"] / 1024
        nsess = max(1, a["sessions320"] - a["sessions1"])
        if impl == "quicmux":
            b = _hold_and_measure(case, impl, eaddr, (1, 320), server_extra=("--max-streams", "1000"))
            out["one_session_rss320_kib"] = b["rss320"]
            out["one_session_sessions320"] = b["sessions320"]
            per_stream = (b["rss320"] - b["rss1"]) / 319.0
            per_session = (a["rss320"] - b["rss320"]) / nsess
        else:
            per_stream = (a["rss32"] - a["rss1"]) / 31.0
            per_session = (a["rss320"] - a["rss32"] - 288 * per_stream) / nsess
        out.update({"client_kib_per_idle_stream": per_stream,
                    "client_kib_per_idle_session": per_session,
                    "server_kib_per_idle_stream": (a["srv_rss320"] - a["srv_rss1"]) / 319.0,
                    "client_rss1_mib": a["rss1"] / 1024,
                    "client_rss320_mib": a["rss320"] / 1024})
        return out
    finally:
        case.close()


# --------------------------------------------------------------------------- static facts

def sh(argv, timeout=20):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return (r.stdout + r.stderr).strip()
    except Exception as e:  # noqa: BLE001
        return "(%s: %s)" % (argv[0], e)


def dpkg_version(pkg):
    v = sh(["dpkg-query", "-W", "-f", "${Version}", pkg])
    return v if v and "no packages" not in v else "?"


def machine_info():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for ln in f:
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "v2ray": dpkg_version("v2ray"),
        "iperf3": dpkg_version("iperf3"),
        "python": platform.python_version(),
        "quicmux_version": sh([qt.quicmux_bin(), "--version"]),
        "git": sh(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]) +
        (" (dirty)" if sh(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"]) else ""),
        "netns": os.environ.get("QMBENCH_NETNS") == "1",
    }


def binary_info():
    b = qt.quicmux_bin()
    v = qt.v2ray_bin()
    ldd = sh(["ldd", b]).splitlines()
    stripped = None
    with tempfile.TemporaryDirectory() as td:
        out = os.path.join(td, "q")
        if subprocess.run(["strip", "-o", out, b], capture_output=True).returncode == 0:
            stripped = os.path.getsize(out)
    libs = [ln.strip().split(" ")[0] for ln in ldd if ln.strip()]
    return {
        "quicmux_path": b,
        "quicmux_bytes": os.path.getsize(b),
        "quicmux_stripped_bytes": stripped,
        "quicmux_size": sh(["size", b]),
        "quicmux_file": sh(["file", "-b", b]),
        "quicmux_ldd": [ln.strip() for ln in ldd],
        "quicmux_libs": libs,
        "v2ray_bytes": os.path.getsize(os.path.realpath(v)),
        "v2ray_ldd": [ln.strip() for ln in sh(["ldd", v]).splitlines()],
    }


# --------------------------------------------------------------------------- aggregation / table

class Ctx:
    def __init__(self, root):
        self.root = root
        self.samples = {}   # (row key) -> {impl: [values]}
        self.raw = []

    def add(self, key, impl, value):
        self.samples.setdefault(key, {}).setdefault(impl, []).append(value)


# rows: (key, label, unit/format, better, target)
#   better: "higher" / "lower" / None;   target: (op, ratio) on quicmux/v2ray, or ("zero",)
def row_defs():
    rows = []
    for sec in SECURITIES:
        for P in (1, 8):
            k = "iperf.%s.P%d" % (sec, P)
            thr_t = (">=", 5.0) if sec == "aes-128-gcm" else None
            rows.append((k + ".mbps", "throughput %s, %d stream%s (Mbit/s)" % (sec, P, "s" if P > 1 else ""),
                         "%.0f", "higher", thr_t))
            rows.append((k + ".cpu_client_s_per_gb", "client CPU s/GB, %s P%d" % (sec, P), "%.2f", "lower",
                         ("<=", 0.2)))
            rows.append((k + ".cpu_server_s_per_gb", "server CPU s/GB, %s P%d" % (sec, P), "%.2f", "lower",
                         ("<=", 0.2)))
            rss_t = ("<=", 0.2) if P == 1 else None
            rows.append((k + ".hwm_client_mib", "client peak RSS MiB, %s P%d" % (sec, P), "%.1f", "lower", rss_t))
            rows.append((k + ".hwm_server_mib", "server peak RSS MiB, %s P%d" % (sec, P), "%.1f", "lower", rss_t))
            rows.append((k + ".rcvbuf_drops", "UDP RcvbufErrors, %s P%d" % (sec, P), "%.0f", "lower", ("zero",)))
            rows.append((k + ".tunnel_cores", "cores used by tunnel client+server, %s P%d" % (sec, P), "%.2f",
                         None, None))
            rows.append((k + ".other_load_cores", "cores used by other users of the machine, %s P%d" % (sec, P),
                         "%.2f", None, None))
    for n in (100, 1000):
        k = "conns.%d" % n
        rows.append((k + ".all_done_ms", "%d conns: time until all echoed (ms)" % n, "%.1f", "lower", None))
        rows.append((k + ".p50_ms", "%d conns: median per-conn echo time (ms)" % n, "%.1f", "lower", None))
        rows.append((k + ".failures", "%d conns: failures" % n, "%.0f", "lower", ("zero",)))
        rows.append((k + ".sessions", "%d conns: client UDP sockets (sessions)" % n, "%.0f", None, None))
        rows.append((k + ".rss_client_mib", "%d conns: client RSS with them open (MiB)" % n, "%.1f", "lower",
                     ("<=", 0.25) if n == 1000 else None))
        rows.append((k + ".hwm_server_mib", "%d conns: server peak RSS (MiB)" % n, "%.1f", "lower", None))
        rows.append((k + ".rcvbuf_drops", "%d conns: UDP RcvbufErrors" % n, "%.0f", "lower", ("zero",)))
    rows.append(("ttfb_new.median_ms", "TTFB new session, median (ms)", "%.2f", "lower", ("<=", 0.25)))
    rows.append(("ttfb_new.p99_ms", "TTFB new session, p99 (ms)", "%.2f", "lower", None))
    rows.append(("ttfb_new.failures", "TTFB new session, failures", "%.0f", "lower", ("zero",)))
    rows.append(("ttfb_pooled.median_ms", "TTFB pooled session, median (ms)", "%.3f", "lower", ("<=", 1 / 3.0)))
    rows.append(("ttfb_pooled.p99_ms", "TTFB pooled session, p99 (ms)", "%.3f", "lower", None))
    rows.append(("ttfb_pooled.direct_median_ms", "TTFB reference: straight to the echo target, median (ms)",
                 "%.3f", None, None))
    rows.append(("ttfb_pooled.sessions", "TTFB pooled: client UDP sockets after", "%.0f", None, None))
    rows.append(("idle.client_rss1_mib", "idle: client RSS with 1 stream (MiB)", "%.1f", "lower", None))
    rows.append(("idle.client_anon1_mib", "idle: client RssAnon with 1 stream (MiB)", "%.1f", "lower", None))
    rows.append(("idle.client_file1_mib", "idle: client RssFile with 1 stream (MiB)", "%.1f", "lower", None))
    rows.append(("idle.client_rss320_mib", "idle: client RSS with 320 streams (MiB)", "%.1f", "lower", None))
    rows.append(("idle.client_kib_per_idle_stream", "idle: client KiB per idle stream", "%.1f", "lower", None))
    rows.append(("idle.client_kib_per_idle_session", "idle: client KiB per idle session", "%.1f", "lower", None))
    rows.append(("idle.server_kib_per_idle_stream", "idle: server KiB per idle stream (incl. session share)", "%.1f", "lower", None))
    return rows


def fmt_mmm(vals, fmt):
    vals = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "n/a"
    lo, med, hi = min(vals), statistics.median(vals), max(vals)
    if len(vals) == 1:
        return fmt % med
    return "%s / **%s** / %s" % (fmt % lo, fmt % med, fmt % hi)


def med(vals):
    vals = [v for v in (vals or []) if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(vals) if vals else None


def make_table(ctx):
    lines = ["| metric | quicmux min / **median** / max | v2ray min / **median** / max | "
             "ratio qm/v2 (medians) | target | met |",
             "|---|---|---|---|---|---|"]
    verdicts = []
    for key, label, fmt, _better, target in row_defs():
        s = ctx.samples.get(key)
        if not s:
            continue
        q, v = med(s.get("quicmux")), med(s.get("v2ray"))
        ratio = "n/a"
        r = None
        if q is not None and v:
            r = q / v
            ratio = "%.2f" % r if r < 100 else "%.0f" % r
        elif q == 0 and v == 0:
            ratio = "= (both 0)"
        tstr, met = "", ""
        if target:
            if target[0] == "zero":
                tstr = "quicmux = 0"
                met = "yes" if s.get("quicmux") and max(s["quicmux"]) == 0 else "NO"
            else:
                tstr = "%s %s" % ("≥" if target[0] == ">=" else "≤",
                                  ("%g" % target[1]) if target[1] >= 1 else "1/%g" % round(1 / target[1], 2))
                if r is None:
                    met = "n/a"
                else:
                    ok = r >= target[1] if target[0] == ">=" else r <= target[1]
                    met = "yes" if ok else "NO"
            verdicts.append((label, tstr, ratio, met))
        lines.append("| %s | %s | %s | %s | %s | %s |" % (
            label, fmt_mmm(s.get("quicmux", []), fmt), fmt_mmm(s.get("v2ray", []), fmt), ratio, tstr, met))
    return lines, verdicts


# --------------------------------------------------------------------------- main

def run_all(args):
    root = tempfile.mkdtemp(prefix="qmbench.")
    # Private copy: other people may rebuild build/quicmux while this runs.
    src_bin = qt.quicmux_bin()
    binfo = binary_info()
    info = machine_info()
    priv = os.path.join(root, "quicmux")
    shutil.copy2(src_bin, priv)
    os.environ["QUICMUX_BIN"] = priv
    ctx = Ctx(root)
    t_start = time.monotonic()
    secs = args.secs if args.secs else (2 if args.quick else 5)
    runs = args.runs if args.runs else (1 if args.quick else 3)
    n_new = args.ttfb_new if args.ttfb_new else (15 if args.quick else 100)
    n_pool = args.ttfb_pooled if args.ttfb_pooled else (50 if args.quick else 200)
    only = set(args.only.split(",")) if args.only else None
    log("machine: %s" % json.dumps(info))
    log("runs=%d iperf3 -t %d, ttfb new=%d pooled=%d samples per run; logs under %s"
        % (runs, secs, n_new, n_pool, root))

    def order(r):
        return IMPLS if r % 2 == 0 else IMPLS[::-1]

    def record(prefix, impl, res):
        ctx.raw.append({"test": prefix, "impl": impl, "result": res})
        for k, v in res.items():
            if isinstance(v, (int, float)):
                ctx.add("%s.%s" % (prefix, k), impl, v)

    def attempt(prefix, impl, fn, *a):
        try:
            res = fn(ctx, impl, *a)
        except Exception as e:  # noqa: BLE001 - a failed measurement is reported, not fatal
            log("  %s %s FAILED: %s" % (prefix, impl, e))
            ctx.raw.append({"test": prefix, "impl": impl, "error": str(e)})
            return None
        record(prefix, impl, res)
        return res

    for r in range(runs):
        log("=== run %d/%d" % (r + 1, runs))
        if not only or "iperf" in only:
            for sec in SECURITIES:
                for P in (1, 8):
                    for impl in order(r):
                        res = attempt("iperf.%s.P%d" % (sec, P), impl, t_iperf, sec, P, secs)
                        if res:
                            log("  iperf %-17s P%d %-7s %7.0f Mbit/s  cpu c/s %.2f/%.2f s/GB  hwm c/s %.1f/%.1f MiB"
                                "  drops %d  busy %.0f%%  cores: tunnel %.2f iperf3 %.2f others %.2f" % (
                                    sec, P, impl, res["mbps"], res["cpu_client_s_per_gb"],
                                    res["cpu_server_s_per_gb"], res["hwm_client_mib"], res["hwm_server_mib"],
                                    res["rcvbuf_drops"], res["machine_busy_pct"], res["tunnel_cores"],
                                    res["iperf3_cores"], res["other_load_cores"]))
        if not only or "conns" in only:
            for n in (100, 1000):
                for impl in order(r):
                    res = attempt("conns.%d" % n, impl, t_conns, n)
                    if res:
                        log("  conns %4d %-7s all %.1f ms  fail %d  sessions %d  rss %.1f MiB  drops %d"
                            % (n, impl, res["all_done_ms"], res["failures"], res["sessions"],
                               res["rss_client_mib"], res["rcvbuf_drops"]))
        if not only or "ttfb" in only:
            for impl in order(r):
                res = attempt("ttfb_new", impl, t_ttfb_new, n_new)
                if res:
                    log("  ttfb new    %-7s median %.2f ms p99 %.2f ms fail %d predialed %d"
                        % (impl, res["median_ms"], res["p99_ms"], res["failures"], res["predialed"]))
            for impl in order(r):
                res = attempt("ttfb_pooled", impl, t_ttfb_pooled, n_pool, args.pool_interval)
                if res:
                    log("  ttfb pooled %-7s median %.3f ms p99 %.3f ms fail %d sessions %d"
                        % (impl, res["median_ms"], res["p99_ms"], res["failures"], res["sessions"]))
        if not only or "idle" in only:
            for impl in order(r):
                res = attempt("idle", impl, t_idle_mem)
                if res:
                    log("  idle %-7s rss 1/32/320 streams %d/%d/%d KiB, sessions %d/%d/%d, "
                        "%.1f KiB/stream %.1f KiB/session"
                        % (impl, res["rss1_kib"], res["rss32_kib"], res["rss320_kib"], res["sessions1"],
                           res["sessions32"], res["sessions320"], res["client_kib_per_idle_stream"],
                           res["client_kib_per_idle_session"]))
    elapsed = time.monotonic() - t_start

    table, verdicts = make_table(ctx)
    md = []
    md.append("# quicmux vs v2ray %s — benchmark (%s)" % (info["v2ray"], datetime.datetime.now().isoformat(" ", "seconds")))
    md.append("")
    md.append("- machine: %d CPUs, %s, kernel %s; v2ray %s, iperf3 %s; private netns: %s"
              % (info["nproc"], info["cpu"], info["kernel"], info["v2ray"], info["iperf3"],
                 "yes" if info["netns"] else "no"))
    md.append("- quicmux: %s (`%s`)%s; work tree at git %s" % (
        binfo["quicmux_path"], info["quicmux_version"], (", build " + args.label) if args.label else "",
        info["git"]))
    md.append("- command: `%s`" % " ".join(["python3", "bench/run.py"] +
                                          ([os.environ["QMBENCH_ARGV"]] if os.environ.get("QMBENCH_ARGV") else [])))
    md.append("- %d run(s); iperf3 -t %d; TTFB new-session %d samples/run (fresh client process each), "
              "pooled %d samples/run (paced %.0f ms); tests other than iperf3 use %s, key %r, header none; "
              "total time %.0f s" % (runs, secs, n_new, n_pool, args.pool_interval * 1000, TARGET_SEC, KEY, elapsed))
    md.append("- per-run figures: iperf3 rows one test each; TTFB rows are each run's median/p99; "
              "the table gives min / median / max over runs, ratio = median(quicmux) / median(v2ray)")
    md.append("")
    md += table
    md.append("")
    md.append("## Binary")
    md.append("")
    md.append("- quicmux: %s, %d bytes (%.2f MiB), %s bytes stripped; v2ray: %d bytes (%.2f MiB)"
              % (binfo["quicmux_path"], binfo["quicmux_bytes"], binfo["quicmux_bytes"] / MiB,
                 binfo["quicmux_stripped_bytes"], binfo["v2ray_bytes"], binfo["v2ray_bytes"] / MiB))
    md.append("- file: %s" % binfo["quicmux_file"])
    md.append("")
    md.append("```")
    md.append(binfo["quicmux_size"])
    md.append("```")
    md.append("")
    md.append("`ldd` of the quicmux binary:")
    md.append("")
    md.append("```")
    md += binfo["quicmux_ldd"]
    md.append("```")
    md.append("")
    md.append("## Targets")
    md.append("")
    md.append("| row | target (quicmux/v2ray) | ratio | met |")
    md.append("|---|---|---|---|")
    for label, t, ratio, met in verdicts:
        md.append("| %s | %s | %s | %s |" % (label, t, ratio, met))
    text = "\n".join(md) + "\n"

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"machine": info, "binary": binfo, "elapsed_s": elapsed, "runs": runs, "secs": secs,
                   "samples": {k: v for k, v in ctx.samples.items()}, "raw": ctx.raw}, f, indent=1)
    print(text, flush=True)
    log("total time %.0f s; wrote %s/results.md and results.json" % (elapsed, args.out))
    shutil.rmtree(root, ignore_errors=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description="quicmux vs v2ray side-by-side benchmark (loopback)")
    ap.add_argument("--quick", action="store_true", help="1 run, iperf3 -t 2, fewer TTFB samples")
    ap.add_argument("--runs", type=int, default=0, help="runs (default 3, quick 1)")
    ap.add_argument("--secs", type=int, default=0, help="iperf3 -t seconds (default 5, quick 2)")
    ap.add_argument("--ttfb-new", type=int, default=0, help="new-session TTFB samples per run (default 100)")
    ap.add_argument("--ttfb-pooled", type=int, default=0, help="pooled TTFB samples per run (default 200)")
    ap.add_argument("--pool-interval", type=float, default=0.1, help="seconds between pooled samples")
    ap.add_argument("--only", default="", help="comma list of: iperf,conns,ttfb,idle")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "out"))
    ap.add_argument("--quicmux", default="", help="quicmux binary (default $QUICMUX_BIN or build/quicmux)")
    ap.add_argument("--label", default="", help="free text naming the quicmux build (e.g. its commit)")
    ap.add_argument("--no-netns", action="store_true", help="do not run in a private network namespace")
    ap.add_argument("--echo-target", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.echo_target:
        try:
            echo_main(args.echo_target)
        except KeyboardInterrupt:
            pass
        return 0

    if args.quicmux:
        os.environ["QUICMUX_BIN"] = os.path.abspath(args.quicmux)
    if not qt.have_quicmux():
        print("quicmux binary not found: %s (build first)" % qt.quicmux_bin(), file=sys.stderr)
        return 2
    for tool in ("iperf3",):
        if not shutil.which(tool):
            print("%s not installed" % tool, file=sys.stderr)
            return 2
    if not qt.have_v2ray():
        print("v2ray not installed", file=sys.stderr)
        return 2

    args.out = os.path.abspath(args.out)
    os.environ.setdefault("QMBENCH_ARGV", " ".join(sys.argv[1:]))
    if (not args.no_netns and os.environ.get("QMBENCH_NETNS") is None and os.geteuid() == 0
            and shutil.which("unshare") and shutil.which("ip")
            and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0):
        env = dict(os.environ, QMBENCH_NETNS="1")
        inner = "ip link set lo up && exec \"$0\" \"$@\""
        argv = ["unshare", "-n", "--", "sh", "-c", inner, sys.executable, os.path.abspath(__file__)] + \
            sys.argv[1:] + ["--out", args.out]
        p = subprocess.Popen(argv, env=env)
        try:
            return p.wait()
        except KeyboardInterrupt:
            p.terminate()
            return p.wait()
    qt.install_signal_handlers()
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
