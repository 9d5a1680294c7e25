#!/usr/bin/env python3
"""Shared helpers for the quicmux end-to-end and interop tests.

Standard library only (Debian 12's python3 3.11).  Everything runs on loopback.

What is here:
  * free TCP/UDP ports on 127.0.0.1 and ::1;
  * processes started with their output in a per-case log file, always stopped by
    PID (SIGTERM, bounded wait, SIGKILL), also on exceptions and at exit;
  * bounded waits: a TCP port listening, a UDP port bound (from /proc/net/*),
    optionally owned by a given PID;
  * an in-process echo target that half-closes after the peer's EOF;
  * a transfer checker (K concurrent connections, seeded data, byte-exact, EOF);
  * v2ray (Debian 4.34) config generation and start, quicmux client/server start;
  * counting a process's UDP sockets through /proc/PID/fd and /proc/net/udp{,6};
  * a tiny case runner printing "PASS name" / "FAIL name: reason" / "SKIP name: reason"
    and the summary line "N passed, N failed[, N skipped]".

Self-check (v2ray client <-> v2ray server through these helpers):
    python3 tests/e2e/qmtest.py --selfcheck
Stand-alone echo target for manual debugging:
    python3 tests/e2e/qmtest.py --echo 127.0.0.1:9000
"""

import atexit
import ctypes
import fcntl
import hashlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))

SECURITIES = ["none", "aes-128-gcm", "chacha20-poly1305"]
HEADERS = ["none", "srtp", "utp", "wechat-video", "dtls", "wireguard"]
HEADER_SIZE = {"none": 0, "srtp": 4, "utp": 4, "wechat-video": 13, "dtls": 13, "wireguard": 4}
MiB = 1024 * 1024

# Log level handed to quicmux processes (override with QMTEST_LOG_LEVEL).
QM_LOG_LEVEL = os.environ.get("QMTEST_LOG_LEVEL", "info")


SKIP_EXIT = 77  # a test script whose cases all skipped (CTest SKIP_RETURN_CODE)


class Skip(Exception):
    """Raise inside a case to report SKIP instead of PASS/FAIL."""


class CheckFailed(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)


# --------------------------------------------------------------------------- binaries

def quicmux_bin():
    p = os.environ.get("QUICMUX_BIN") or os.path.join(REPO_ROOT, "build", "quicmux")
    return os.path.abspath(p)


def have_quicmux():
    p = quicmux_bin()
    return os.path.isfile(p) and os.access(p, os.X_OK)


def _qm_argv(role, listen, remote_flag, remote, security, key, header, extra, log_level):
    """The quicmux command line of one tunnel end (None = the program's default)."""
    argv = [quicmux_bin(), role, "--listen", listen, remote_flag, remote]
    for flag, val in (("--security", security), ("--key", key), ("--header", header)):
        if val is not None:
            argv += [flag, val]
    return argv + list(extra) + ["--log-level", log_level or QM_LOG_LEVEL]


def require_quicmux():
    if not have_quicmux():
        raise CheckFailed("quicmux binary not found or not executable: %s (set QUICMUX_BIN)" % quicmux_bin())


def v2ray_bin():
    return shutil.which("v2ray") or "/usr/bin/v2ray"


def have_v2ray():
    p = v2ray_bin()
    return os.path.isfile(p) and os.access(p, os.X_OK)


_v2ray_style = None


def v2ray_argv(config_path):
    """Command line to run v2ray with a config file.

    v2ray 4.x takes `-config FILE`; v5 has `run -c FILE`.  Debian 12 ships 4.34, which
    has no `run` subcommand (`v2ray help` there just reads a config from stdin)."""
    global _v2ray_style
    if _v2ray_style is None:
        try:
            out = subprocess.run([v2ray_bin(), "-h"], stdin=subprocess.DEVNULL, capture_output=True,
                                 timeout=10).stdout.decode(errors="replace")
            out += subprocess.run([v2ray_bin(), "-h"], stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=10).stderr.decode(errors="replace")
        except Exception:
            out = ""
        if "-config" in out:
            _v2ray_style = "config"
        elif re.search(r"^\s*run\b", out, re.M):
            _v2ray_style = "run"
        else:
            _v2ray_style = "config"
    if _v2ray_style == "run":
        return [v2ray_bin(), "run", "-c", config_path]
    return [v2ray_bin(), "-config", config_path]


# --------------------------------------------------------------------------- addresses/ports

def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def hostport(host, port):
    """HOST:PORT as quicmux and v2ray take it ([v6]:port for IPv6)."""
    if ":" in host:
        return "[%s]:%d" % (host, port)
    return "%s:%d" % (host, port)


_ports_lock = threading.Lock()
_ports_given = set()


def free_port(kind="tcp", host="127.0.0.1"):
    """A currently free port (bind port 0, read it, close).  Never hands out the same
    port twice in one test process, so parallel cases do not collide with each other."""
    stype = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    for _ in range(200):
        s = socket.socket(family_of(host), stype)
        try:
            if kind == "tcp":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        with _ports_lock:
            if (kind, port) in _ports_given:
                continue
            _ports_given.add((kind, port))
        return port
    raise RuntimeError("could not find a free %s port on %s" % (kind, host))


def free_udp_range(n, host="127.0.0.1"):
    """The first of n consecutive UDP ports that are free now, below the kernel's
    ephemeral range (so no client socket takes one meanwhile); never the same port twice
    in one test process."""
    rnd = random.Random(os.getpid() ^ int(time.monotonic() * 1000))
    for _ in range(200):
        base = rnd.randrange(20000, 32000 - n)
        with _ports_lock:
            if any(("udp", p) in _ports_given for p in range(base, base + n)):
                continue
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket(family_of(host), socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((host, p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        with _ports_lock:
            _ports_given.update(("udp", p) for p in range(base, base + n))
        return base
    raise RuntimeError("could not find %d free UDP ports in a row on %s" % (n, host))


def free_tcp_port(host="127.0.0.1"):
    return free_port("tcp", host)


def free_udp_port(host="127.0.0.1"):
    return free_port("udp", host)


def _free_port_for(kind, host, netns=None):
    """A port for a process about to bind host: in a NetnsHost of the case every port is
    free (its namespace is new), so any ephemeral port of ours will do."""
    return free_port(kind, "127.0.0.1" if netns else host)


# --------------------------------------------------------------------------- /proc parsing

def _proc_net(files):
    """Rows of /proc/net/{tcp,udp}{,6}: (local_port, state, inode)."""
    rows = []
    for f in files:
        try:
            with open(f) as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            parts = ln.split()
            if len(parts) < 10:
                continue
            try:
                port = int(parts[1].rsplit(":", 1)[1], 16)
                state = parts[3]
                inode = int(parts[9])
            except (ValueError, IndexError):
                continue
            rows.append((port, state, inode))
    return rows


def udp_rows(pid=None):
    """UDP sockets of this network namespace, or of PID's (/proc/PID/net is the view of
    the namespace that process is in)."""
    d = "/proc/%d/net" % pid if pid is not None else "/proc/net"
    return _proc_net([d + "/udp", d + "/udp6"])


def tcp_rows(pid=None):
    d = "/proc/%d/net" % pid if pid is not None else "/proc/net"
    return _proc_net([d + "/tcp", d + "/tcp6"])


def socket_inodes(pid):
    """Inodes of the sockets a process has open (from /proc/PID/fd)."""
    out = set()
    d = "/proc/%d/fd" % pid
    try:
        names = os.listdir(d)
    except OSError:
        return out
    for n in names:
        try:
            t = os.readlink(os.path.join(d, n))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]$", t)
        if m:
            out.add(int(m.group(1)))
    return out


def udp_sockets_of(pid):
    """[(local_port, inode)] of the UDP sockets (v4 and v6) that PID has open."""
    inodes = socket_inodes(pid)
    return sorted({(port, ino) for port, _st, ino in udp_rows() if ino in inodes})


def count_udp_sockets(pid):
    return len(udp_sockets_of(pid))


def udp_port_bound(port, pid=None):
    inodes = socket_inodes(pid) if pid is not None else None
    for p, _st, ino in udp_rows(pid):
        if p == port and (inodes is None or ino in inodes):
            return True
    return False


def tcp_port_listening(port, pid=None):
    inodes = socket_inodes(pid) if pid is not None else None
    for p, st, ino in tcp_rows(pid):
        if p == port and st == "0A" and (inodes is None or ino in inodes):
            return True
    return False


# --------------------------------------------------------------------------- waiting

def wait_until(pred, timeout, what, interval=0.05, proc=None):
    """Poll pred() until true; bounded by timeout.  If proc (a Proc) dies meanwhile, fail
    at once."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return
        if proc is not None and not proc.alive():
            raise CheckFailed("%s exited (status %s) while waiting for %s" % (proc.name, proc.returncode(), what))
        if time.monotonic() >= deadline:
            raise CheckFailed("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def wait_tcp_listen(port, pid=None, timeout=10, proc=None):
    """Wait until a TCP socket is LISTENing on port (owned by pid if given).  Reads
    /proc/net/tcp{,6} instead of connecting, so a tunnel does not see a probe stream."""
    wait_until(lambda: tcp_port_listening(port, pid), timeout, "TCP port %d to listen" % port, proc=proc)


def wait_tcp_connect(host, port, timeout=10, proc=None):
    """Wait until host:port accepts a TCP connection (the probe connection is closed)."""
    def ok():
        try:
            s = socket.create_connection((host, port), timeout=0.5)
        except OSError:
            return False
        s.close()
        return True
    wait_until(ok, timeout, "TCP %s to accept" % hostport(host, port), interval=0.1, proc=proc)


def wait_udp_bound(port, pid=None, timeout=10, proc=None):
    """Wait until a UDP socket is bound to port (owned by pid if given)."""
    wait_until(lambda: udp_port_bound(port, pid), timeout, "UDP port %d to be bound" % port, proc=proc)


# --------------------------------------------------------------------------- processes

_live_procs = {}
_live_lock = threading.Lock()

try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:
    _libc = None


def _child_setup():
    # Kill the child if the test process dies without running its cleanup (PR_SET_PDEATHSIG).
    if _libc is not None:
        try:
            _libc.prctl(1, signal.SIGKILL, 0, 0, 0)
        except Exception:
            pass


class Proc:
    """A child process with stdout+stderr in a log file.  Stop it with stop()."""

    def __init__(self, argv, name, logdir, env=None):
        self.argv = list(argv)
        self.name = name
        self.log_path = os.path.join(logdir, "%s.log" % re.sub(r"[^A-Za-z0-9_.-]", "_", name))
        self._logf = open(self.log_path, "ab")
        self._logf.write(("$ %s\n" % " ".join(self.argv)).encode())
        self._logf.flush()
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._logf,
                                      stderr=subprocess.STDOUT, env=full_env,
                                      preexec_fn=_child_setup, close_fds=True)
        self.pid = self.popen.pid
        self.started = time.monotonic()
        with _live_lock:
            _live_procs[self.pid] = self

    def alive(self):
        return self.popen.poll() is None

    def returncode(self):
        return self.popen.poll()

    def send_signal(self, sig):
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout):
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Send sig, wait up to timeout, then SIGKILL.  Returns (returncode, seconds, killed)."""
        t0 = time.monotonic()
        killed = False
        if self.alive():
            self.send_signal(sig)
            if self.wait(timeout) is None:
                killed = True
                self.send_signal(signal.SIGKILL)
                self.wait(10)
        rc = self.returncode()
        with _live_lock:
            _live_procs.pop(self.pid, None)
        try:
            self._logf.close()
        except Exception:
            pass
        return rc, time.monotonic() - t0, killed

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def tail(self, n=25):
        return self.log().splitlines()[-n:]


def _kill_all_live():
    with _live_lock:
        procs = list(_live_procs.values())
    for p in procs:
        try:
            p.stop(timeout=2)
        except Exception:
            pass


atexit.register(_kill_all_live)


def _on_term(signum, frame):
    raise SystemExit(128 + signum)


def install_signal_handlers():
    """SIGTERM/SIGHUP on the test process -> SystemExit, so cleanup and atexit run."""
    for s in (signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(s, _on_term)
        except (ValueError, OSError):
            pass


def run_cmd(argv, timeout=10, env=None):
    """Run a short command; returns (returncode, stdout, stderr, seconds).  rc None on timeout."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=full_env, preexec_fn=_child_setup)
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=10)
        rc = None
    return rc, out.decode(errors="replace"), err.decode(errors="replace"), time.monotonic() - t0


# --------------------------------------------------------------------------- echo / other targets

def _make_listener(host, port, backlog=1024):
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(backlog)
    s.settimeout(0.2)
    return s


class _ThreadedTarget:
    """Base of the in-process TCP targets: accept loop in a thread, one thread per
    connection, statistics, bounded close()."""

    def __init__(self, host="127.0.0.1", port=0):
        self.host = host
        self.sock = _make_listener(host, port)
        self.port = self.sock.getsockname()[1]
        self.addr = (host, self.port)
        self.lock = threading.Lock()
        self.accepted = 0
        self.active = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.errors = []
        self._conns = set()
        self._threads = []
        self._stop = threading.Event()
        self._acceptor = threading.Thread(target=self._accept_loop, name="target-accept", daemon=True)
        self._acceptor.start()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.05)
                continue
            c.settimeout(None)
            with self.lock:
                self.accepted += 1
                self.active += 1
                self._conns.add(c)
            t = threading.Thread(target=self._run_conn, args=(c,), name="target-conn", daemon=True)
            with self.lock:
                self._threads = [x for x in self._threads if x.is_alive()]
                self._threads.append(t)
            t.start()

    def _run_conn(self, c):
        try:
            self.handle(c)
        except OSError as e:
            if not self._stop.is_set():
                with self.lock:
                    self.errors.append(repr(e))
        finally:
            try:
                c.close()
            except OSError:
                pass
            with self.lock:
                self.active -= 1
                self._conns.discard(c)

    def handle(self, c):
        raise NotImplementedError

    def close(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._acceptor.join(2)
        deadline = time.monotonic() + 3
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class EchoServer(_ThreadedTarget):
    """Echoes every byte; on EOF from the peer it finishes sending, then shuts down its
    write side (half-close), then closes."""

    def handle(self, c):
        while True:
            data = c.recv(262144)
            if not data:
                break
            with self.lock:
                self.bytes_in += len(data)
            c.sendall(data)
            with self.lock:
                self.bytes_out += len(data)
        c.shutdown(socket.SHUT_WR)


class SourceSinkServer(_ThreadedTarget):
    """Per connection: reads everything the peer sends until EOF (in a thread) and, once
    `wait_first` bytes have arrived (0 = at once), sends `send_bytes` of seeded data and
    shuts down its write side.  Records per-connection results (bytes received, sha256,
    whether EOF came) in self.results."""

    def __init__(self, host="127.0.0.1", send_bytes=MiB, seed=7, wait_first=0):
        self.send_bytes = send_bytes
        self.seed = seed
        self.wait_first = wait_first
        self.results = []
        super().__init__(host)

    def handle(self, c):
        data = seeded_bytes(self.seed, self.send_bytes)
        res = {"received": 0, "sha256": None, "eof": False, "sent": 0, "error": None}
        h = hashlib.sha256()
        first = threading.Event()

        def reader():
            try:
                while True:
                    if res["received"] >= self.wait_first:
                        first.set()
                    d = c.recv(262144)
                    if not d:
                        res["eof"] = True
                        break
                    h.update(d)
                    res["received"] += len(d)
            except OSError as e:
                res["error"] = repr(e)
            finally:
                first.set()
        rt = threading.Thread(target=reader, daemon=True)
        rt.start()
        first.wait(60)
        try:
            c.sendall(data)
            res["sent"] = len(data)
            c.shutdown(socket.SHUT_WR)
        except OSError as e:
            res["error"] = repr(e)
        rt.join(60)
        res["sha256"] = h.hexdigest()
        with self.lock:
            self.results.append(res)


# --------------------------------------------------------------------------- transfer checker

def seeded_bytes(seed, n):
    """n bytes from a seeded generator; in 64 MiB pieces, since randbytes takes at most
    2**31 - 1 bits at once (256 MiB and more would overflow)."""
    r, chunk = random.Random(seed), 64 * 1024 * 1024
    if n <= chunk:
        return r.randbytes(n)
    return b"".join(r.randbytes(min(chunk, n - i)) for i in range(0, n, chunk))


class ConnResult:
    def __init__(self, idx, n):
        self.idx = idx
        self.n = n
        self.sent = 0
        self.received = 0
        self.eof = False
        self.mismatch_at = None
        self.error = None
        self.sha_ok = False
        self.done_at = None
        self.last_byte_at = None

    def ok(self):
        return self.error is None and self.eof and self.sent == self.n and self.received == self.n \
            and self.mismatch_at is None and self.sha_ok

    def describe(self):
        if self.ok():
            return "conn %d ok" % self.idx
        bits = ["conn %d: sent %d/%d, received %d/%d" % (self.idx, self.sent, self.n, self.received, self.n)]
        if self.mismatch_at is not None:
            bits.append("first mismatch at offset %d" % self.mismatch_at)
        if not self.eof:
            bits.append("no EOF")
        elif self.received == self.n and not self.sha_ok:
            bits.append("sha256 differs")
        if self.error:
            bits.append(self.error)
        return ", ".join(bits)


class TransferResult:
    def __init__(self, results, elapsed, data_elapsed):
        self.results = results
        self.elapsed = elapsed            # until the last EOF
        self.data_elapsed = data_elapsed  # until the last byte
        self.bytes_each_way = sum(r.n for r in results)

    @property
    def ok(self):
        return all(r.ok() for r in self.results)

    def failures(self):
        return [r for r in self.results if not r.ok()]

    def mib_s(self):
        return self.bytes_each_way / MiB / max(self.data_elapsed, 1e-6)

    def summary(self):
        return "%d conns, %.1f MiB each way, last byte at %.2fs (%.1f MiB/s each way), last EOF at %.2fs" % (
            len(self.results), self.bytes_each_way / MiB, self.data_elapsed, self.mib_s(), self.elapsed)

    def raise_if_failed(self, what="transfer"):
        bad = self.failures()
        if bad:
            msg = "%s: %d/%d connections failed; %s" % (what, len(bad), len(self.results),
                                                         "; ".join(r.describe() for r in bad[:4]))
            if len(bad) > 4:
                msg += "; ..."
            raise CheckFailed(msg)


def _one_transfer(addr, r, data, deadline, connect_timeout, read_delay, sem, progress, stall):
    if sem is not None:
        sem.acquire()
    progress[0] = max(progress[0], time.monotonic())

    def expired():
        now = time.monotonic()
        if now > deadline:
            return "timed out"
        if stall and now - progress[0] > stall:
            return "stalled (no progress on any connection for %.0fs)" % stall
        return None
    s = None
    try:
        try:
            s = socket.create_connection(addr, timeout=connect_timeout)
        except OSError as e:
            r.error = "connect failed: %r" % e
            return
        s.settimeout(0.25)
        h = hashlib.sha256()
        want = hashlib.sha256(data).digest()
        mv = memoryview(data)
        rstate = {"err": None}

        def reader():
            if read_delay:
                time.sleep(read_delay)
            try:
                while True:
                    why = expired()
                    if why:
                        rstate["err"] = "%s reading after %d bytes" % (why, r.received)
                        return
                    try:
                        d = s.recv(262144)
                    except socket.timeout:
                        continue
                    if not d:
                        r.eof = True
                        return
                    off = r.received
                    if r.mismatch_at is None:
                        exp = mv[off:off + len(d)]
                        if bytes(exp) != d:
                            if len(exp) < len(d) and bytes(exp) == d[:len(exp)]:
                                r.mismatch_at = off + len(exp)
                            else:
                                for i in range(min(len(exp), len(d))):
                                    if exp[i] != d[i]:
                                        r.mismatch_at = off + i
                                        break
                                else:
                                    r.mismatch_at = off + len(exp)
                    h.update(d)
                    r.received += len(d)
                    r.last_byte_at = progress[0] = time.monotonic()
            except OSError as e:
                rstate["err"] = "read error after %d bytes: %s" % (r.received, e.__class__.__name__ + ": " + str(e))

        rt = threading.Thread(target=reader, daemon=True)
        rt.start()
        try:
            off = 0
            n = len(data)
            while off < n:
                why = expired()
                if why:
                    raise TimeoutError("%s writing" % why)
                try:
                    off += s.send(mv[off:off + 65536])
                except socket.timeout:
                    continue
                r.sent = off
                progress[0] = time.monotonic()
            s.shutdown(socket.SHUT_WR)
        except (OSError, TimeoutError) as e:
            r.error = "write error after %d bytes: %s" % (r.sent, e.__class__.__name__ + ": " + str(e))
        while rt.is_alive() and not expired():
            rt.join(0.25)
        rt.join(1.0)
        if rt.is_alive():
            # Make the reader return.
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            rt.join(2)
            if r.error is None:
                r.error = "timed out waiting for echo/EOF"
        if rstate["err"] and r.error is None:
            r.error = rstate["err"]
        r.sha_ok = (h.digest() == want)
        r.done_at = time.monotonic()
    finally:
        if s is not None:
            try:
                s.close()
            except OSError:
                pass
        if sem is not None:
            sem.release()


def check_transfer(addr, conns=4, nbytes=2 * MiB, seed=1, timeout=60.0, sizes=None,
                   concurrency=None, connect_timeout=5.0, read_delay=0.0, stall=15.0):
    """Open `conns` TCP connections to addr (concurrently, at most `concurrency` at a time);
    on each send seeded pseudo-random data (different per connection), then SHUT_WR while
    reading concurrently; check that exactly the same bytes come back, then EOF.

    sizes: optional list of per-connection sizes (overrides conns/nbytes).
    read_delay: seconds to wait before starting to read (the peer keeps the half-closed
    stream open meanwhile).
    stall: give up early when no byte has moved on any connection for this long.
    Returns a TransferResult; call .raise_if_failed()."""
    if sizes is None:
        sizes = [nbytes] * conns
    results = [ConnResult(i, n) for i, n in enumerate(sizes)]
    datas = [seeded_bytes(seed * 1000003 + i * 7919 + 17, n) for i, n in enumerate(sizes)]
    sem = threading.Semaphore(concurrency) if concurrency else None
    t0 = time.monotonic()
    deadline = t0 + timeout
    threads = []
    progress = [t0]
    for r, d in zip(results, datas):
        t = threading.Thread(target=_one_transfer,
                             args=(addr, r, d, deadline, connect_timeout, read_delay, sem, progress, stall),
                             daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + 10.0)
    for r, t in zip(results, threads):
        if t.is_alive() and r.error is None:
            r.error = "worker still running after the timeout"
    now = time.monotonic()
    elapsed = max((r.done_at or now) for r in results) - t0 if results else 0.0
    data_elapsed = max((r.last_byte_at or now) for r in results) - t0 if results else 0.0
    return TransferResult(results, elapsed, data_elapsed)


def probe_no_data(addr, payload=b"hello, is anybody there?" * 40, wait=10.0, connect_timeout=5.0):
    """For negative cases: connect, send payload, read for up to `wait` seconds.
    Returns (received_bytes, outcome, seconds) where outcome is one of
    'connect-failed', 'eof', 'reset', 'timeout'."""
    t0 = time.monotonic()
    try:
        s = socket.create_connection(addr, timeout=connect_timeout)
    except ConnectionResetError:
        # accepted, then reset before connect() returned: a fast "no"
        return 0, "reset", time.monotonic() - t0
    except OSError:
        return 0, "connect-failed", time.monotonic() - t0
    got = 0
    outcome = "timeout"
    try:
        s.settimeout(0.25)
        try:
            s.sendall(payload)
        except OSError:
            pass
        deadline = t0 + wait
        while time.monotonic() < deadline:
            try:
                d = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                outcome = "reset"
                break
            if not d:
                outcome = "eof"
                break
            got += len(d)
    finally:
        s.close()
    return got, outcome, time.monotonic() - t0


def udp_bound_at(port, pid, proc, timeout=15.0):
    """Poll (every 2 ms) until process pid has bound UDP port; returns time.monotonic()
    of the first poll that saw it. CheckFailed if proc exits or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if udp_port_bound(port, pid):
            return time.monotonic()
        if not proc.alive():
            raise CheckFailed("%s exited while starting" % proc.name)
        time.sleep(0.002)
    raise CheckFailed("%s did not bind UDP %d within %.0fs" % (proc.name, port, timeout))


def echo_once(addr, data, timeout=10.0):
    """One connection to an echo tunnel: send data, read it back byte-exact.
    Returns (ok, why)."""
    t0 = time.monotonic()
    try:
        s = socket.create_connection(addr, timeout=timeout)
    except OSError as e:
        return False, "connect: %s" % e.__class__.__name__
    try:
        s.settimeout(timeout)
        s.sendall(data)
        got = b""
        while len(got) < len(data) and time.monotonic() - t0 < timeout:
            d = s.recv(65536)
            if not d:
                break
            got += d
        if got == data:
            return True, "ok"
        return False, "got %d of %d bytes%s" % (len(got), len(data), ", differs" if len(got) == len(data) else "")
    except OSError as e:
        return False, e.__class__.__name__
    finally:
        s.close()


def open_held(addr, n, payload_len=16, timeout=10.0, seed=99):
    """Open n TCP connections one after another; on each send a few bytes and wait for
    their echo.  Returns the list of open sockets (the caller closes them).  Raises
    CheckFailed (after closing what it opened) if a connection fails."""
    socks = []
    try:
        for i in range(n):
            payload = seeded_bytes(seed + i, payload_len)
            s = socket.create_connection(addr, timeout=timeout)
            socks.append(s)
            s.settimeout(timeout)
            s.sendall(payload)
            got = b""
            deadline = time.monotonic() + timeout
            while len(got) < len(payload):
                if time.monotonic() > deadline:
                    raise CheckFailed("held conn %d: echo timed out (%d/%d bytes)" % (i, len(got), len(payload)))
                try:
                    d = s.recv(4096)
                except socket.timeout:
                    raise CheckFailed("held conn %d: echo timed out (%d/%d bytes)" % (i, len(got), len(payload)))
                if not d:
                    raise CheckFailed("held conn %d: EOF before echo (%d/%d bytes)" % (i, len(got), len(payload)))
                got += d
            if got != payload:
                raise CheckFailed("held conn %d: echo differs" % i)
        return socks
    except (OSError, CheckFailed) as e:
        close_all(socks)
        if isinstance(e, CheckFailed):
            raise
        raise CheckFailed("held conn %d: %r" % (len(socks), e))


def close_all(socks):
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            s.close()
        except OSError:
            pass


# --------------------------------------------------------------------------- UDP relay

class UdpRelay:
    """A UDP relay between QUIC clients and a server that records every datagram.

    Clients send to relay.addr; for each client source address the relay opens its own
    upstream socket towards `upstream`, so the server sees one source port per client
    socket and replies go back to the right client.  Records (direction, client_src,
    seconds, bytes) in self.log, direction 'c2s' or 's2c'.  `drop(direction, data)`, if
    given, returns True to drop a datagram (seeded impairments go there).  Bounded close().
    """

    def __init__(self, upstream, host=None, drop=None, record=True):
        import selectors
        host = host or upstream[0]
        self.upstream = upstream
        self.drop = drop
        self.record = record
        self.sock = self._udp(host)
        self.addr = (host, self.sock.getsockname()[1])
        self.log = []
        self.lock = threading.Lock()
        self._up = {}       # client src -> upstream socket
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.sock, selectors.EVENT_READ, None)
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="udp-relay", daemon=True)
        self._thread.start()

    @staticmethod
    def _udp(host):
        s = socket.socket(family_of(host), socket.SOCK_DGRAM)
        for opt in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
            try:
                s.setsockopt(socket.SOL_SOCKET, opt, 8 * MiB)
                break
            except OSError:
                continue
        s.bind((host, 0))
        s.setblocking(False)
        return s

    def _loop(self):
        import selectors
        while not self._stop.is_set():
            for key, _ev in self._sel.select(0.2):
                sk = key.fileobj
                for _ in range(64):
                    try:
                        data, src = sk.recvfrom(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    if key.data is None:
                        direction, client = "c2s", src
                    else:
                        direction, client = "s2c", key.data
                    if self.record:
                        with self.lock:
                            self.log.append((direction, client, time.monotonic() - self._t0, data))
                    if self.drop is not None and self.drop(direction, data):
                        continue
                    try:
                        if direction == "c2s":
                            up = self._up.get(client)
                            if up is None:
                                up = self._udp(self.upstream[0])
                                self._up[client] = up
                                self._sel.register(up, selectors.EVENT_READ, client)
                            up.sendto(data, self.upstream)
                        else:
                            self.sock.sendto(data, client)
                    except OSError:
                        pass

    def datagrams(self, direction=None, client=None):
        with self.lock:
            return [(d, c, t, b) for d, c, t, b in self.log
                    if (direction is None or d == direction) and (client is None or c == client)]

    def clients(self):
        with self.lock:
            out = []
            for _d, c, _t, _b in self.log:
                if c not in out:
                    out.append(c)
            return out

    def close(self):
        self._stop.set()
        self._thread.join(2)
        for up in list(self._up.values()):
            try:
                up.close()
            except OSError:
                pass
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            self._sel.close()
        except Exception:
            pass


# --------------------------------------------------------------------------- v2ray configs

def v2ray_quic_stream(security="none", key="", header="none"):
    return {"network": "quic",
            "quicSettings": {"security": security, "key": key, "header": {"type": header}}}


def v2ray_client_config(listen_host, listen_port, server_host, server_port, security="none", key="",
                        header="none", target=("127.0.0.1", 9)):
    """dokodemo-door (TCP, fixed target) -> freedom redirected to the QUIC server, dialing
    through the quic transport."""
    return {
        "log": {"loglevel": "warning"},
        "inbounds": [{
            "tag": "in", "listen": listen_host, "port": listen_port, "protocol": "dokodemo-door",
            "settings": {"address": target[0], "port": target[1], "network": "tcp"},
        }],
        "outbounds": [{
            "tag": "out", "protocol": "freedom",
            "settings": {"redirect": hostport(server_host, server_port)},
            "streamSettings": v2ray_quic_stream(security, key, header),
        }],
    }


def v2ray_server_config(listen_host, listen_port, target_host, target_port, security="none", key="",
                        header="none"):
    """dokodemo-door on the QUIC (UDP) port forwarding every stream to the TCP target,
    plus a freedom outbound."""
    return {
        "log": {"loglevel": "warning"},
        "inbounds": [{
            "tag": "in", "listen": listen_host, "port": listen_port, "protocol": "dokodemo-door",
            "settings": {"address": target_host, "port": target_port, "network": "tcp"},
            "streamSettings": v2ray_quic_stream(security, key, header),
        }],
        "outbounds": [{"tag": "out", "protocol": "freedom"}],
    }


# --------------------------------------------------------------------------- test hosts

_netns_seq = itertools.count(1)
_netns_probe = None
NETNS_NET = "10.231"  # test links are 10.231.K.0/24: K.1 here, K.2 in the namespace


def _ip(*args):
    r = subprocess.run(("ip",) + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=10)
    if r.returncode != 0:
        raise OSError("ip %s: %s" % (" ".join(args), r.stderr.decode(errors="replace").strip()))
    return r.stdout.decode(errors="replace")


class NetnsHost:
    """A test host: a network namespace of its own, joined to this one by a veth pair
    (a point-to-point link 10.231.K.0/24).  .addr is the host's address, .peer_addr the
    address of this (the test's) end of the link.  Processes run in it through
    Case.spawn(..., netns=host); close() deletes the namespace and with it the link."""

    def __init__(self, tag="h"):
        n = next(_netns_seq)
        pid = os.getpid()
        self.name = "qmtest-%d-%s%d" % (pid, tag, n)
        self.veth = "qv%dn%d" % (pid, n)  # <= 15 characters (IFNAMSIZ)
        self._made = False
        # Serialise the choice of K between concurrent test processes.
        with open(os.path.join(tempfile.gettempdir(), "qmtest-netns.lock"), "w") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            used = set(int(m) for m in re.findall(r"inet %s\.(\d+)\." % re.escape(NETNS_NET),
                                                    _ip("-o", "-4", "addr", "show")))
            free = [k for k in range(1, 255) if k not in used]
            if not free:
                raise OSError("no free %s.K.0/24 test network" % NETNS_NET)
            k = free[0]
            self.addr = "%s.%d.2" % (NETNS_NET, k)
            self.peer_addr = "%s.%d.1" % (NETNS_NET, k)
            try:
                _ip("netns", "add", self.name)
                self._made = True
                _ip("link", "add", self.veth, "type", "veth", "peer", "name", "eth0",
                    "netns", self.name)
                _ip("addr", "add", self.peer_addr + "/24", "dev", self.veth)
                _ip("link", "set", self.veth, "up")
                _ip("-n", self.name, "addr", "add", self.addr + "/24", "dev", "eth0")
                _ip("-n", self.name, "link", "set", "eth0", "up")
                _ip("-n", self.name, "link", "set", "lo", "up")
            except BaseException:
                self.close()
                raise

    def argv(self, argv):
        return ["ip", "netns", "exec", self.name] + list(argv)

    def set_mtu(self, mtu):
        """The link's IP MTU, on both of its ends."""
        _ip("link", "set", self.veth, "mtu", str(mtu))
        _ip("-n", self.name, "link", "set", "eth0", "mtu", str(mtu))

    def close(self):
        if self._made:  # deleting the namespace deletes the veth pair with it
            self._made = False
            try:
                _ip("netns", "del", self.name)
            except (OSError, subprocess.SubprocessError):
                pass


def have_netns():
    """(True, "") if this machine lets the tests make network namespaces with veth
    links (root, iproute2, a kernel with both); else (False, why)."""
    global _netns_probe
    if _netns_probe is None:
        try:
            NetnsHost("probe").close()
            _netns_probe = (True, "")
        except (OSError, subprocess.SubprocessError) as e:
            _netns_probe = (False, str(e))
    return _netns_probe


# --------------------------------------------------------------------------- cases

class Case:
    """One test case: a temp dir, the processes and targets it started (all stopped at
    the end, in reverse order), and a place for notes."""

    def __init__(self, name, root):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60] + ".", dir=root)
        self.procs = []
        self._cleanups = []
        self.notes = []

    # ---- generic
    def spawn(self, argv, name, env=None, netns=None):
        """Start argv (inside the NetnsHost netns if given: `ip netns exec` keeps the PID)."""
        p = Proc(netns.argv(argv) if netns else argv, name, self.dir, env=env)
        self.procs.append(p)
        self._cleanups.append(p.stop)
        return p

    def netns_host(self, tag="h"):
        """A NetnsHost, deleted when the case ends."""
        h = NetnsHost(tag)
        self._cleanups.append(h.close)
        return h

    def on_close(self, fn):
        self._cleanups.append(fn)

    def note(self, s):
        self.notes.append(s)

    def close(self):
        while self._cleanups:
            fn = self._cleanups.pop()
            try:
                fn()
            except Exception:
                pass

    def log_tails(self, n=25):
        out = []
        for p in self.procs:
            t = p.tail(n)
            rc = p.returncode()
            out.append("--- %s (pid %d, %s), last %d lines of %s:" % (
                p.name, p.pid, "running" if rc is None and p.alive() else "exit %s" % rc, len(t), p.log_path))
            out.extend(t)
        return out

    def write_file(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    # ---- targets
    def echo_server(self, host="127.0.0.1"):
        e = EchoServer(host)
        self._cleanups.append(e.close)
        return e

    def source_sink_server(self, host="127.0.0.1", send_bytes=MiB, seed=7, wait_first=0):
        e = SourceSinkServer(host, send_bytes=send_bytes, seed=seed, wait_first=wait_first)
        self._cleanups.append(e.close)
        return e

    def lossy_relay(self, upstream, loss=0.05, seed=1):
        """A UdpRelay dropping each datagram (both directions) with probability `loss`,
        from a seeded generator."""
        rnd = random.Random(seed)
        return self.udp_relay(upstream, drop=lambda _d, _b: rnd.random() < loss)

    def udp_relay(self, upstream, drop=None):
        r = UdpRelay(upstream, drop=drop)
        self._cleanups.append(r.close)
        return r

    # ---- quicmux
    def qm_server(self, target, host="127.0.0.1", security=None, key=None, header=None, extra=(),
                  name="qm-server", port=None, log_level=None, netns=None):
        require_quicmux()
        port = port or _free_port_for("udp", host, netns)
        argv = _qm_argv("server", hostport(host, port), "--target", hostport(*target),
                        security, key, header, extra, log_level)
        p = self.spawn(argv, name, netns=netns)
        wait_udp_bound(port, pid=p.pid, timeout=10, proc=p)
        return p, (host, port)

    def qm_client(self, server, host="127.0.0.1", security=None, key=None, header=None, extra=(),
                  name="qm-client", port=None, log_level=None, netns=None):
        require_quicmux()
        port = port or _free_port_for("tcp", host, netns)
        argv = _qm_argv("client", hostport(host, port), "--server", hostport(*server),
                        security, key, header, extra, log_level)
        p = self.spawn(argv, name, netns=netns)
        wait_tcp_listen(port, pid=p.pid, timeout=10, proc=p)
        return p, (host, port)

    # ---- v2ray
    def _v2ray(self, cfg, name, netns=None):
        if not have_v2ray():
            raise Skip("v2ray not installed (%s)" % v2ray_bin())
        path = self.write_file(name + ".json", json.dumps(cfg, indent=2))
        return self.spawn(v2ray_argv(path), name, netns=netns)

    def v2ray_server(self, target, host="127.0.0.1", security="none", key="", header="none",
                     name="v2ray-server", port=None, netns=None):
        port = port or _free_port_for("udp", host, netns)
        cfg = v2ray_server_config(host, port, target[0], target[1], security, key, header)
        p = self._v2ray(cfg, name, netns)
        wait_udp_bound(port, pid=p.pid, timeout=15, proc=p)
        return p, (host, port)

    def v2ray_client(self, server, host="127.0.0.1", security="none", key="", header="none",
                     name="v2ray-client", port=None, target=("127.0.0.1", 9), netns=None):
        port = port or _free_port_for("tcp", host, netns)
        cfg = v2ray_client_config(host, port, server[0], server[1], security, key, header, target=target)
        p = self._v2ray(cfg, name, netns)
        wait_tcp_listen(port, pid=p.pid, timeout=15, proc=p)
        return p, (host, port)

    # ---- whole tunnels
    def tunnel(self, client="quicmux", server="quicmux", host="127.0.0.1", security="none", key="",
               header="none", server_security=None, server_key=None, server_header=None, target=None,
               relay=None):
        """Start target (echo unless given), server and client.  Returns a dict with
        addr (where to connect), target, client and server Procs, server_addr, and (with
        relay=True, or relay=a drop probability for a seeded lossy relay) the UdpRelay
        that the client talks through."""
        if target is None:
            target = self.echo_server(host)
        ss = security if server_security is None else server_security
        sk = key if server_key is None else server_key
        sh = header if server_header is None else server_header
        if server == "quicmux":
            sp, saddr = self.qm_server(target.addr, host, ss, sk, sh)
        else:
            sp, saddr = self.v2ray_server(target.addr, host, ss, sk, sh)
        rl = None
        dial = saddr
        if relay is True:
            rl = self.udp_relay(saddr)
            dial = rl.addr
        elif relay:
            rl = self.lossy_relay(saddr, loss=float(relay))
            dial = rl.addr
        if client == "quicmux":
            cp, caddr = self.qm_client(dial, host, security, key, header)
        else:
            cp, caddr = self.v2ray_client(dial, host, security, key, header, target=target.addr)
        return {"addr": caddr, "target": target, "client": cp, "server": sp, "server_addr": saddr, "relay": rl}


class Runner:
    """Runs cases and prints PASS/FAIL/SKIP lines and the summary line."""

    def __init__(self, title=None):
        install_signal_handlers()
        self.title = title
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.root = tempfile.mkdtemp(prefix="qmtest.")
        self.keep = os.environ.get("QMTEST_KEEP", "") not in ("", "0")
        self.t0 = time.monotonic()
        self._out = threading.Lock()
        if title:
            self.info("%s (quicmux: %s)" % (title, quicmux_bin()))

    def info(self, line):
        with self._out:
            print("# " + line, flush=True)

    def _report(self, status, name, reason=None, extra=()):
        with self._out:
            if status == "PASS":
                self.passed += 1
                print("PASS %s" % name)
            elif status == "SKIP":
                self.skipped += 1
                print("SKIP %s: %s" % (name, reason))
            else:
                self.failed += 1
                print("FAIL %s: %s" % (name, reason))
            for ln in extra:
                print(ln)
            sys.stdout.flush()

    def run(self, name, fn, *args, **kwargs):
        """Run fn(case, *args, **kwargs).  A return value that is a string is printed as an
        info line; CheckFailed/any exception = FAIL; Skip = SKIP."""
        case = Case(name, self.root)
        t0 = time.monotonic()
        status, reason, extra = "PASS", None, []
        try:
            ret = fn(case, *args, **kwargs)
            if isinstance(ret, str) and ret:
                case.note(ret)
        except Skip as e:
            status, reason = "SKIP", str(e) or "skipped"
        except CheckFailed as e:
            status, reason = "FAIL", str(e) or "check failed"
        except BaseException as e:  # noqa: B902 - a case must never take the runner down
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                case.close()
                raise
            status = "FAIL"
            reason = "%s: %s" % (e.__class__.__name__, e)
            extra = ["  | " + ln for ln in traceback.format_exc().splitlines()[-8:]]
        if status == "FAIL":
            extra += ["  | " + ln for ln in case.log_tails()]
        case.close()
        dt = time.monotonic() - t0
        notes = case.notes + ["%.1fs" % dt]
        extra_notes = ["# %s: %s" % (name, "; ".join(notes))]
        self._report(status, name, reason, extra_notes + extra if status == "FAIL" else extra_notes)
        if status != "FAIL" and not self.keep:
            shutil.rmtree(case.dir, ignore_errors=True)
        return status

    def run_parallel(self, items, workers=2):
        """items: list of (name, fn, args tuple).  Runs up to `workers` cases at once."""
        items = list(items)
        lock = threading.Lock()

        def worker():
            while True:
                with lock:
                    if not items:
                        return
                    name, fn, args = items.pop(0)
                self.run(name, fn, *args)
        ts = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, workers))]
        for t in ts:
            t.start()
        for t in ts:
            while t.is_alive():
                t.join(0.5)

    def finish(self):
        self.info("total time %.1fs; logs of failed cases under %s" % (time.monotonic() - self.t0, self.root))
        line = "%d passed, %d failed" % (self.passed, self.failed)
        if self.skipped:
            line += ", %d skipped" % self.skipped
        print(line, flush=True)
        _kill_all_live()
        if self.failed == 0 and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
        if self.failed == 0 and self.passed == 0 and self.skipped:
            return SKIP_EXIT  # nothing ran: CTest reports the test as skipped, not passed
        return 0 if self.failed == 0 else 1


# --------------------------------------------------------------------------- self-check

def _selfcheck():
    r = Runner("qmtest self-check: v2ray client <-> v2ray server")

    def transfer(c, sec, key, hdr, conns, nbytes, host="127.0.0.1"):
        t = c.tunnel("v2ray", "v2ray", host=host, security=sec, key=key, header=hdr)
        res = check_transfer(t["addr"], conns=conns, nbytes=nbytes, seed=3, timeout=60)
        res.raise_if_failed()
        check(t["target"].accepted == conns, "target saw %d connections, expected %d" % (t["target"].accepted, conns))
        return res.summary()

    def negative(c, sec, key, hdr, ssec, skey, shdr):
        t = c.tunnel("v2ray", "v2ray", security=sec, key=key, header=hdr,
                     server_security=ssec, server_key=skey, server_header=shdr)
        got, outcome, dt = probe_no_data(t["addr"], wait=6)
        check(got == 0, "mismatched settings still carried %d bytes" % got)
        check(t["target"].accepted == 0, "target saw a connection")
        return "%s after %.1fs" % (outcome, dt)

    def pool(c):
        t = c.tunnel("v2ray", "v2ray", security="aes-128-gcm", key="k1", header="none")
        socks = open_held(t["addr"], 40)
        try:
            time.sleep(0.5)
            n = count_udp_sockets(t["client"].pid)
            check(n == 2, "v2ray client has %d UDP sockets with 40 streams open, expected 2 (%s)"
                  % (n, udp_sockets_of(t["client"].pid)))
        finally:
            close_all(socks)
        return "2 UDP sockets for 40 streams"

    def echo_direct(c):
        e = c.echo_server("127.0.0.1")
        res = check_transfer(e.addr, conns=4, nbytes=8 * MiB, timeout=30)
        res.raise_if_failed()
        e6 = c.echo_server("::1")
        check_transfer(e6.addr, conns=2, nbytes=MiB, timeout=30).raise_if_failed()
        return res.summary()

    r.run("selfcheck.echo-direct", echo_direct)
    r.run("selfcheck.v2ray.aes-128-gcm.srtp", transfer, "aes-128-gcm", "k1", "srtp", 2, 2 * MiB)
    r.run("selfcheck.v2ray.none.none", transfer, "none", "", "none", 4, 2 * MiB)
    r.run("selfcheck.v2ray.chacha20-poly1305.dtls", transfer, "chacha20-poly1305", "", "dtls", 2, 2 * MiB)
    r.run("selfcheck.v2ray.v6.aes-128-gcm.wireguard", transfer, "aes-128-gcm", "k1", "wireguard", 2, 2 * MiB, "::1")
    r.run("selfcheck.v2ray.negative.key", negative, "aes-128-gcm", "k1", "none", "aes-128-gcm", "k2", "none")
    r.run("selfcheck.v2ray.pool40", pool)
    return r.finish()


def _echo_main(spec):
    host, _, port = spec.rpartition(":")
    host = host.strip("[]")
    e = EchoServer(host, int(port))
    print("echo server on %s" % hostport(host, e.port), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        e.close()


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--selfcheck":
        sys.exit(_selfcheck())
    if len(sys.argv) >= 3 and sys.argv[1] == "--echo":
        _echo_main(sys.argv[2])
        sys.exit(0)
    print(__doc__)
    sys.exit(2)
