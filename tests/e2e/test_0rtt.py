#!/usr/bin/env python3
"""0-RTT (--0rtt, --0rtt-file), on loopback.  Every case checks the data byte-exact and
reads the counters of both ends from --metrics (quicmux_early_data_*, quicmux_session_*):

- on both ends: after a first session brings a ticket, new sessions send their streams in
  0-RTT and the server takes them (accepted sessions and early bytes counted on both ends);
- with Retry (--retry always): the 0-RTT packets sent before the Retry go again, the early
  data is accepted;
- with the client's --hide-initial and Retry: early data accepted;
- 5 % loss each way: every byte arrives (lost 0-RTT packets are sent again);
- a target that speaks first: a stream that sent nothing in 0-RTT is announced after the
  handshake, the target's bytes arrive;
- off by default: a client without --0rtt keeps no ticket and offers nothing;
- client on, server off: the server restarted without --0rtt (same state directory, same
  port) refuses the early data; every connection still goes through, byte-exact, sent again
  after the handshake; the stale ticket is dropped, so the next session offers nothing;
- a restarted server with the same --state-dir: the ticket is still accepted (the session
  resumes), its early data refused (GnuTLS's anti-replay record starts with the process);
  the next session, with the restarted server's ticket, is 0-RTT again;
- the ticket file: written mode 0600 (also over a file of mode 0644), read by a restarted
  client, whose first session is then 0-RTT; a file of garbage is ignored with a log line
  and rewritten;
- the options: JSON keys zeroRtt / zeroRttFile (bad values refused, naming the key), a
  ticket file needs 0-RTT; the SIP003 plugin options 0rtt and 0rttFile end to end;
- against a v2ray server (quic-go, which sends no session ticket to quicmux): the client
  offers a quicmux server's ticket to v2ray on the same port, gets a full handshake, and no
  connection fails; no further ticket, no further offer.
"""

import json
import os
import socket
import stat
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402
from relay import Relay  # noqa: E402

NBYTES = 256 * 1024


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        name = ln.split("{", 1)[0].split(" ", 1)[0]
        out[name] = out.get(name, 0) + float(ln.rsplit(" ", 1)[1])
    return out


def m(port, name):
    return int(scrape(port).get(name, 0))


class Ends:
    """A server and a client of quicmux with metrics, and the echo target."""

    def __init__(self, c, server_extra=(), client_extra=(), state=None, delay_ms=0, target=None,
                 loss=0.0):
        """delay_ms: a relay adds this much each way, so the handshake takes a while and
        the client surely has bytes to send in 0-RTT before it ends."""
        self.c = c
        self.e = target or c.echo_server()
        self.state = state or os.path.join(c.dir, "state")
        os.makedirs(self.state, exist_ok=True)
        self.sport = None
        self.saddr = None
        self.start_server(server_extra)
        self.dial = self.saddr
        if delay_ms or loss:
            r = Relay("127.0.0.1", upstream=self.saddr, delay_ms=delay_ms, loss=loss, seed=3)
            c.on_close(r.close)
            self.dial = r.addr
        self.start_client(client_extra)

    def start_server(self, extra, name="qm-server"):
        self.smetrics = qm.free_tcp_port()
        port = self.saddr[1] if self.saddr else None
        self.sp, self.saddr = self.c.qm_server(
            self.e.addr, port=port, name=name,
            extra=["--state-dir", self.state, "--metrics", "127.0.0.1:%d" % self.smetrics] + list(extra))

    def start_client(self, extra, name="qm-client"):
        self.cmetrics = qm.free_tcp_port()
        self.cp, self.caddr = self.c.qm_client(
            self.dial, name=name,
            extra=["--session-idle", "1", "--metrics", "127.0.0.1:%d" % self.cmetrics] + list(extra))

    def stop_server(self):
        self.sp.stop()
        qm.wait_until(lambda: not qm.udp_port_bound(self.saddr[1]), 10, "the server's port to be free")

    def round(self, seed, conns=3, nbytes=NBYTES):
        """One transfer on a new session: wait until the client has no session left
        (--session-idle 1 closes it), then conns connections, byte-exact."""
        qm.wait_until(lambda: qm.count_udp_sockets(self.cp.pid) == 0, 15,
                      "the client's sessions to close", proc=self.cp)
        qm.check_transfer(self.caddr, conns=conns, nbytes=nbytes, seed=seed,
                          timeout=30).raise_if_failed("transfer (seed %d)" % seed)

    def cli(self, name):
        return m(self.cmetrics, name)

    def srv(self, name):
        return m(self.smetrics, name)


def wait_ticket(t, n=1):
    qm.wait_until(lambda: t.cli("quicmux_session_tickets_total") >= n, 10,
                  "the client to get %d session tickets" % n, proc=t.cp)


def case_both_on(c):
    t = Ends(c, ["--0rtt"], ["--0rtt"], delay_ms=20)
    t.round(1)
    wait_ticket(t)
    qm.check(t.cli("quicmux_early_data_offered_total") == 0, "the first session offered early data")
    for i in range(3):
        t.round(10 + i)
    offered = t.cli("quicmux_early_data_offered_total")
    acc_c = t.cli("quicmux_early_data_accepted_total")
    acc_s = t.srv("quicmux_early_data_accepted_total")
    rej = t.cli("quicmux_early_data_rejected_total")
    eb_c = t.cli("quicmux_early_data_bytes_total")
    eb_s = t.srv("quicmux_early_data_bytes_total")
    qm.check(offered == 3 and acc_c == 3 and rej == 0,
             "client: early data offered %d, accepted %d, refused %d; expected 3, 3, 0" % (offered, acc_c, rej))
    qm.check(acc_s == 3, "server: %d sessions with early data, expected 3" % acc_s)
    qm.check(t.srv("quicmux_sessions_resumed_total") == 3, "server: resumed sessions != 3")
    qm.check(eb_s > 0 and eb_c >= eb_s, "early bytes: client sent %d, server received %d" % (eb_c, eb_s))
    return "3 sessions in 0-RTT, %d early bytes received by the server" % eb_s


def case_retry(c):
    # Retry for every new session: the 0-RTT packets the client sent before the Retry are
    # sent again behind the new Initial (the relay's delay makes sure there are several).
    t = Ends(c, ["--0rtt", "--retry", "always"], ["--0rtt"], delay_ms=20)
    t.round(1)
    wait_ticket(t)
    for i in range(3):
        t.round(30 + i, conns=2)
    acc = t.srv("quicmux_early_data_accepted_total")
    retries = t.srv("quicmux_retries_sent_total")
    qm.check(acc == 3, "with Retry: %d sessions with early data, expected 3" % acc)
    qm.check(retries >= 4, "only %d Retry packets sent" % retries)


def case_hidden_initial(c):
    # The client's hidden Initial (--hide-initial: a decoy, the first flight sent last
    # first) with 0-RTT packets in that flight, and a Retry for every session.
    t = Ends(c, ["--0rtt", "--retry", "always"], ["--0rtt", "--hide-initial"], delay_ms=20)
    t.round(1)
    wait_ticket(t)
    for i in range(3):
        t.round(60 + i, conns=2)
    acc = t.srv("quicmux_early_data_accepted_total")
    qm.check(acc == 3, "with --hide-initial and Retry: %d sessions with early data, expected 3" % acc)


def case_lossy(c):
    # 5 % loss each way: lost Initials and 0-RTT packets are sent again; every byte arrives.
    t = Ends(c, ["--0rtt"], ["--0rtt"], delay_ms=10, loss=0.05)
    t.round(1)
    wait_ticket(t)
    for i in range(4):
        t.round(50 + i, conns=2)
    offered = t.cli("quicmux_early_data_offered_total")
    qm.check(offered == 4, "early data offered %d times, expected 4" % offered)
    return "early data accepted %d, refused %d of 4" % (
        t.cli("quicmux_early_data_accepted_total"), t.cli("quicmux_early_data_rejected_total"))


def case_server_speaks_first(c):
    # The target speaks first and the client sends nothing: a stream opened in 0-RTT with
    # no byte still reaches the server (announced after the handshake).
    n = 64 * 1024
    src = c.source_sink_server(send_bytes=n, seed=9)
    t = Ends(c, ["--0rtt"], ["--0rtt"], delay_ms=5, target=src)
    for i in range(3):
        qm.wait_until(lambda: qm.count_udp_sockets(t.cp.pid) == 0, 15, "the client's sessions to close",
                      proc=t.cp)
        s = socket.create_connection(t.caddr, timeout=10)
        got = b""
        try:
            while len(got) < n:
                d = s.recv(65536)
                if not d:
                    break
                got += d
        finally:
            s.close()
        qm.check(got == qm.seeded_bytes(9, n), "round %d: %d bytes from a target that speaks first"
                 % (i, len(got)))
        if i == 0:
            wait_ticket(t)
    qm.check(t.cli("quicmux_early_data_accepted_total") == 2, "the later sessions were not 0-RTT")


def case_off_by_default(c):
    # The server offers tickets (--0rtt); a client without --0rtt neither keeps nor uses them.
    t = Ends(c, ["--0rtt"], [])
    t.round(1)
    t.round(2)
    qm.check(t.srv("quicmux_session_tickets_total") == 2, "the server did not send its tickets")
    for n in ("quicmux_session_tickets_total", "quicmux_sessions_resumed_total",
              "quicmux_early_data_offered_total"):
        qm.check(t.cli(n) == 0, "client without --0rtt: %s = %d" % (n, t.cli(n)))
    # and a server without --0rtt sends none
    u = Ends(c, [], ["--0rtt"])
    u.round(3)
    u.round(4)
    qm.check(u.srv("quicmux_session_tickets_total") == 0 and u.cli("quicmux_session_tickets_total") == 0,
             "a server without --0rtt sent session tickets")
    qm.check(u.cli("quicmux_early_data_offered_total") == 0, "early data offered without a ticket")


def case_server_refuses(c):
    t = Ends(c, ["--0rtt"], ["--0rtt"], delay_ms=20)
    t.round(1)
    wait_ticket(t)
    t.stop_server()
    t.start_server([], name="qm-server-no-0rtt")
    # more than fits in the first flight: some bytes go in 0-RTT, the rest after
    t.round(2, conns=4, nbytes=1024 * 1024)
    offered = t.cli("quicmux_early_data_offered_total")
    rej = t.cli("quicmux_early_data_rejected_total")
    qm.check(offered == 1 and rej == 1, "client: early data offered %d, refused %d; expected 1, 1"
             % (offered, rej))
    qm.check(t.cli("quicmux_early_data_bytes_total") > 0, "no byte was sent in 0-RTT")
    qm.check(t.srv("quicmux_early_data_bytes_total") == 0, "the server without --0rtt took early data")
    qm.check("refused the early data" in t.cp.log(), "no log line about the refused early data")
    # the server did not resume: the ticket is forgotten, the next session offers nothing
    t.round(3)
    qm.check(t.cli("quicmux_early_data_offered_total") == 1, "a stale ticket was offered again")


def case_restarted_server(c):
    t = Ends(c, ["--0rtt"], ["--0rtt"])
    t.round(1)
    wait_ticket(t)
    t.stop_server()
    t.start_server(["--0rtt"], name="qm-server-2")
    t.round(2)
    qm.check(t.srv("quicmux_sessions_resumed_total") == 1,
             "the restarted server did not take the ticket of its first run")
    qm.check(t.cli("quicmux_early_data_rejected_total") == 1,
             "early data from before the restart was not refused")
    wait_ticket(t, 2)
    t.round(3)
    qm.check(t.srv("quicmux_early_data_accepted_total") == 1,
             "the restarted server's own ticket did not give 0-RTT")


def case_ticket_file(c):
    path = os.path.join(c.dir, "tickets")
    with open(path, "w") as f:
        f.write("")
    os.chmod(path, 0o644)
    t = Ends(c, ["--0rtt"], ["--0rtt", "--0rtt-file", path])
    t.round(1)
    wait_ticket(t)
    qm.wait_until(lambda: os.path.getsize(path) > 0, 5, "the ticket file to be written")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    qm.check(mode == 0o600, "ticket file mode %o, expected 600" % mode)
    with open(path) as f:
        first = f.readline()
    qm.check(first.startswith("quicmux-0rtt 1"), "ticket file starts with %r" % first)
    # a restarted client: its very first session is 0-RTT
    t.cp.stop()
    t.start_client(["--0rtt", "--0rtt-file", path], name="qm-client-2")
    t.round(2)
    qm.check(t.cli("quicmux_early_data_accepted_total") == 1,
             "the restarted client's first session was not 0-RTT (accepted %d)"
             % t.cli("quicmux_early_data_accepted_total"))
    # garbage: ignored with a log line, the client works and rewrites the file
    with open(path, "w") as f:
        f.write("not a ticket file\n\x00\x01")
    t.cp.stop()
    t.start_client(["--0rtt", "--0rtt-file", path], name="qm-client-3")
    qm.check("not a quicmux 0-RTT file" in t.cp.log(), "no log line about the bad file")
    t.round(3)
    qm.check(t.cli("quicmux_early_data_offered_total") == 0, "early data offered from a bad file")
    wait_ticket(t)
    qm.wait_until(lambda: open(path).readline().startswith("quicmux-0rtt 1"), 5, "the file to be rewritten")
    qm.check(stat.S_IMODE(os.stat(path).st_mode) == 0o600, "rewritten file is not mode 0600")


def case_v2ray_server(c):
    # A ticket from a quicmux server, then v2ray on the same port: the client offers the
    # ticket and early data, v2ray (quic-go) cannot use them; a full handshake follows.
    t = Ends(c, ["--0rtt"], ["--0rtt"])
    t.round(1)
    wait_ticket(t)
    t.stop_server()
    sp, _ = c.v2ray_server(t.e.addr, port=t.saddr[1])
    for i in range(3):
        t.round(20 + i)
    s = scrape(t.cmetrics)
    v = lambda n: int(s.get(n, 0))  # noqa: E731
    qm.check(v("quicmux_early_data_offered_total") == 1 and v("quicmux_early_data_rejected_total") == 1,
             "against v2ray: early data offered %d, refused %d; expected 1, 1 (the quicmux ticket)"
             % (v("quicmux_early_data_offered_total"), v("quicmux_early_data_rejected_total")))
    qm.check(v("quicmux_early_data_accepted_total") == 0, "v2ray accepted early data?")
    qm.check(v("quicmux_connections_failed_total") == 0, "a connection failed")
    return "v2ray: %d tickets in all (1 from quicmux), %d sessions resumed" % (
        v("quicmux_session_tickets_total"), v("quicmux_sessions_resumed_total"))


def case_options(c):
    """The option in its three other places: JSON (good and bad), and the check that a
    ticket file needs 0-RTT."""
    q = qm.quicmux_bin()
    qm.require_quicmux()
    path = os.path.join(c.dir, "t")
    rc, out, err, _ = qm.run_cmd([q, "client", "--listen", "127.0.0.1:%d" % qm.free_tcp_port(),
                                  "--server", "127.0.0.1:443", "--0rtt-file", path, "--check"])
    qm.check(rc == 2 and "--0rtt-file" in err and "--0rtt" in err, "--0rtt-file alone: %s %r" % (rc, err))

    def conf(extra, role="client"):
        tun = {"role": role, "listen": "127.0.0.1:%d" % qm.free_tcp_port(),
               "streamSettings": {"network": "quic", "quicSettings": {}}}
        tun["server" if role == "client" else "target"] = "127.0.0.1:443"
        tun.update(extra)
        return c.write_file("c.json", json.dumps({"tunnels": [tun]}))
    rc, out, err, _ = qm.run_cmd([q, "-c", conf({"zeroRtt": True, "zeroRttFile": path}), "--check"])
    qm.check(rc == 0, "JSON zeroRtt + zeroRttFile: exit %s %r" % (rc, err))
    rc, out, err, _ = qm.run_cmd([q, "-c", conf({"zeroRtt": True}, role="server"), "--check"])
    qm.check(rc == 0, "JSON zeroRtt on a server: exit %s %r" % (rc, err))
    for extra, needles in (({"zeroRtt": "yes"}, ["zeroRtt", "true or false"]),
                           ({"zeroRttFile": path}, ["zeroRttFile", "zeroRtt"])):
        rc, out, err, _ = qm.run_cmd([q, "-c", conf(extra), "--check"])
        qm.check(rc == 2 and all(n in err for n in needles), "JSON %r: exit %s %r" % (extra, rc, err))
    rc, out, err, _ = qm.run_cmd([q, "-c", conf({"zeroRtt": True, "zeroRttFile": path}, role="server"),
                                  "--check"])
    qm.check(rc == 2 and "zeroRttFile" in err, "JSON zeroRttFile on a server: exit %s %r" % (rc, err))


def case_plugin(c):
    """ss-v2ray-plugin style (SIP003 variables): 0rtt on both plugin ends, 0rttFile on the
    client; a restarted plugin client's first session is 0-RTT."""
    import test_plugin as tp
    cert, key = tp.make_cert(c)
    echo = c.echo_server()
    uport, mport = qm.free_udp_port(), qm.free_tcp_port()
    tp.qm_plugin(c, tp.sip003_env(("127.0.0.1", uport), echo.addr,
                                  tp.server_opts(cert, key, extra=";0rtt;metrics=127.0.0.1:%d" % mport)),
                 "plugin-server", wait_udp=[uport])
    path = os.path.join(c.dir, "tickets")
    copts = tp.client_opts(cert, extra=";0rtt;0rttFile=" + tp.sip003_escape(path))
    for i in range(2):
        tport = qm.free_tcp_port()
        p = tp.qm_plugin(c, tp.sip003_env(("127.0.0.1", uport), ("127.0.0.1", tport), copts),
                         "plugin-client-%d" % i, wait_tcp=tport)
        qm.check_transfer(("127.0.0.1", tport), conns=2, nbytes=NBYTES, seed=40 + i,
                          timeout=30).raise_if_failed("plugin transfer %d" % i)
        qm.wait_until(lambda: os.path.exists(path), 5, "the plugin's ticket file")
        p.stop()
    qm.check(stat.S_IMODE(os.stat(path).st_mode) == 0o600, "plugin ticket file not mode 0600")
    acc = m(mport, "quicmux_early_data_accepted_total")
    qm.check(acc == 1, "plugin server: %d sessions with early data, expected 1" % acc)


def main():
    r = qm.Runner("0-RTT")
    r.run_parallel([
        ("0rtt both ends", case_both_on, ()),
        ("0rtt off by default", case_off_by_default, ()),
        ("0rtt with Retry", case_retry, ()),
        ("0rtt on a lossy path", case_lossy, ()),
        ("0rtt with a hidden Initial and Retry", case_hidden_initial, ()),
        ("0rtt, the server speaks first", case_server_speaks_first, ()),
        ("0rtt refused by a server without it", case_server_refuses, ()),
        ("0rtt restarted server, same state dir", case_restarted_server, ()),
        ("0rtt ticket file", case_ticket_file, ()),
        ("0rtt against a v2ray server", case_v2ray_server, ()),
        ("0rtt options: JSON and checks", case_options, ()),
        ("0rtt as a SIP003 plugin", case_plugin, ()),
    ], workers=2)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
