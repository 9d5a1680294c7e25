#!/usr/bin/env python3
"""What a NAT re-map costs a quicmux server's session: the pause in the data and the
bytes sent again.

    python3 bench/rebind.py [--quicmux PATH] [--clients quicmux,v2ray] [--samples 3]
                            [--remaps 4] [--every 1.5] [--delay-ms 20] [--rate-mbps 40]
                            [--out FILE]

Per client kind and sample: an echo-less *source* target (sends seeded bytes as fast as
the tunnel takes them), a quicmux server with --qlog-dir, the client (quicmux or
Debian's v2ray 4.34), and between them tests/e2e/relay.py as the NAT, with --delay-ms
each way (RTT = 2 x delay) and a --rate-mbps bottleneck (queue 200 ms).  One TCP
connection downloads through the tunnel; after 2.5 s of warm-up the relay re-maps the
client's port (new source port, old socket closed) --remaps times, --every seconds apart.

  pause     the longest gap between two reads of the download that starts from the re-map
            to 1.5 s after it, in ms (measured in full); "quiet" is the same measure for
            the 1.5 s before the first re-map (what the path does anyway).  A download's
            client sends only ACKs: when it has acknowledged everything that reached it
            before the re-map, it stays silent, the server cannot reach it (its packets
            go to the old mapping) and the pause lasts until the client sends again
            (quicmux client: its keep-alive PING after 5 s of silence).
  resent    STREAM bytes the server sent again (offset below what it had already sent
            on that stream), from its qlog, in the window of each re-map; "quiet" as
            above.  The server is the only sender that loses anything: the client's
            packets reach the server through the new socket at once, the server's in
            flight to the old port are lost.

The download is checked byte-exact.  Medians over all re-maps of all samples.  Timings
need a quiet machine: run nothing else meanwhile (and quote the load average printed).
Loopback only; every process is started and stopped by PID (tests/e2e/qmtest.py).
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import qmtest as qm  # noqa: E402
from relay import Relay  # noqa: E402

SEC, KEY, HDR = "aes-128-gcm", "rebind-bench", "srtp"
WINDOW = 1.5
WARMUP = 2.5


class Source:
    """TCP target: every connection gets `nbytes` seeded bytes, then EOF."""

    def __init__(self, nbytes, seed=5):
        self.data = qm.seeded_bytes(seed, nbytes)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.addr = self.sock.getsockname()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._send, args=(c,), daemon=True).start()

    def _send(self, c):
        try:
            c.sendall(self.data)
            c.shutdown(socket.SHUT_WR)
            c.settimeout(5)
            c.recv(1)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.sock.close()


def qlog_resent(path):
    """[(seconds since the qlog's start, bytes sent again)] from a server qlog, and the
    qlog's start as a UTC timestamp (from its file name)."""
    name = os.path.basename(path)
    start = datetime.strptime(name.split("-")[0], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
    sent_to = {}
    out = []
    with open(path, "rb") as f:
        for rec in f.read().split(b"\x1e"):
            if b'"transport:packet_sent"' not in rec:
                continue
            try:
                ev = json.loads(rec)
            except ValueError:
                continue
            again = 0
            for fr in ev.get("data", {}).get("frames", []):
                if fr.get("frame_type") != "stream":
                    continue
                sid, off, ln = fr["stream_id"], fr.get("offset", 0), fr.get("length", 0)
                top = sent_to.get(sid, 0)
                if off < top:
                    again += min(ln, top - off)
                sent_to[sid] = max(top, off + ln)
            if again:
                out.append((ev["time"] / 1000.0, again))
    return start, out


def one_sample(root, client, args, seed):
    c = qm.Case("rebind.%s.%d" % (client, seed), root)
    qdir = os.path.join(c.dir, "qlog")
    os.makedirs(qdir)
    try:
        dur = WARMUP + args.remaps * args.every + WINDOW + 1.0
        nbytes = int(args.rate_mbps * 1e6 / 8 * 0.9 * dur)
        src = Source(nbytes, seed)
        c.on_close(src.close)
        sp, saddr = c.qm_server(src.addr, security=SEC, key=KEY, header=HDR,
                                extra=("--qlog-dir", qdir), log_level="info")
        relay = Relay("127.0.0.1", upstream=saddr, delay_ms=args.delay_ms, rate_mbps=args.rate_mbps,
                      process=True, seed=seed)
        c.on_close(relay.close)
        if client == "quicmux":
            _cp, caddr = c.qm_client(relay.addr, security=SEC, key=KEY, header=HDR)
        else:
            _cp, caddr = c.v2ray_client(relay.addr, security=SEC, key=KEY, header=HDR, target=src.addr)
        s = socket.create_connection(caddr, timeout=10)
        s.sendall(b"g")  # quic-go opens a stream on the wire only when it has data
        s.settimeout(1.0)
        reads = []  # (wall time, bytes so far)
        got = bytearray()
        remaps = []
        t0 = time.time()
        nxt = t0 + WARMUP
        deadline = t0 + dur + 30
        while time.time() < deadline:
            if len(remaps) < args.remaps and time.time() >= nxt:
                relay.remap()
                remaps.append(time.time())
                nxt += args.every
            try:
                d = s.recv(262144)
            except socket.timeout:
                continue
            if not d:
                break
            got += d
            reads.append((time.time(), len(got)))
        s.close()
        ok = bytes(got) == src.data
        time.sleep(0.3)
        sp.stop()
        qfiles = [os.path.join(qdir, f) for f in os.listdir(qdir) if "-server-" in f]
        qstart, resent = qlog_resent(qfiles[0]) if len(qfiles) == 1 else (None, [])

        def pause(a, b):
            """The longest gap between reads that starts from a to b, measured in full
            (up to the end of the download)."""
            a = max(a, reads[0][0]) if reads else a
            ts = [a] + [t for t, _n in reads if t > a]
            gaps = [y - x for x, y in zip(ts, ts[1:]) if x <= b]
            return max(gaps or [0.0]) * 1000.0

        def resent_in(a, b):
            if qstart is None:
                return None
            return sum(n for t, n in resent if a <= qstart + t <= b)
        first = remaps[0] if remaps else t0 + WARMUP
        quiet = (pause(first - WINDOW, first), resent_in(first - WINDOW, first))
        per = [(pause(t, t + WINDOW), resent_in(t, t + WINDOW)) for t in remaps]
        return {"ok": ok, "bytes": len(got), "want": nbytes, "remaps": len(remaps),
                "quiet": quiet, "per": per, "moved": sum(1 for ln in open(sp.log_path, errors="replace")
                                                        if "peer moved from" in ln)}
    finally:
        c.close()
        if not args.keep:
            shutil.rmtree(c.dir, ignore_errors=True)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quicmux", default=None, help="quicmux binary (default $QUICMUX_BIN or build/quicmux)")
    ap.add_argument("--clients", default="quicmux,v2ray")
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--remaps", type=int, default=4)
    ap.add_argument("--every", type=float, default=1.5, help="seconds between re-maps")
    ap.add_argument("--delay-ms", type=float, default=20, help="one-way delay of the relay")
    ap.add_argument("--rate-mbps", type=float, default=40, help="bottleneck rate of the relay")
    ap.add_argument("--keep", action="store_true", help="keep logs and qlogs")
    ap.add_argument("--out", default=None, help="also write the table (markdown) to this file")
    args = ap.parse_args()
    if args.quicmux:
        os.environ["QUICMUX_BIN"] = os.path.abspath(args.quicmux)
    qm.install_signal_handlers()
    root = tempfile.mkdtemp(prefix="rebind-bench.")
    print("# load average before: %s" % open("/proc/loadavg").read().split()[:3], flush=True)
    rows = ["| client | re-maps | pause ms (median, max) | quiet pause ms | resent bytes per re-map (median, max) | quiet resent | byte-exact |",
            "|---|---|---|---|---|---|---|"]
    try:
        for client in args.clients.split(","):
            if client == "v2ray" and not qm.have_v2ray():
                print("# v2ray not installed: skipped", flush=True)
                continue
            res = [one_sample(root, client, args, 11 + i) for i in range(args.samples)]
            per = [p for r in res for p in r["per"]]
            quiet = [r["quiet"] for r in res]
            rows.append("| %s | %d | %.0f, %.0f | %.0f | %.0f, %.0f | %.0f | %s |" % (
                client, len(per), med([p for p, _ in per]), max(p for p, _ in per),
                med([q for q, _ in quiet]), med([b for _, b in per]),
                max((b or 0) for _, b in per), med([b for _, b in quiet]),
                "yes" if all(r["ok"] for r in res) else "NO (%s)" % [(r["bytes"], r["want"]) for r in res]))
            for r in res:
                print("# %s: %d re-maps, %d 'peer moved' lines, per re-map (pause ms, resent B): %s; quiet %s" % (
                    client, r["remaps"], r["moved"], [(round(p), b) for p, b in r["per"]],
                    (round(r["quiet"][0]), r["quiet"][1])), flush=True)
    finally:
        qm._kill_all_live()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print("# load average after: %s" % open("/proc/loadavg").read().split()[:3])
    print("# relay: %g ms each way, %g Mbit/s; re-map every %g s" % (args.delay_ms, args.rate_mbps, args.every))
    print("\n".join(rows))
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
