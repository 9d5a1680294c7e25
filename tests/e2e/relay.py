#!/usr/bin/env python3
"""relay.py -- a UDP impairment relay for the quicmux tests (Python stdlib only).

This kernel has no netem/tbf qdisc (see /work/shared/TESTING.md), so loss, delay,
reordering, duplication, MTU limits and black-holing are made here, in user space,
between a client and a server on loopback.  A fixed seed makes runs repeatable (the
decisions are drawn from one random.Random per direction, seeded from `seed`).

Library use (from a test, next to qmtest.py)
---------------------------------------------
    from relay import Relay
    r = Relay("127.0.0.1", upstream=("127.0.0.1", server_port), seed=1, loss=0.01,
              delay_ms=50, jitter_ms=0, reorder=0.0, duplicate=0.0, mtu=None,
              blackhole=False, delay_first_n=0, delay_first_ms=0)
    client_connects_to = r.addr          # (host, port) of the relay's listening socket
    r.set(blackhole=True)                # change parameters while running (both directions)
    r.set(direction="down", loss=0.2)    # ... or one direction only ("up" / "down")
    print(r.stats)                       # counters, see below
    r.close()                            # stops the relay (also a context manager)

Constructor:
    Relay(listen_host, upstream=(host, port), seed=1, loss=0.0, delay_ms=0, jitter_ms=0,
          reorder=0.0, duplicate=0.0, mtu=None, blackhole=False, delay_first_n=0,
          delay_first_ms=0, *, listen_port=0, reorder_ms=10, rate_mbps=None,
          queue_ms=200, up=None, down=None, capture=0, process=False)

  The positional/keyword parameters up to delay_first_ms are the stable API; the
  keyword-only ones after `*` are extras.  Every impairment applies to BOTH directions
  unless overridden per direction with up={...} / down={...} (dicts of the same
  parameter names) or .set(direction=...).  "up" = client -> server (datagrams that
  arrive on the listening socket), "down" = server -> client.

  loss          probability of dropping a datagram.
  delay_ms      fixed one-way delay added to every datagram, in each direction (so with
                delay_ms=50 the round trip grows by 100 ms, as netem on `lo` would).
  jitter_ms     uniform random +-jitter added to the delay (may reorder, as in netem).
  reorder       probability that a datagram is held back an extra `reorder_ms`
                (default 10 ms) so that later datagrams overtake it.
  duplicate     probability that a datagram is sent twice.
  mtu           largest UDP *payload* forwarded (bytes); bigger datagrams are dropped
                (counted as dropped_mtu).  None = no limit.
  blackhole     drop everything (counted as dropped_blackhole) while true.
  delay_first_n, delay_first_ms
                the first N datagrams of every session (client source address), counted
                separately per direction, get delay_first_ms extra delay.  Use
                down={"delay_first_n": 0} / up={...} to restrict it to one direction.
  rate_mbps     optional bottleneck rate in Mbit/s (a FIFO queue; a datagram that would
                wait longer than queue_ms in it is dropped, counted as dropped_queue).
  capture       keep the first `capture` and the last `capture` datagrams of each
                direction (see .captured()).
  process       run the relay loop in a child process (`python3 relay.py --control`)
                instead of a thread of this process: use it for bulk transfers, where the
                test's own Python threads would otherwise compete for the GIL.  The API
                is identical.

Sessions (NAT-like): for every new client source address the relay opens its own
upstream UDP socket (connected to `upstream`), so several client sessions arrive at the
server from several ports; replies on that socket go back to that client address.
Sessions are never expired while the relay runs.

Attributes and methods:
  .addr                      (host, port) to point the client at.
  .set(direction="both", **params)
  .stats                     {"up": {...}, "down": {...}, "sessions": N} where each
                             direction has: received, forwarded, dropped (sum of the
                             dropped_* below), dropped_loss, dropped_mtu,
                             dropped_blackhole, dropped_queue, dropped_send (socket
                             buffer full), duplicated, reordered, delayed_first, bytes
                             (forwarded payload bytes), max_len (largest datagram seen),
                             dropped_remap (see .remap()).
                             forwarded counts datagrams sent, duplicates included.
  .sessions()                [{"client": (host, port), "upstream_port": p}, ...]
  .remap(session=None, upstream=None)
                             a NAT re-map: every session (or the one of that index)
                             gets a new upstream socket, i.e. a new source port as the
                             server sees it, and the old socket is closed (replies to
                             the old port are lost, as behind a real NAT, and so are
                             the server's datagrams still delayed in the relay;
                             counted as dropped_remap).  With
                             upstream=(host, port) the new sockets and later sessions
                             go there: to the server, a client hopping ports.  Returns
                             [{"client", "old_port", "upstream_port"}, ...].
  .captured(direction="up")  {"first": [bytes...], "last": [bytes...]}
  .inject(data, direction="up", session=0)
                             send raw bytes as if they came through the relay: "up" from
                             session's upstream socket to the server (the server sees
                             the client's relayed address), "down" from the listening
                             socket to the session's client.  Not counted in stats.
  .close()

Command line (foreground; prints stats on SIGINT/SIGTERM):
    python3 relay.py --listen 127.0.0.1:4000 --upstream 127.0.0.1:5000 \\
        [--seed 1] [--loss P] [--delay-ms D] [--jitter-ms J] [--reorder P] [--reorder-ms R]
        [--duplicate P] [--mtu N] [--blackhole] [--delay-first-n N] [--delay-first-ms D]
        [--rate-mbps R] [--queue-ms Q] [--stats-every S]
`python3 relay.py --control` is the child-process mode used by Relay(process=True): a
JSON config on the first line of stdin, then JSON commands line by line; it exits when
stdin closes.
"""

import base64
import collections
import heapq
import json
import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

PARAMS = ("loss", "delay_ms", "jitter_ms", "reorder", "reorder_ms", "duplicate", "mtu",
          "blackhole", "delay_first_n", "delay_first_ms", "rate_mbps", "queue_ms")
DEFAULTS = {"loss": 0.0, "delay_ms": 0, "jitter_ms": 0, "reorder": 0.0, "reorder_ms": 10,
            "duplicate": 0.0, "mtu": None, "blackhole": False, "delay_first_n": 0,
            "delay_first_ms": 0, "rate_mbps": None, "queue_ms": 200}
COUNTERS = ("received", "forwarded", "dropped", "dropped_loss", "dropped_mtu",
            "dropped_blackhole", "dropped_queue", "dropped_send", "duplicated", "reordered",
            "delayed_first", "bytes", "max_len", "dropped_remap")
SOCKBUF = 8 * 1024 * 1024
DRAIN_MAX = 512  # datagrams read from one socket per readiness event


def _family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _check_params(kw):
    for k in kw:
        if k not in PARAMS:
            raise ValueError("unknown relay parameter %r (known: %s)" % (k, ", ".join(PARAMS)))


def _bigbuf(s):
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            s.setsockopt(socket.SOL_SOCKET, opt, SOCKBUF)
        except OSError:
            pass


class _Dir:
    """Parameters, random stream, bottleneck state and counters of one direction."""

    def __init__(self, params, seed):
        self.p = dict(DEFAULTS)
        self.p.update(params)
        self.rng = random.Random(seed)
        self.c = dict.fromkeys(COUNTERS, 0)
        self.link_free = 0.0  # rate limit: when the bottleneck is free again
        self._derive()

    def _derive(self):
        p = self.p
        self.loss = float(p["loss"] or 0)
        self.delay = float(p["delay_ms"] or 0) / 1000.0
        self.jitter = float(p["jitter_ms"] or 0) / 1000.0
        self.reorder = float(p["reorder"] or 0)
        self.reorder_s = float(p["reorder_ms"] or 0) / 1000.0
        self.dup = float(p["duplicate"] or 0)
        self.mtu = int(p["mtu"]) if p["mtu"] else None
        self.blackhole = bool(p["blackhole"])
        self.first_n = int(p["delay_first_n"] or 0)
        self.first_s = float(p["delay_first_ms"] or 0) / 1000.0
        self.rate = float(p["rate_mbps"]) * 1e6 / 8.0 if p["rate_mbps"] else None
        self.queue_s = float(p["queue_ms"] or 0) / 1000.0
        # Fast path: nothing to do but forward.
        self.plain = not (self.loss or self.delay or self.jitter or self.reorder or self.dup
                          or self.mtu or self.blackhole or self.first_n or self.rate)

    def update(self, kw):
        self.p.update(kw)
        self._derive()


class _Session:
    __slots__ = ("client", "up", "n_up", "n_down", "idx", "epoch")

    def __init__(self, client, up, idx):
        self.client = client
        self.up = up
        self.idx = idx
        self.epoch = 0  # re-maps so far
        self.n_up = 0
        self.n_down = 0


class _Core:
    """The relay loop.  Runs in a thread (ctl = one end of a socketpair) or as the main
    loop of a child process (ctl = stdin, replies on stdout)."""

    def __init__(self, cfg, ctl_in, ctl_out):
        self.listen_host = cfg["listen_host"]
        self.upstream = (cfg["upstream"][0], int(cfg["upstream"][1]))
        seed = int(cfg.get("seed", 1))
        base = {k: cfg[k] for k in PARAMS if k in cfg}
        up = dict(base)
        up.update(cfg.get("up") or {})
        down = dict(base)
        down.update(cfg.get("down") or {})
        self.dirs = {"up": _Dir(up, seed * 2 + 1), "down": _Dir(down, seed * 2 + 2)}
        self.capture = int(cfg.get("capture", 0) or 0)
        self.cap = {d: {"first": [], "last": collections.deque(maxlen=max(1, self.capture))}
                    for d in ("up", "down")}
        self.sock = socket.socket(_family(self.listen_host), socket.SOCK_DGRAM)
        _bigbuf(self.sock)
        self.sock.bind((self.listen_host, int(cfg.get("listen_port", 0) or 0)))
        self.sock.setblocking(False)
        self.addr = self.sock.getsockname()[:2]
        self.sessions = {}
        self.order = []
        self.heap = []
        self.retired = []  # (seq of the re-map, old upstream socket) to close
        self.seq = 0
        self.ctl_in = ctl_in
        self.ctl_out = ctl_out
        self.ctl_buf = b""
        self.running = True
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.sock, selectors.EVENT_READ, None)
        self.sel.register(ctl_in, selectors.EVENT_READ, "ctl")

    # ---- datagram path
    def _session_for(self, client):
        s = self.sessions.get(client)
        if s is None:
            up = socket.socket(_family(self.upstream[0]), socket.SOCK_DGRAM)
            _bigbuf(up)
            up.connect(self.upstream)  # binds the address of the route to upstream
            up.setblocking(False)
            s = _Session(client, up, len(self.order))
            self.sessions[client] = s
            self.order.append(s)
            self.sel.register(up, selectors.EVENT_READ, s)
        return s

    def _remap(self, idx=None, upstream=None):
        """A NAT re-map at the client's end of the delay: the session(s) get a new
        upstream socket (a new source port as the server sees it); the old one is no
        longer read, so the server's datagrams to the old port go nowhere, nor do those
        still delayed in the relay (in flight to the old mapping); the client's delayed
        datagrams still leave from the old socket, which is closed after them.
        With upstream, the new socket (and every later session) goes there instead: a
        client hopping to another port of the server, as the server sees it."""
        if upstream is not None:
            self.upstream = (upstream[0], int(upstream[1]))
        out = []
        for s in (self.order if idx is None else [self.order[int(idx)]]):
            old = s.up
            old_port = old.getsockname()[1]
            up = socket.socket(_family(self.upstream[0]), socket.SOCK_DGRAM)
            _bigbuf(up)
            up.connect(self.upstream)
            up.setblocking(False)
            self.sel.unregister(old)  # what the server sends there is lost
            if self.heap:  # closed once the datagrams queued for it are sent
                self.retired.append((max(e[0] for e in self.heap), old))
            else:
                old.close()
            s.up = up
            s.epoch += 1
            self.sel.register(up, selectors.EVENT_READ, s)
            out.append({"client": list(s.client), "old_port": old_port,
                        "upstream_port": up.getsockname()[1]})
        return out

    def _capture(self, dname, data):
        cap = self.cap[dname]
        if len(cap["first"]) < self.capture:
            cap["first"].append(data)
        else:
            cap["last"].append(data)

    def _handle(self, d, dname, data, s, now):
        """Decide the fate of one datagram; send it now or schedule it."""
        c = d.c
        n = len(data)
        c["received"] += 1
        if n > c["max_len"]:
            c["max_len"] = n
        if self.capture:
            self._capture(dname, data)
        if dname == "up":
            s.n_up += 1
            nth = s.n_up
        else:
            s.n_down += 1
            nth = s.n_down
        if d.plain:
            self._send(d, dname, s, data, s.up, s.epoch)
            return
        if d.blackhole:
            c["dropped_blackhole"] += 1
            c["dropped"] += 1
            return
        if d.mtu is not None and n > d.mtu:
            c["dropped_mtu"] += 1
            c["dropped"] += 1
            return
        rng = d.rng
        if d.loss and rng.random() < d.loss:
            c["dropped_loss"] += 1
            c["dropped"] += 1
            return
        delay = d.delay
        if d.jitter:
            delay += rng.uniform(-d.jitter, d.jitter)
        if d.first_n and nth <= d.first_n:
            delay += d.first_s
            c["delayed_first"] += 1
        if d.reorder and rng.random() < d.reorder:
            delay += d.reorder_s
            c["reordered"] += 1
        if d.rate:
            start = d.link_free if d.link_free > now else now
            if start - now > d.queue_s:
                c["dropped_queue"] += 1
                c["dropped"] += 1
                return
            d.link_free = start + n / d.rate
            delay += d.link_free - now
        copies = 1
        if d.dup and rng.random() < d.dup:
            copies = 2
            c["duplicated"] += 1
        if delay <= 0 and not self.heap:
            for _ in range(copies):
                self._send(d, dname, s, data, s.up, s.epoch)
            return
        due = now + (delay if delay > 0 else 0.0)
        for i in range(copies):
            self.seq += 1
            heapq.heappush(self.heap, (due + i * 1e-5, self.seq, dname, s, data, s.up, s.epoch))

    def _send(self, d, dname, s, data, up, epoch):
        """up, epoch: the session's socket and re-map count when the datagram entered
        the relay.  A re-map happens at the client's end of the delay: datagrams the
        client sent before it still reach the server from the old port; datagrams the
        server sent before it were in flight to the old mapping and are lost."""
        c = d.c
        if dname == "down" and epoch != s.epoch:
            c["dropped_remap"] += 1
            c["dropped"] += 1
            return
        try:
            if dname == "up":
                up.send(data)
            else:
                self.sock.sendto(data, s.client)
        except (BlockingIOError, InterruptedError):
            c["dropped_send"] += 1
            c["dropped"] += 1
            return
        except OSError:
            # e.g. ECONNREFUSED from an ICMP error of an earlier datagram: the datagram
            # is gone, like on a real path.
            c["dropped_send"] += 1
            c["dropped"] += 1
            return
        c["forwarded"] += 1
        c["bytes"] += len(data)

    def _flush_due(self, now):
        heap = self.heap
        dirs = self.dirs
        while heap and heap[0][0] <= now:
            _due, _seq, dname, s, data, up, epoch = heapq.heappop(heap)
            self._send(dirs[dname], dname, s, data, up, epoch)
        while self.retired and (not heap or self.retired[0][0] < heap[0][0]):
            # no datagram of the old socket is waiting any more
            _seq, sock = self.retired.pop(0)
            sock.close()

    def _read_listen(self):
        d = self.dirs["up"]
        sock = self.sock
        now = time.monotonic()
        for _ in range(DRAIN_MAX):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            self._handle(d, "up", data, self._session_for(addr[:2]), now)

    def _read_up(self, s):
        d = self.dirs["down"]
        now = time.monotonic()
        for _ in range(DRAIN_MAX):
            try:
                data = s.up.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # ECONNREFUSED (server not there): ignore
            self._handle(d, "down", data, s, now)

    # ---- control channel
    def _reply(self, obj):
        line = (json.dumps(obj) + "\n").encode()
        if isinstance(self.ctl_out, socket.socket):
            self.ctl_out.setblocking(True)
            self.ctl_out.sendall(line)
            self.ctl_out.setblocking(False)
        else:
            os.write(self.ctl_out, line)

    def _stats(self):
        out = {k: dict(v.c) for k, v in self.dirs.items()}
        out["sessions"] = len(self.order)
        out["queued"] = len(self.heap)
        return out

    def _command(self, cmd):
        op = cmd.get("op")
        try:
            if op == "set":
                kw = cmd.get("params", {})
                _check_params(kw)
                dirs = ("up", "down") if cmd.get("direction", "both") == "both" else (cmd["direction"],)
                for dn in dirs:
                    self.dirs[dn].update(kw)
                return {"ok": True}
            if op == "stats":
                return {"ok": True, "stats": self._stats()}
            if op == "addr":
                return {"ok": True, "addr": list(self.addr)}
            if op == "sessions":
                return {"ok": True, "sessions": [
                    {"client": list(s.client), "upstream_port": s.up.getsockname()[1]} for s in self.order]}
            if op == "captured":
                cap = self.cap[cmd.get("direction", "up")]
                enc = lambda lst: [base64.b64encode(x).decode() for x in lst]  # noqa: E731
                return {"ok": True, "first": enc(cap["first"]), "last": enc(list(cap["last"]))}
            if op == "inject":
                data = base64.b64decode(cmd["data"])
                idx = int(cmd.get("session", 0))
                if idx >= len(self.order):
                    return {"ok": False, "error": "no session %d" % idx}
                s = self.order[idx]
                try:
                    if cmd.get("direction", "up") == "up":
                        s.up.send(data)
                    else:
                        self.sock.sendto(data, s.client)
                except OSError as e:
                    return {"ok": False, "error": repr(e)}
                return {"ok": True}
            if op == "remap":
                return {"ok": True, "remapped": self._remap(cmd.get("session"), cmd.get("upstream"))}
            if op == "close":
                self.running = False
                return {"ok": True}
            return {"ok": False, "error": "unknown op %r" % op}
        except Exception as e:  # a bad command must not kill the relay
            return {"ok": False, "error": "%s: %s" % (e.__class__.__name__, e)}

    def _read_ctl(self):
        try:
            if isinstance(self.ctl_in, socket.socket):
                chunk = self.ctl_in.recv(65536)
            else:
                chunk = os.read(self.ctl_in, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.running = False  # the controller went away
            return
        self.ctl_buf += chunk
        while b"\n" in self.ctl_buf:
            line, self.ctl_buf = self.ctl_buf.split(b"\n", 1)
            if line.strip():
                self._reply(self._command(json.loads(line)))

    # ---- loop
    def run(self):
        sel = self.sel
        try:
            while self.running:
                if self.heap:
                    timeout = max(0.0, self.heap[0][0] - time.monotonic())
                else:
                    timeout = 0.5
                for key, _ev in sel.select(timeout):
                    data = key.data
                    if data is None:
                        self._read_listen()
                    elif data == "ctl":
                        self._read_ctl()
                    else:
                        self._read_up(data)
                if self.heap:
                    self._flush_due(time.monotonic())
        finally:
            self.shutdown()

    def shutdown(self):
        try:
            self.sel.close()
        except Exception:
            pass
        for sock in [s.up for s in self.order] + [x[1] for x in self.retired]:
            try:
                sock.close()
            except OSError:
                pass
        try:
            self.sock.close()
        except OSError:
            pass


def _child_setup():
    # Die with the parent (PR_SET_PDEATHSIG), in case stdin EOF is not seen.
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


class Relay:
    """See the module docstring."""

    def __init__(self, listen_host="127.0.0.1", upstream=None, seed=1, loss=0.0, delay_ms=0,
                 jitter_ms=0, reorder=0.0, duplicate=0.0, mtu=None, blackhole=False,
                 delay_first_n=0, delay_first_ms=0, *, listen_port=0, reorder_ms=10,
                 rate_mbps=None, queue_ms=200, up=None, down=None, capture=0, process=False):
        if upstream is None:
            raise ValueError("upstream=(host, port) is required")
        for ov in (up, down):
            if ov:
                _check_params(ov)
        cfg = {"listen_host": listen_host, "listen_port": listen_port,
               "upstream": [upstream[0], int(upstream[1])], "seed": seed, "loss": loss,
               "delay_ms": delay_ms, "jitter_ms": jitter_ms, "reorder": reorder,
               "reorder_ms": reorder_ms, "duplicate": duplicate, "mtu": mtu,
               "blackhole": blackhole, "delay_first_n": delay_first_n,
               "delay_first_ms": delay_first_ms, "rate_mbps": rate_mbps, "queue_ms": queue_ms,
               "up": up or {}, "down": down or {}, "capture": capture}
        self._lock = threading.Lock()
        self._closed = False
        self._buf = b""
        self.process = bool(process)
        if self.process:
            self._proc = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--control"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
                preexec_fn=_child_setup, close_fds=True)
            self.pid = self._proc.pid
            self._proc.stdin.write((json.dumps(cfg) + "\n").encode())
            self._proc.stdin.flush()
            first = self._readline(timeout=10)
            hello = json.loads(first)
            if not hello.get("ok"):
                self._proc.kill()
                self._proc.wait(5)
                raise OSError("relay child failed: %s" % hello.get("error"))
            self.addr = (hello["addr"][0], hello["addr"][1])
            self._thread = None
        else:
            self._proc = None
            self.pid = os.getpid()
            a, b = socket.socketpair()
            self._ctl = a
            b.setblocking(False)
            self._core = _Core(cfg, b, b)
            self._core_sock = b
            self.addr = tuple(self._core.addr)
            self._thread = threading.Thread(target=self._core.run, name="relay", daemon=True)
            self._thread.start()

    # ---- control plumbing
    def _readline(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("relay did not answer within %.0fs" % timeout)
            if self._proc is not None:
                import select
                r, _, _ = select.select([self._proc.stdout], [], [], left)
                if not r:
                    continue
                chunk = os.read(self._proc.stdout.fileno(), 1 << 20)
            else:
                self._ctl.settimeout(left)
                try:
                    chunk = self._ctl.recv(1 << 20)
                except socket.timeout:
                    continue
            if not chunk:
                raise OSError("relay control channel closed")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def _call(self, obj, timeout=10.0):
        with self._lock:
            if self._closed:
                raise OSError("relay is closed")
            line = (json.dumps(obj) + "\n").encode()
            if self._proc is not None:
                self._proc.stdin.write(line)
                self._proc.stdin.flush()
            else:
                self._ctl.sendall(line)
            rep = json.loads(self._readline(timeout))
        if not rep.get("ok"):
            raise ValueError("relay: %s" % rep.get("error"))
        return rep

    # ---- API
    def set(self, direction="both", **kw):
        """Change parameters while running, for "both" directions or "up"/"down"."""
        if direction not in ("both", "up", "down"):
            raise ValueError("direction must be both, up or down")
        _check_params(kw)
        self._call({"op": "set", "direction": direction, "params": kw})

    @property
    def stats(self):
        return self._call({"op": "stats"})["stats"]

    def sessions(self):
        return [{"client": tuple(s["client"]), "upstream_port": s["upstream_port"]}
                for s in self._call({"op": "sessions"})["sessions"]]

    def remap(self, session=None, upstream=None):
        """NAT re-map of one session (its index) or of all: see the module docstring."""
        cmd = {"op": "remap", "session": session}
        if upstream is not None:
            cmd["upstream"] = [upstream[0], int(upstream[1])]
        return [{"client": tuple(x["client"]), "old_port": x["old_port"],
                 "upstream_port": x["upstream_port"]}
                for x in self._call(cmd)["remapped"]]

    def captured(self, direction="up"):
        rep = self._call({"op": "captured", "direction": direction})
        return {"first": [base64.b64decode(x) for x in rep["first"]],
                "last": [base64.b64decode(x) for x in rep["last"]]}

    def inject(self, data, direction="up", session=0):
        self._call({"op": "inject", "direction": direction, "session": session,
                    "data": base64.b64encode(bytes(data)).decode()})

    def close(self):
        if self._closed:
            return
        try:
            self._call({"op": "close"}, timeout=5)
        except Exception:
            pass
        self._closed = True
        if self._proc is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
            try:
                self._proc.stdout.close()
            except OSError:
                pass
        else:
            self._thread.join(5)
            for s in (self._ctl, self._core_sock):
                try:
                    s.close()
                except OSError:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def __del__(self):
        try:
            if not self._closed and self._proc is not None:
                self._proc.kill()
        except Exception:
            pass


def format_stats(st):
    """One line per direction, for test output."""
    out = []
    for dn in ("up", "down"):
        c = st[dn]
        out.append("%s: %d recv, %d fwd, %d dropped (loss %d, mtu %d, blackhole %d, queue %d, send %d), "
                   "%d dup, %d reordered, max %d B" % (
                       dn, c["received"], c["forwarded"], c["dropped"], c["dropped_loss"], c["dropped_mtu"],
                       c["dropped_blackhole"], c["dropped_queue"], c["dropped_send"], c["duplicated"],
                       c["reordered"], c["max_len"]))
    return "; ".join(out)


# --------------------------------------------------------------------------- command line

def _split(hp):
    host, _, port = hp.rpartition(":")
    return host.strip("[]"), int(port)


def _control_main():
    fd_in = sys.stdin.fileno()
    fd_out = sys.stdout.fileno()
    # The first line is the configuration.
    buf = b""
    while b"\n" not in buf:
        chunk = os.read(fd_in, 65536)
        if not chunk:
            return 1
        buf += chunk
    line, rest = buf.split(b"\n", 1)
    try:
        core = _Core(json.loads(line), fd_in, fd_out)
    except Exception as e:
        os.write(fd_out, (json.dumps({"ok": False, "error": "%s: %s" % (e.__class__.__name__, e)}) + "\n").encode())
        return 1
    os.set_blocking(fd_in, False)
    core.ctl_buf = rest
    signal.signal(signal.SIGTERM, lambda *a: setattr(core, "running", False))
    os.write(fd_out, (json.dumps({"ok": True, "addr": list(core.addr)}) + "\n").encode())
    if rest:
        while b"\n" in core.ctl_buf:
            ln, core.ctl_buf = core.ctl_buf.split(b"\n", 1)
            if ln.strip():
                core._reply(core._command(json.loads(ln)))
    core.run()
    return 0


def _cli_main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="UDP impairment relay (see the module docstring)")
    ap.add_argument("--listen", required=True, help="HOST:PORT to receive client datagrams on")
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the server")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--loss", type=float, default=0.0)
    ap.add_argument("--delay-ms", type=float, default=0)
    ap.add_argument("--jitter-ms", type=float, default=0)
    ap.add_argument("--reorder", type=float, default=0.0)
    ap.add_argument("--reorder-ms", type=float, default=10)
    ap.add_argument("--duplicate", type=float, default=0.0)
    ap.add_argument("--mtu", type=int, default=None)
    ap.add_argument("--blackhole", action="store_true")
    ap.add_argument("--delay-first-n", type=int, default=0)
    ap.add_argument("--delay-first-ms", type=float, default=0)
    ap.add_argument("--rate-mbps", type=float, default=None)
    ap.add_argument("--queue-ms", type=float, default=200)
    ap.add_argument("--stats-every", type=float, default=0, help="print stats every S seconds")
    a = ap.parse_args(argv)
    lh, lp = _split(a.listen)
    r = Relay(lh, upstream=_split(a.upstream), seed=a.seed, loss=a.loss, delay_ms=a.delay_ms,
              jitter_ms=a.jitter_ms, reorder=a.reorder, duplicate=a.duplicate, mtu=a.mtu,
              blackhole=a.blackhole, delay_first_n=a.delay_first_n, delay_first_ms=a.delay_first_ms,
              listen_port=lp, reorder_ms=a.reorder_ms, rate_mbps=a.rate_mbps, queue_ms=a.queue_ms)
    print("relay listening on %s:%d -> %s" % (r.addr[0], r.addr[1], a.upstream), flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *x: stop.set())
    try:
        while not stop.wait(a.stats_every or 3600):
            if a.stats_every:
                print(format_stats(r.stats), flush=True)
    finally:
        print(format_stats(r.stats), flush=True)
        r.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--control":
        sys.exit(_control_main())
    sys.exit(_cli_main(sys.argv[1:]))
