#!/usr/bin/env python3
"""How soon does a running quicmux client work again after its server restarts?

    python3 bench/restart.py [--quicmux PATH] [--samples 10] [--down 3] [--out FILE]

For each client (quicmux; --clients quicmux,v2ray adds Debian's v2ray 4.34), each server
(quicmux, v2ray) and each kind of restart, --samples times: a fresh echo target, server and
client on loopback; one connection through the
tunnel (so the client holds an established session), then the server is killed with
SIGKILL and a new server process is started on the same UDP port:

  quick   at once (what systemd's Restart= does within ~100 ms);
  slow    --down seconds later, while one connection is held open through the kill, so
          the client had the time (and a reason: unanswered keep-alives) to give the old
          session up before the new server came.

From the moment the new server has bound its port (seen in /proc/net/udp), probes of one
echo connection each (1 KiB, byte-exact) run one after the other, each with a 10 s budget;
reported is the time from the bind to the first probe that succeeded (median, min, max)
and how many probes failed before it. A quicmux server keeps its stateless-reset secret
in --state-dir (a temp dir here, the same for both processes), so the first probe meets
the old session, gets a stateless reset at once and moves to a new session; a v2ray
server sends no resets, so the client waits for its silence rule.

Loopback only; every process is started and stopped by PID (tests/e2e/qmtest.py).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import qmtest as qm  # noqa: E402

SEC, KEY = "aes-128-gcm", "restart-bench"


def echo_once(addr, seed, timeout):
    return qm.echo_once(addr, qm.seeded_bytes(seed, 1024), timeout)


def start_server(c, kind, port, target, state_dir, name):
    if kind == "v2ray":
        return c.v2ray_server(target, security=SEC, key=KEY, name=name, port=port)[0]
    return c.qm_server(target, security=SEC, key=KEY, name=name, port=port,
                       extra=("--state-dir", state_dir))[0]


def one_sample(root, client, kind, mode, down, seed, window):
    c = qm.Case("restart.%s.%s.%s" % (client, kind, mode), root)
    try:
        echo = c.echo_server()
        port = qm.free_udp_port()
        state = tempfile.mkdtemp(prefix="qm-restart-state.", dir=c.dir)
        sp = start_server(c, kind, port, echo.addr, state, "server-1")
        if client == "v2ray":
            cp, caddr = c.v2ray_client(("127.0.0.1", port), security=SEC, key=KEY, target=echo.addr)
        else:
            cp, caddr = c.qm_client(("127.0.0.1", port), security=SEC, key=KEY)
        ok, why = echo_once(caddr, seed, 10.0)
        if not ok and client == "v2ray":  # v2ray may need a moment after listening
            time.sleep(0.5)
            ok, why = echo_once(caddr, seed, 10.0)
        if not ok:
            raise qm.CheckFailed("tunnel did not work before the restart: %s" % why)
        held = None
        if mode == "slow":
            held = socket.create_connection(caddr, timeout=5)
            held.sendall(b"x")
            held.recv(16)
        sp.send_signal(signal.SIGKILL)
        sp.wait(5)
        if mode == "slow":
            time.sleep(down)
        if kind == "v2ray":
            cfg = qm.v2ray_server_config("127.0.0.1", port, echo.addr[0], echo.addr[1], SEC, KEY, "none")
            path = c.write_file("server-2.json", json.dumps(cfg))
            sp2 = c.spawn(qm.v2ray_argv(path), "server-2")
        else:
            sp2 = c.spawn([qm.quicmux_bin(), "server", "--listen", qm.hostport("127.0.0.1", port),
                           "--target", qm.hostport(*echo.addr), "--security", SEC, "--key", KEY,
                           "--state-dir", state, "--log-level", qm.QM_LOG_LEVEL], "server-2")
        t_bound = qm.udp_bound_at(port, sp2.pid, sp2)
        failed = 0
        first = None
        while time.monotonic() - t_bound < window:
            ok, why = echo_once(caddr, seed + 1 + failed, 10.0)
            if ok:
                first = time.monotonic() - t_bound
                break
            failed += 1
        if held:
            held.close()
        resets = sum(1 for ln in cp.log().splitlines() if "stateless reset from" in ln)
        return first, failed, resets
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quicmux", default=None, help="quicmux binary (default $QUICMUX_BIN or build/quicmux)")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--down", type=float, default=3.0, help="slow restart: seconds the server is down")
    ap.add_argument("--servers", default="quicmux,v2ray")
    ap.add_argument("--clients", default="quicmux",
                    help="tunnel clients: quicmux and/or v2ray (a v2ray client's connections may "
                         "hang until quic-go's idle timeout: see --window)")
    ap.add_argument("--window", type=float, default=40.0,
                    help="seconds after the bind within which a probe must succeed")
    ap.add_argument("--modes", default="quick,slow")
    ap.add_argument("--out", default=None, help="also write the table (markdown) to this file")
    a = ap.parse_args()
    if a.quicmux:
        os.environ["QUICMUX_BIN"] = os.path.abspath(a.quicmux)
    qm.install_signal_handlers()
    rows = []
    root = tempfile.mkdtemp(prefix="qm-restart.")
    for client in a.clients.split(","):
      for kind in a.servers.split(","):
        for mode in a.modes.split(","):
            firsts, fails, resets = [], 0, 0
            for i in range(a.samples):
                first, failed, r = one_sample(root, client, kind, mode, a.down, 1000 + 17 * i, a.window)
                fails += failed
                resets += r
                if first is not None:
                    firsts.append(first)
                print("# %s client, %s server, %s restart, sample %d: first connection %s after "
                      "the bind, %d failed before, %d reset log lines" % (client, kind, mode, i + 1,
                                              "%.3fs" % first if first is not None else "never",
                                              failed, r), flush=True)
            med = statistics.median(firsts) if firsts else float("nan")
            rows.append((client, kind, mode, len(firsts), a.samples, med, min(firsts, default=float("nan")),
                         max(firsts, default=float("nan")), fails, resets))
    hdr = ("| client | server | restart | worked | median s | min s | max s | probes failed | "
           "client log: stateless resets |\n|---|---|---|---|---|---|---|---|---|")
    lines = [hdr] + ["| %s | %s | %s%s | %d/%d | %.3f | %.3f | %.3f | %d | %s |" % (
        cl, k, m, " (%.0f s down)" % a.down if m == "slow" else "", n, s, med, lo, hi, f,
        r if cl == "quicmux" else "-")
        for cl, k, m, n, s, med, lo, hi, f, r in rows]
    table = "\n".join(lines)
    shutil.rmtree(root, ignore_errors=True)
    print(table)
    if a.out:
        with open(a.out, "w") as f:
            f.write("`python3 bench/restart.py --samples %d --down %g --clients %s`\n\n%s\n"
                    % (a.samples, a.down, a.clients, table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
