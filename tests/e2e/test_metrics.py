#!/usr/bin/env python3
"""The Prometheus metrics endpoint (--metrics HOST:PORT), on loopback:

- a non-loopback address is refused unless --metrics-public (flags, JSON, plugin);
- promtool check metrics passes on the live endpoint of a client and a server that
  carried a byte-exact transfer, and the numbers match the traffic;
- HTTP edges: 404 for other paths, 405 (Allow: GET) for other methods, 400 for
  garbage, 431 for an oversized head;
- a real Prometheus server (Debian's package) scrapes the client and a query through
  its HTTP API returns the expected series with a plausible value;
- a flood of bad HTTP clients (garbage, oversized, slow, too many) while a tunnel
  carries a byte-exact transfer: the endpoint stays up, its connections stay at or
  below 16, the slow ones are timed out and the tunnel is unharmed.

promtool / prometheus missing -> those cases SKIP (scripts/deps.sh --test installs
them)."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402

MAX_CONNS = 16  # METRICS_MAX_CONNS in apps/quicmux/metrics.h
NBYTES = 24 * 1024 * 1024  # per connection of the transfer under the flood
SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


# ---------------------------------------------------------------- helpers

def http(port, raw, timeout=5.0):
    """Send raw bytes, read until the server closes; (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not d:
                break
            buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3}) ", lines[0] if lines else "")
    qm.check(m, "no HTTP status line in the answer to %r: %r" % (raw[:60], buf[:200]))
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(m.group(1)), headers, body


def scrape(port):
    status, headers, body = http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    qm.check(status == 200, "GET /metrics: status %d" % status)
    qm.check(headers.get("content-type", "").startswith("text/plain; version=0.0.4"),
             "Content-Type %r, expected text/plain; version=0.0.4" % headers.get("content-type"))
    qm.check(int(headers.get("content-length", -1)) == len(body),
             "Content-Length %s but %d bytes of body" % (headers.get("content-length"), len(body)))
    return body.decode()


def parse(text):
    """[(name, {labels}, value)] of a text exposition."""
    out = []
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        m = SAMPLE_RE.match(ln)
        qm.check(m, "unparseable sample line %r" % ln)
        labels = dict(LABEL_RE.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def value(samples, name, **labels):
    """Sum of the samples of name whose labels include `labels`; None if there is none."""
    vals = [v for n, lb, v in samples if n == name and all(lb.get(k) == x for k, x in labels.items())]
    return sum(vals) if vals else None


def promtool_check(text, what):
    if not shutil.which("promtool"):
        raise qm.Skip("promtool not installed (Debian package prometheus; scripts/deps.sh --test)")
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=30)
    out = (p.stdout + p.stderr).decode(errors="replace").strip()
    qm.check(p.returncode == 0 and not out,
             "promtool check metrics on the %s's endpoint: exit %d: %s" % (what, p.returncode, out[:600]))


def metrics_tunnel(c, security="aes-128-gcm", key="metrics-key", extra_client=(), extra_server=()):
    """echo target, server and client, each end with its own metrics port."""
    cport, sport = qm.free_tcp_port(), qm.free_tcp_port()
    e = c.echo_server()
    sp, saddr = c.qm_server(e.addr, security=security, key=key,
                            extra=["--metrics", "127.0.0.1:%d" % sport, "--tag", "srv"] + list(extra_server))
    cp, caddr = c.qm_client(saddr, security=security, key=key,
                            extra=["--metrics", "127.0.0.1:%d" % cport, "--tag", "cli"] + list(extra_client))
    qm.wait_tcp_listen(sport, pid=sp.pid, timeout=10, proc=sp)
    qm.wait_tcp_listen(cport, pid=cp.pid, timeout=10, proc=cp)
    return {"addr": caddr, "client": cp, "server": sp, "cport": cport, "sport": sport, "saddr": saddr}


def metrics_conns(pid, port):
    """TCP connections (not the listener) of pid on local port `port`: distinct inodes,
    as /proc/net/tcp read while connections come and go can list one twice."""
    inodes = qm.socket_inodes(pid)
    return len({ino for p, st, ino in qm.tcp_rows(pid) if p == port and st != "0A" and ino in inodes})


# ---------------------------------------------------------------- cases

def case_refuse_public(c):
    qm.require_quicmux()
    q = qm.quicmux_bin()
    base = ["server", "--listen", "127.0.0.1:%d" % qm.free_udp_port(), "--target", "127.0.0.1:9"]
    rc, out, err, _ = qm.run_cmd([q] + base + ["--metrics", "0.0.0.0:%d" % qm.free_tcp_port()], timeout=5)
    qm.check(rc == 2, "--metrics 0.0.0.0: exit %s, expected 2 (%r)" % (rc, err))
    qm.check("--metrics-public" in err and "loopback" in err,
             "the refusal does not name --metrics-public and loopback: %r" % err)
    rc, out, err, _ = qm.run_cmd([q] + base + ["--metrics", "0.0.0.0:%d" % qm.free_tcp_port(),
                                               "--metrics-public", "--check"], timeout=5)
    qm.check(rc == 0, "--metrics 0.0.0.0 --metrics-public --check: exit %s (%r)" % (rc, err))
    rc, out, err, _ = qm.run_cmd([q] + base + ["--metrics", "127.0.0.1:0"], timeout=5)
    qm.check(rc == 2 and "--metrics" in err and "port" in err, "port 0: exit %s %r" % (rc, err))
    # JSON config: names the key to set
    cfg = {"metrics": {"listen": "0.0.0.0:%d" % qm.free_tcp_port()},
           "tunnels": [{"role": "server", "listen": "127.0.0.1:%d" % qm.free_udp_port(),
                        "target": "127.0.0.1:9", "streamSettings": {"network": "quic"}}]}
    path = c.write_file("c.json", json.dumps(cfg))
    rc, out, err, _ = qm.run_cmd([q, "-c", path, "--check"], timeout=5)
    qm.check(rc == 2 and "metrics.public" in err, "JSON metrics.listen 0.0.0.0: exit %s %r" % (rc, err))
    cfg["metrics"]["public"] = True
    path = c.write_file("c2.json", json.dumps(cfg))
    rc, out, err, _ = qm.run_cmd([q, "-c", path, "--check"], timeout=5)
    qm.check(rc == 0, "JSON metrics.public true: exit %s %r" % (rc, err))
    cfg["metrics"]["port"] = 1
    path = c.write_file("c3.json", json.dumps(cfg))
    rc, out, err, _ = qm.run_cmd([q, "-c", path, "--check"], timeout=5)
    qm.check(rc == 2 and "metrics.port" in err and "listen, public" in err,
             "JSON unknown metrics key: exit %s %r" % (rc, err))
    # plugin option
    rc, out, err, _ = qm.run_cmd([q, "plugin", "-localAddr", "127.0.0.1", "-localPort", str(qm.free_tcp_port()),
                                  "-remoteAddr", "127.0.0.1", "-remotePort", "9",
                                  "-metrics", "0.0.0.0:%d" % qm.free_tcp_port(), "--check"], timeout=5)
    qm.check(rc == 2 and "-metricsPublic" in err, "plugin -metrics 0.0.0.0: exit %s %r" % (rc, err))
    return "refused with a line naming the option; allowed with it"


def case_promtool(c):
    if not shutil.which("promtool"):
        raise qm.Skip("promtool not installed (Debian package prometheus; scripts/deps.sh --test)")
    t = metrics_tunnel(c)
    conns, nbytes = 6, 2 * qm.MiB
    qm.check_transfer(t["addr"], conns=conns, nbytes=nbytes, timeout=60).raise_if_failed()
    ctext, stext = scrape(t["cport"]), scrape(t["sport"])
    promtool_check(ctext, "client")
    promtool_check(stext, "server")
    cs, ss = parse(ctext), parse(stext)
    total = conns * nbytes
    up = value(cs, "quicmux_tunnel_bytes_total", tunnel="cli", role="client", direction="up")
    down = value(ss, "quicmux_tunnel_bytes_total", tunnel="srv", role="server", direction="down")
    qm.check(up == total, "client bytes up %s, expected %d" % (up, total))
    qm.check(down == total, "server bytes down %s, expected %d" % (down, total))
    qm.check(value(cs, "quicmux_connections_total", tunnel="cli") == conns,
             "client connections_total %s" % value(cs, "quicmux_connections_total"))
    qm.check(value(ss, "quicmux_streams_opened_total", tunnel="srv") >= conns,
             "server streams_opened_total %s" % value(ss, "quicmux_streams_opened_total"))
    qm.check(value(ss, "quicmux_sessions_opened_total", tunnel="srv") >= 1, "server opened no session")
    qm.check(value(cs, "quicmux_sessions", state="established") >= 1, "client has no established session")
    for side, s in (("client", cs), ("server", ss)):
        rx = value(s, "quicmux_udp_bytes_total", direction="received")
        tx = value(s, "quicmux_udp_bytes_total", direction="sent")
        qm.check(rx > total and tx > total, "%s UDP bytes rx %s tx %s, expected > %d" % (side, rx, tx, total))
        rtt = value(s, "quicmux_session_rtt_seconds")
        qm.check(rtt is not None and 0 < rtt < 1.0, "%s session RTT %s s" % (side, rtt))
        cwnd = value(s, "quicmux_session_cwnd_bytes")
        qm.check(cwnd and cwnd >= 2 * 1200, "%s congestion window %s" % (side, cwnd))
        qm.check(value(s, "quicmux_bad_datagrams_total") == 0, "%s counted bad datagrams" % side)
    # a wrong key counts as bad datagrams (kind auth) on the server
    bad = c.qm_client(t["saddr"], security="aes-128-gcm", key="not-the-key", name="wrong-key-client")[1]
    qm.probe_no_data(bad, wait=1.0)
    qm.wait_until(lambda: (value(parse(scrape(t["sport"])), "quicmux_bad_datagrams_total", kind="auth") or 0) > 0,
                  10, "bad_datagrams_total{kind=auth} > 0 on the server")
    return "promtool clean on both ends; %d bytes each way, RTT %.2f ms" % (total, rtt * 1000)


def case_http_edges(c):
    port = qm.free_tcp_port()
    e = c.echo_server()
    sp, _ = c.qm_server(e.addr, extra=["--metrics", "127.0.0.1:%d" % port])
    qm.wait_tcp_listen(port, pid=sp.pid, timeout=10, proc=sp)
    cases = [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 404, None),
        (b"GET /metricsx HTTP/1.1\r\n\r\n", 404, None),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405, "GET"),
        (b"HEAD /metrics HTTP/1.1\r\n\r\n", 405, "GET"),
        (b"DELETE /metrics HTTP/1.0\r\n\r\n", 405, "GET"),
        (b"\x16\x03\x01garbage\r\n\r\n", 400, None),
        (b"GET /metrics SPDY/3\r\n\r\n", 400, None),
        (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431, None),
        (b"GET /metrics?name=x HTTP/1.0\n\n", 200, None),
    ]
    for raw, want, allow in cases:
        status, headers, _ = http(port, raw)
        qm.check(status == want, "%r...: status %d, expected %d" % (raw[:30], status, want))
        if allow:
            qm.check(headers.get("allow") == allow, "%r...: Allow %r" % (raw[:30], headers.get("allow")))
        qm.check(headers.get("connection") == "close", "%r...: no Connection: close" % raw[:30])
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        qm.check(r.status == 200 and b"quicmux_build_info" in r.read(), "urllib GET /metrics")
    s = parse(scrape(port))
    qm.check(value(s, "quicmux_metrics_requests_total", code="404") == 2, "404 count")
    qm.check(value(s, "quicmux_metrics_requests_total", code="405") == 3, "405 count")
    qm.check(value(s, "quicmux_metrics_requests_total", code="4xx") == 3, "400/431 count")
    qm.check(sp.alive(), "server died")
    return "%d requests answered as expected" % len(cases)


def case_prometheus(c):
    prom = shutil.which("prometheus")
    if not prom:
        raise qm.Skip("prometheus not installed (Debian package prometheus; scripts/deps.sh --test)")
    t = metrics_tunnel(c)
    conns, nbytes = 4, qm.MiB
    qm.check_transfer(t["addr"], conns=conns, nbytes=nbytes, timeout=60).raise_if_failed()
    web = qm.free_tcp_port()
    cfg = c.write_file("prometheus.yml", (
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: quicmux\n    static_configs:\n"
        "      - targets: ['127.0.0.1:%d', '127.0.0.1:%d']\n" % (t["cport"], t["sport"])))
    data = os.path.join(c.dir, "tsdb")
    p = c.spawn([prom, "--config.file=" + cfg, "--storage.tsdb.path=" + data,
                 "--web.listen-address=127.0.0.1:%d" % web, "--log.level=warn"], "prometheus")
    qm.wait_tcp_listen(web, pid=p.pid, timeout=30, proc=p)

    def query(q):
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (web, urllib.parse.urlencode({"query": q}))
        with urllib.request.urlopen(url, timeout=5) as r:
            doc = json.load(r)
        qm.check(doc.get("status") == "success", "query %s: %r" % (q, doc))
        return doc["data"]["result"]

    found = {}

    def scraped():
        found["up"] = query('up{job="quicmux"} == 1')
        found["bytes"] = query('quicmux_tunnel_bytes_total{role="client",direction="up"}')
        found["rtt"] = query('max by (role) (quicmux_session_rtt_seconds)')
        return len(found["up"]) == 2 and found["bytes"] and len(found["rtt"]) == 2
    qm.wait_until(scraped, 45, "Prometheus to scrape both endpoints", interval=0.5, proc=p)
    b = found["bytes"][0]
    qm.check(b["metric"].get("tunnel") == "cli" and b["metric"].get("job") == "quicmux",
             "series labels %r" % b["metric"])
    v = float(b["value"][1])
    qm.check(v == conns * nbytes, "Prometheus has %s bytes up, expected %d" % (v, conns * nbytes))
    rtts = {r["metric"]["role"]: float(r["value"][1]) for r in found["rtt"]}
    qm.check(all(0 < x < 1 for x in rtts.values()), "RTTs %r" % rtts)
    # PromQL with a rate over the stored samples works too
    rate = query('sum(rate(quicmux_udp_datagrams_total[1m]))')
    qm.check(rate is not None, "rate query")
    return "Prometheus scraped both ends: %d bytes up, RTT %s" % (v, ", ".join(
        "%s %.2f ms" % (k, x * 1000) for k, x in sorted(rtts.items())))


def case_flood(c):
    """Bad HTTP clients flood the client's endpoint while the tunnel carries data."""
    t = metrics_tunnel(c)
    port, pid = t["cport"], t["client"].pid
    result = {}

    def transfer():
        result["r"] = qm.check_transfer(t["addr"], conns=8, nbytes=NBYTES, timeout=90)
    th = threading.Thread(target=transfer, daemon=True)
    th.start()

    held, peak, answers = [], [0], {}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], metrics_conns(pid, port))
            time.sleep(0.02)
    st = threading.Thread(target=sample, daemon=True)
    st.start()

    def hold(n):
        """n slow clients: a partial request, then nothing."""
        for _ in range(n):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=3)
                s.sendall(b"GET /metr")
                held.append(s)
            except OSError:
                pass

    def one(raw):
        """A short-lived bad client; the status it got ('closed' if none)."""
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(2)
                try:
                    s.sendall(raw)
                except OSError:
                    pass
                d = b""
                try:
                    d = s.recv(128)
                except OSError:
                    pass
        except OSError:
            d = b""
        m = re.match(rb"HTTP/1\.1 (\d{3})", d)
        k = m.group(1).decode() if m else "closed"
        answers[k] = answers.get(k, 0) + 1
    try:
        hold(MAX_CONNS - 6)  # slow clients take most of the slots
        bad = [b"\x00\xff garbage \r\n\r\n", b"GET /metrics HTTP/1.1\r\nX: " + b"z" * 12000,
               b"BREW /pot HTTP/1.1\r\n\r\n", b"PUT /metrics HTTP/1.1\r\n\r\n"]
        t_end, rounds = time.monotonic() + 2.0, 0
        while time.monotonic() < t_end and rounds < 400:
            one(bad[rounds % len(bad)])
            rounds += 1
        hold(20)  # more than the cap: refused
        for _ in range(20):
            one(b"GET /metrics HTTP/1.1\r\n\r\n")
        # the slow ones are timed out after 5 s: wait (bounded) for the server to close them
        deadline = time.monotonic() + 8
        for s in held:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                s.recv(256)  # 408 or 503, then EOF
            except OSError:
                pass
    finally:
        for s in held:
            s.close()
        stop.set()
        st.join(2)
    qm.check(th.is_alive() or "r" in result, "transfer thread vanished")
    was_running = th.is_alive()
    th.join(100)
    qm.check("r" in result, "transfer thread did not finish")
    result["r"].raise_if_failed("transfer during the HTTP flood")
    qm.check(t["client"].alive() and t["server"].alive(), "a tunnel end died")
    # one more than the cap may be seen for an instant: the one being refused (accepted,
    # answered 503 and closed in the same callback)
    qm.check(peak[0] <= MAX_CONNS + 1, "the endpoint held %d connections at once (cap %d)" % (peak[0], MAX_CONNS))
    qm.wait_until(lambda: metrics_conns(pid, port) <= 1, 10, "the endpoint's connections to close")
    s = parse(scrape(port))
    rejected = value(s, "quicmux_metrics_connections_rejected_total")
    timed_out = value(s, "quicmux_metrics_connections_timed_out_total")
    bad = value(s, "quicmux_metrics_requests_total", code="4xx")
    qm.check(rejected and rejected > 0, "no connection was rejected over the cap")
    qm.check(timed_out and timed_out >= 1, "no slow client was timed out")
    qm.check(bad and bad > 0, "no 400/431 counted")
    qm.check(value(s, "quicmux_tunnel_bytes_total", direction="up") == 8 * NBYTES, "bytes up after flood")
    for code in ("400", "431", "404", "405", "503"):
        qm.check(answers.get(code, 0) > 0, "no bad client got %s during the flood: %r" % (code, answers))
    return "peak %d connections, %d rejected, %d timed out, %d bad requests; answers %r; transfer %s the flood; %s" % (
        peak[0], rejected, timed_out, bad, answers, "outlasted" if was_running else "ended before the end of",
        result["r"].summary())


def main():
    r = qm.Runner("metrics endpoint")
    r.run("metrics.refuse-non-loopback", case_refuse_public)
    r.run("metrics.promtool-live", case_promtool)
    r.run("metrics.http-edges", case_http_edges)
    r.run("metrics.prometheus-scrape", case_prometheus)
    r.run("metrics.flood-with-transfer", case_flood)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
