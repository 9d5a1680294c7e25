#!/usr/bin/env python3
"""Workers (--workers N): several loops, one tunnel config (issue 13).

A server with N workers runs N listeners on one UDP address (SO_REUSEPORT); the kernel's
4-tuple hash spreads client sessions over them, the connection ids a worker issues name
it, and a datagram that reaches another worker (after a NAT re-map) is handed to its
owner (with a key), or steered there by the kernel (eBPF, no key, root).  The counts come
from the metrics endpoint (quicmux_worker_* series, one per worker).

  workers.options       bad --workers values and JSON keys refused with exit 2, naming them
  workers.spread        16 sessions (the server allows 1 stream a session) over 2 workers:
                        each worker gets some; 16 transfers byte-exact
  workers.rebind.handoff  a key, 2 workers, a relay that re-maps the client's port until
                        a datagram of the session reached the other worker and was handed
                        to its owner: the session survives (one session, echoes, a
                        byte-exact transfer after)
  workers.rebind.port-range  the hand-off case on the third port of a 4-port range
                        (--listen HOST:P1-P4): replies leave from the port the client used
  workers.rebind.ebpf   no key (root): the kernel steers; re-maps never reach the other
                        worker and nothing is handed off (skipped where the kernel
                        refuses the program)
  workers.retry         --retry always with 2 workers: Retry sent, every session made on
                        the worker whose Retry it answered, transfers byte-exact
  workers.reset         a 2-worker server killed and started again with 3 workers (same
                        --state-dir): packets of lost sessions handed to the worker their id
                        names, which resets them; the client accepts, new connections work
  workers.drain         SIGTERM with sessions on both workers: new connections refused,
                        open ones on every worker still echo, exit once they are closed
  workers.client        client --workers 3: 30 connections byte-exact, each worker
                        carried some; --max-connections is global (4 over 2 workers)
  workers.example       examples/c/echo_workers (the library on 2 loops) with 16
                        echo_client runs (16 sessions), byte-exact; each worker echoed some
"""

import os
import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402
from qmtest import MiB  # noqa: E402
from relay import Relay  # noqa: E402

SEC, KEY, HDR = "aes-128-gcm", "workers-key", "srtp"
SAMPLE = re.compile(r'^(\w+)\{([^}]*)\} (\S+)$')


def scrape(port):
    """{(name, frozenset(labels)): value} of the metrics endpoint."""
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    out = {}
    for ln in body.splitlines():
        m = SAMPLE.match(ln)
        if m:
            labels = frozenset(tuple(kv.split("=", 1)) for kv in m.group(2).split(",") if kv)
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def per_worker(metrics, name, **want):
    """{worker index: value} of one quicmux_worker_* family (extra labels must match)."""
    res = {}
    for (n, labels), v in metrics.items():
        if n != name:
            continue
        d = {k: val.strip('"') for k, val in labels}
        if all(d.get(k) == str(x) for k, x in want.items()):
            res[int(d["worker"])] = v
    return res


def server(c, target, workers=2, security=SEC, key=KEY, header=HDR, extra=(), nports=1):
    """A quicmux server with workers and a metrics port; nports > 1: on a port range, the
    address returned is its third port."""
    mport = qm.free_tcp_port()
    extra = ["--workers", str(workers), "--metrics", "127.0.0.1:%d" % mport] + list(extra)
    if nports == 1:
        sp, saddr = c.qm_server(target.addr, security=security, key=key, header=header,
                                extra=extra, log_level="info")
        return sp, saddr, mport
    base = qm.free_udp_range(nports)
    sp = c.spawn(qm._qm_argv("server", "127.0.0.1:%d-%d" % (base, base + nports - 1), "--target",
                             qm.hostport(*target.addr), security, key, header, extra, "info"),
                 "qm-server")
    for p in range(base, base + nports):
        qm.wait_udp_bound(p, pid=sp.pid, timeout=10, proc=sp)
    return sp, ("127.0.0.1", base + 2), mport


def wait_sessions(mport, n, timeout=15):
    qm.wait_until(lambda: sum(per_worker(scrape(mport), "quicmux_worker_sessions").values()) >= n,
                  timeout, "%d server sessions" % n)
    return per_worker(scrape(mport), "quicmux_worker_sessions")


def case_spread(c):
    target = c.echo_server()
    sp, saddr, mport = server(c, target, extra=["--max-streams", "1"])
    cp, caddr = c.qm_client(saddr, security=SEC, key=KEY, header=HDR)
    held = qm.open_held(caddr, 16)
    try:
        sess = wait_sessions(mport, 16)
    finally:
        qm.close_all(held)
    qm.check(sorted(sess) == [0, 1], "worker series %r, want workers 0 and 1" % sess)
    qm.check(sum(sess.values()) == 16, "%r sessions, want 16" % sess)
    qm.check(all(v > 0 for v in sess.values()), "a worker got no session: %r" % sess)
    res = qm.check_transfer(caddr, conns=16, nbytes=256 * 1024, seed=13, timeout=60)
    res.raise_if_failed("16 transfers over 2 workers")
    m = scrape(mport)
    conns = per_worker(m, "quicmux_worker_connections_total")
    qm.check(sum(conns.values()) >= 32 and all(v > 0 for v in conns.values()),
             "streams per worker %r, want 32 in all, some on each" % conns)
    # the tunnel's own series add the workers up
    total = sum(v for (n, _l), v in m.items() if n == "quicmux_connections_total")
    qm.check(total == sum(conns.values()), "quicmux_connections_total %d, workers %r" % (total, conns))
    promtool = "promtool not installed"
    if shutil.which("promtool"):
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=5).read()
        p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30)
        out = (p.stdout + p.stderr).decode(errors="replace").strip()
        qm.check(p.returncode == 0 and not out, "promtool check metrics: %s" % out[:600])
        promtool = "promtool ok"
    return "sessions per worker %s; streams per worker %s; %s; %s" % (
        {k: int(v) for k, v in sess.items()}, {k: int(v) for k, v in conns.items()}, res.summary(),
        promtool)


def rebind(c, security, key, header, want_ebpf, nports=1):
    target = c.echo_server()
    sp, saddr, mport = server(c, target, security=security, key=key, header=header, nports=nports)
    steer = None
    deadline = time.monotonic() + 5
    while steer is None and time.monotonic() < deadline:
        with open(sp.log_path, errors="replace") as f:
            for ln in f:
                if "[workers]" in ln:
                    steer = "ebpf" if "eBPF" in ln else "handoff"
        time.sleep(0.05)
    qm.check(steer is not None, "the server did not log how it steers")
    if want_ebpf and steer != "ebpf":
        raise qm.Skip("the kernel refused the reuseport eBPF program here (not root, or "
                      "no BPF): the hand-off case covers this machine")
    qm.check(want_ebpf or steer == "handoff", "with a key the server says it steers by %s" % steer)
    relay = Relay("127.0.0.1", upstream=saddr, process=True)
    c.on_close(relay.close)
    cp, caddr = c.qm_client(relay.addr, security=security, key=key, header=header)
    ok, why = qm.echo_once(caddr, b"before any re-map\n" * 20)
    qm.check(ok, "echo before re-maps: %s" % why)
    sess = wait_sessions(mport, 1)
    owner = [w for w, v in sess.items() if v == 1]
    qm.check(len(owner) == 1, "one session on one worker, got %r" % sess)
    owner = owner[0]
    other = 1 - owner
    before = scrape(mport)
    rx_other0 = per_worker(before, "quicmux_worker_udp_datagrams_total", direction="received")[other]
    remaps = 0
    # Each re-map gives the client a new source port: the kernel hash sends it to the
    # other worker half of the time.  Up to 16 re-maps (all on the owner: 1 in 65536).
    for i in range(16):
        relay.remap()
        remaps += 1
        ok, why = qm.echo_once(caddr, b"after re-map %d\n" % i * 40)
        qm.check(ok, "echo after re-map %d failed: %s" % (i, why))
        m = scrape(mport)
        hin = per_worker(m, "quicmux_worker_handoffs_total", direction="in")
        if not want_ebpf and hin.get(owner, 0) > 0:
            break
        if want_ebpf and i >= 5:
            break
    m = scrape(mport)
    hout = per_worker(m, "quicmux_worker_handoffs_total", direction="out")
    hin = per_worker(m, "quicmux_worker_handoffs_total", direction="in")
    rx = per_worker(m, "quicmux_worker_udp_datagrams_total", direction="received")
    sess = per_worker(m, "quicmux_worker_sessions")
    qm.check(relay.stats["sessions"] == 1, "the client opened %d sessions (the first was lost)"
             % relay.stats["sessions"])
    qm.check(sess.get(owner) == 1 and sess.get(other) == 0,
             "the session moved between workers or a new one started: %r" % sess)
    resets = sum(v for (n, _l), v in m.items() if n == "quicmux_stateless_resets_sent_total")
    qm.check(resets == 0, "%d stateless resets sent (a worker reset another's session?)" % resets)
    if want_ebpf:
        qm.check(sum(hout.values()) == 0, "handed off %r with the kernel steering" % hout)
        qm.check(rx[other] == rx_other0, "the other worker received %d datagrams of the "
                 "session after %d re-maps: the kernel did not steer them" %
                 (rx[other] - rx_other0, remaps))
    else:
        qm.check(hin.get(owner, 0) > 0, "no datagram was handed to the owner in %d re-maps "
                 "(handoffs in %r, out %r)" % (remaps, hin, hout))
        qm.check(hout.get(other, 0) == hin.get(owner, 0),
                 "handed off %r but taken over %r" % (hout, hin))
    res = qm.check_transfer(caddr, conns=2, nbytes=2 * MiB, seed=21, timeout=60)
    res.raise_if_failed("transfer after the re-maps")
    qm.check(relay.stats["sessions"] == 1, "a second session after the re-maps")
    return "owner worker %d, %d re-maps, %s; handoffs out %r in %r; %s" % (
        owner, remaps, steer, {k: int(v) for k, v in hout.items()},
        {k: int(v) for k, v in hin.items()}, res.summary())


def case_rebind_handoff(c):
    return rebind(c, SEC, KEY, HDR, want_ebpf=False)


def case_rebind_range(c):
    return rebind(c, SEC, KEY, HDR, want_ebpf=False, nports=4)


def case_rebind_ebpf(c):
    if os.geteuid() != 0:
        raise qm.Skip("the reuseport eBPF program needs root")
    return rebind(c, "none", "", "none", want_ebpf=True)


def case_retry(c):
    target = c.echo_server()
    sp, saddr, mport = server(c, target, extra=["--retry", "always", "--max-streams", "1"])
    cp, caddr = c.qm_client(saddr, security=SEC, key=KEY, header=HDR)
    held = qm.open_held(caddr, 8)
    try:
        sess = wait_sessions(mport, 8)
    finally:
        qm.close_all(held)
    m = scrape(mport)
    retries = sum(v for (n, _l), v in m.items() if n == "quicmux_retries_sent_total")
    bad = sum(v for (n, lab), v in m.items()
              if n == "quicmux_bad_datagrams_total" and ("kind", '"bad_token"') in lab)
    qm.check(retries >= 8, "%d Retry packets for 8 sessions" % retries)
    qm.check(bad == 0, "%d Initials with a bad token" % bad)
    qm.check(sum(sess.values()) == 8, "sessions %r, want 8" % sess)
    res = qm.check_transfer(caddr, conns=8, nbytes=256 * 1024, seed=5, timeout=60)
    res.raise_if_failed("transfers with Retry and workers")
    return "%d Retry packets, sessions per worker %s, %s" % (
        retries, {k: int(v) for k, v in sess.items()}, res.summary())


def held_echo(socks, tag):
    for i, s in enumerate(socks):
        data = (b"%s %d\n" % (tag, i)) * 10
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            d = s.recv(4096)
            if not d:
                break
            got += d
        qm.check(got == data, "held connection %d: %s echo got %d of %d bytes" % (
            i, tag.decode(), len(got), len(data)))


def case_drain(c):
    target = c.echo_server()
    sp, saddr, mport = server(c, target, extra=["--max-streams", "1", "--drain", "20"])
    cp, caddr = c.qm_client(saddr, security=SEC, key=KEY, header=HDR)
    held = qm.open_held(caddr, 16)  # all on one worker: 1 time in 32768
    try:
        sess = wait_sessions(mport, 16)
        qm.check(all(v > 0 for v in sess.values()) and len(sess) == 2,
                 "sessions not on both workers: %r" % sess)
        sp.send_signal(signal.SIGTERM)
        qm.wait_until(lambda: "no new connections" in open(sp.log_path, errors="replace").read(),
                      5, "the server's drain line")
        ok, why = qm.echo_once(caddr, b"new after SIGTERM\n" * 10, timeout=5)
        qm.check(not ok, "a new connection was carried after SIGTERM")
        qm.check(sp.alive(), "the server exited with connections open")
        held_echo(held, b"draining")
    finally:
        qm.close_all(held)
    t0 = time.monotonic()
    rc = sp.wait(15)
    took = time.monotonic() - t0
    qm.check(rc == 0, "server exit status %r after the drain" % rc)
    return "sessions per worker %s; refused a new connection, 16 open ones echoed on " \
           "both workers; exit 0 %.1f s after they closed" % (
               {k: int(v) for k, v in sess.items()}, took)


def case_client(c):
    target = c.echo_server()
    sp, saddr = c.qm_server(target.addr, security=SEC, key=KEY, header=HDR)
    mport = qm.free_tcp_port()
    cp, caddr = c.qm_client(saddr, security=SEC, key=KEY, header=HDR,
                            extra=["--workers", "3", "--metrics", "127.0.0.1:%d" % mport])
    res = qm.check_transfer(caddr, conns=30, nbytes=512 * 1024, seed=31, timeout=90)
    res.raise_if_failed("30 connections through 3 client workers")
    conns = per_worker(scrape(mport), "quicmux_worker_connections_total")
    qm.check(sorted(conns) == [0, 1, 2] and sum(conns.values()) == 30,
             "connections per worker %r, want 30 over workers 0-2" % conns)
    qm.check(all(v > 0 for v in conns.values()), "a client worker got no connection: %r" % conns)
    # --max-connections is one cap for all workers
    cp2, caddr2 = c.qm_client(saddr, security=SEC, key=KEY, header=HDR, name="qm-client-cap",
                              extra=["--workers", "2", "--max-connections", "4"])
    held = qm.open_held(caddr2, 4)
    try:
        refused = 0
        for i in range(4):
            ok, _why = qm.echo_once(caddr2, b"over the cap %d\n" % i, timeout=5)
            refused += not ok
        qm.check(refused == 4, "%d of 4 connections over a cap of 4 were carried" % (4 - refused))
    finally:
        qm.close_all(held)
    # two servers, two client workers: each worker has the server set; the metrics add
    # the workers' counts up per server
    sp2, saddr2 = c.qm_server(target.addr, security=SEC, key=KEY, header=HDR, name="qm-server-2")
    mport3 = qm.free_tcp_port()
    cp3, caddr3 = c.qm_client(saddr, security=SEC, key=KEY, header=HDR, name="qm-client-2srv",
                              extra=["--server", qm.hostport(*saddr2), "--workers", "2",
                                     "--metrics", "127.0.0.1:%d" % mport3])
    res2 = qm.check_transfer(caddr3, conns=16, nbytes=256 * 1024, seed=37, timeout=60)
    res2.raise_if_failed("16 connections, 2 servers, 2 client workers")
    opened = {}
    for (n, lab), v in scrape(mport3).items():
        if n == "quicmux_server_sessions_opened_total":
            opened[dict((k, x.strip('"')) for k, x in lab)["server"]] = int(v)
    qm.check(len(opened) == 2 and all(v > 0 for v in opened.values()),
             "sessions opened per server %r, want both servers used" % opened)
    return "connections per worker %s, %s; cap 4 over 2 workers: 4 carried, 4 refused; " \
           "2 servers x 2 workers: sessions per server %s" % (
               {k: int(v) for k, v in conns.items()}, res.summary(), opened)


def case_example(c):
    exe = os.path.join(os.path.dirname(qm.quicmux_bin()), "examples")
    srv_bin, cli_bin = os.path.join(exe, "echo_workers"), os.path.join(exe, "echo_client")
    if not (os.path.exists(srv_bin) and os.path.exists(cli_bin)):
        raise qm.Skip("examples not built (QM_EXAMPLES off)")
    sp = c.spawn([srv_bin, "-n", "2", "-s", SEC, "-k", KEY, "127.0.0.1:0"], "echo-workers")
    port = []
    qm.wait_until(lambda: port.extend(re.findall(r"listening on 127.0.0.1:(\d+)",
                                                 open(sp.log_path).read())) or port, 10,
                  "echo_workers to listen", proc=sp)
    # 16 sessions: all on one worker 1 time in 32768
    for i in range(16):
        rc, out, err, _ = qm.run_cmd([cli_bin, "-s", SEC, "-k", KEY, "-n", "2", "-b", "200000",
                                      "127.0.0.1:%s" % port[0]], timeout=30)
        qm.check(rc == 0 and "2/2 streams echoed byte-exact" in out,
                 "echo_client run %d: exit %s: %s %s" % (i, rc, out.strip(), err.strip()))
    sp.send_signal(signal.SIGTERM)
    qm.check(sp.wait(10) == 0, "echo_workers did not exit 0 on SIGTERM")
    per = [int(x) for x in re.findall(r"worker \d echoed (\d+) streams", open(sp.log_path).read())]
    qm.check(len(per) == 2 and sum(per) == 32, "streams per worker %r, want 32 over 2" % per)
    qm.check(all(v > 0 for v in per), "a worker echoed nothing: %r (16 sessions)" % per)
    return "16 sessions, streams per worker %r" % per


def case_reset(c):
    """Kill a 2-worker server holding 12 idle sessions, start it again with 3 workers
    and the same --state-dir: the old ids name workers (mod 3) that the kernel's hash does
    not pick, so packets of the lost sessions are handed over first and the worker their id
    names answers with a stateless reset the client accepts; new connections work."""
    target = c.echo_server()
    state = os.path.join(c.dir, "state")
    port = qm.free_udp_port()
    mport = qm.free_tcp_port()

    def start(name, workers):
        return c.qm_server(target.addr, security=SEC, key=KEY, header=HDR, port=port, name=name,
                           extra=["--workers", str(workers), "--max-streams", "1", "--state-dir", state,
                                  "--metrics", "127.0.0.1:%d" % mport], log_level="info")
    sp, saddr = start("qm-server-1", 2)
    cp, caddr = c.qm_client(saddr, security=SEC, key=KEY, header=HDR, log_level="info")
    held = qm.open_held(caddr, 12)
    sess = wait_sessions(mport, 12)
    qm.close_all(held)  # the 12 sessions stay, idle, in the client's pool
    # Quiet first: a packet the client sent while the server is down would come back as
    # an ICMP error and end its session without a reset.
    qm.wait_until(lambda: sum(v for (n, _l), v in scrape(mport).items()
                              if n == "quicmux_streams") == 0, 10, "the 12 streams to close")
    time.sleep(0.5)  # the last ACKs
    sp.send_signal(signal.SIGKILL)
    sp.wait(5)
    sp2, _ = start("qm-server-2", 3)
    for i in range(12):
        ok, why = qm.echo_once(caddr, qm.seeded_bytes(40 + i, 4096), timeout=15)
        qm.check(ok, "connection %d after the restart: %s" % (i, why))
    m = scrape(mport)
    resets = sum(v for (n, _l), v in m.items() if n == "quicmux_stateless_resets_sent_total")
    hout = per_worker(m, "quicmux_worker_handoffs_total", direction="out")
    logged = [ln for ln in cp.log().splitlines() if "stateless reset from the server" in ln]
    qm.check(resets >= 1, "the restarted server sent no stateless reset")
    qm.check(logged, "the client logged no stateless reset")
    qm.check(sum(hout.values()) >= 1, "no packet of a lost session was handed over (12 sessions, "
             "3 workers: the hash and the ids agreed on every one?); datagrams in per worker %r" %
             per_worker(m, "quicmux_worker_udp_datagrams_total", direction="received"))
    return "sessions per worker before %s; after the restart %d resets sent, %d logged by the " \
           "client, hand-offs %s; 12 new connections echoed" % (
               {k: int(v) for k, v in sess.items()}, resets, len(logged),
               {k: int(v) for k, v in hout.items()})


def case_options(c):
    """Bad values stop before anything starts (exit 2, the option named); good ones pass."""
    q = qm.quicmux_bin()
    base = [q, "server", "--listen", "127.0.0.1:%d" % qm.free_udp_port(), "--target", "127.0.0.1:9"]
    for bad in ("0", "65", "many", "2x", ""):
        rc, _out, err, _ = qm.run_cmd(base + ["--workers", bad, "--check"], timeout=5)
        qm.check(rc == 2 and "--workers" in err and "auto" in err,
                 "--workers %r: exit %s, stderr %r" % (bad, rc, err[-300:]))
    for good in ("1", "64", "auto", "AUTO"):
        rc, _out, err, _ = qm.run_cmd(base + ["--workers", good, "--check"], timeout=5)
        qm.check(rc == 0, "--workers %s --check: exit %s: %r" % (good, rc, err[-300:]))
    for val, ok in ((4, True), ("auto", True), ("x", False), (0, False), (True, False)):
        cfg = {"tunnels": [{"role": "client", "listen": "127.0.0.1:0", "server": "127.0.0.1:9",
                            "workers": val, "streamSettings": {"network": "quic"}}]}
        path = c.write_file("w.json", json.dumps(cfg))
        rc, _out, err, _ = qm.run_cmd([q, "-c", path, "--check"], timeout=5)
        if ok:
            qm.check(rc == 0, "config workers %r: exit %s: %r" % (val, rc, err[-300:]))
        else:
            qm.check(rc == 2 and "tunnels[0].workers" in err,
                     "config workers %r: exit %s, stderr %r" % (val, rc, err[-300:]))
    return "bad values refused (exit 2, named), 1/64/auto accepted; JSON number or \"auto\""


def main():
    r = qm.Runner("test_workers: several loops for one tunnel")
    r.run("workers.options", case_options)
    r.run("workers.spread", case_spread)
    r.run("workers.rebind.handoff", case_rebind_handoff)
    r.run("workers.rebind.ebpf", case_rebind_ebpf)
    r.run("workers.rebind.port-range", case_rebind_range)
    r.run("workers.retry", case_retry)
    r.run("workers.drain", case_drain)
    r.run("workers.reset", case_reset)
    r.run("workers.client", case_client)
    r.run("workers.example", case_example)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
