#!/usr/bin/env python3
"""The hidden Initial (--hide-initial, client, --security none), on loopback.

Every datagram between the quicmux client and the server passes through the suite's
UDP relay, which records them; the test writes them to a pcap (IPv4/UDP headers made
up, one flow per client socket) and reads it with Debian's tshark, its QUIC dissector
forced on the server port (-d udp.port==PORT,quic), asking for
tls.handshake.extensions_server_name. Three views of the same capture:

- the first datagram of the flow alone: what a censor that inspects only the first
  packet of a UDP flow sees (the Great Firewall's QUIC SNI filter, USENIX Security 2025);
- each of the client's first datagrams alone: a censor that does not reassemble;
- the whole capture with tshark's out-of-order CRYPTO reassembly off
  (-o quic.reassemble_crypto_out_of_order:FALSE): a reassembler that keeps order;
- and the whole capture as tshark reads it by default, which reassembles CRYPTO frames
  across Initials in any order: it still finds the SNI with the option. That is
  reported in the case's note, not asserted (it is how tshark is, not quicmux).

Cases:
- without the option, the first datagram alone shows the SNI (so the checks can fail);
- with it, against a quicmux server and against Debian's v2ray 4.34 server: the first
  datagram is the 8-21 byte decoy and shows nothing, no single datagram shows the SNI,
  the in-order reassembler finds nothing; byte-exact transfers through the tunnel, and
  a second client (a fresh session, a second hidden Initial) works at once; the quicmux
  server sent no stateless reset and closed no session as refused;
- the same as a SIP003 plugin (hideInitial) against Debian's ss-v2ray-plugin server
  (mode=quic, verified TLS: the SNI is the real host name);
- with a key (aes-128-gcm) the option does nothing: no decoy, the first datagram is a
  full-size (encrypted) Initial;
- 500 datagrams shaped like the decoy (8-21 random bytes) get no answer from a quicmux or
  a v2ray server (no stateless reset, no version negotiation), the quicmux server counts
  them as malformed/unroutable, and both still serve a hidden handshake afterwards;
- bad values stop before anything starts, naming the option (JSON, SIP003, flag).
"""

import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402
import test_plugin as tp  # noqa: E402
from qmtest import MiB  # noqa: E402

SNI = "blocked.example.org"
DECOY_MIN, DECOY_MAX = 8, 21  # src/hide.h
SINGLES = 6  # the client's first datagrams checked one by one


def tshark_bin():
    return shutil.which("tshark")


def write_pcap(path, log, server_port):
    """The relay's records as a pcap (LINKTYPE_IPV4): c2s from 10.0.0.1:<client port>
    to 10.0.0.2:server_port, s2c the other way."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 228))
        for direction, client, t, data in log:
            cport = client[1]
            src, dst, sp, dp = ((b"\x0a\0\0\x01", b"\x0a\0\0\x02", cport, server_port) if direction == "c2s"
                                else (b"\x0a\0\0\x02", b"\x0a\0\0\x01", server_port, cport))
            udp = struct.pack("!HHHH", sp, dp, 8 + len(data), 0) + data
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, src, dst)
            pkt = ip + udp
            f.write(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(pkt), len(pkt)))
            f.write(pkt)


def tshark(pcap, server_port, field, display_filter, opts=()):
    argv = [tshark_bin(), "-r", pcap, "-d", "udp.port==%d,quic" % server_port] + list(opts) + [
        "-Y", display_filter, "-T", "fields", "-e", field]
    p = subprocess.run(argv, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    qm.check(p.returncode == 0, "%s failed (%d): %s" % (" ".join(argv), p.returncode, p.stderr.decode()[-300:]))
    return [ln for ln in p.stdout.decode().splitlines() if ln.strip()]


def snis(pcap, port, opts=()):
    return tshark(pcap, port, "tls.handshake.extensions_server_name", "tls.handshake.extensions_server_name", opts)


def client_datagrams(log):
    """The c2s datagrams of the first client socket seen, in order."""
    first = next((cl for d, cl, _t, _b in log if d == "c2s"), None)
    return [(d, cl, t, b) for d, cl, t, b in log if d == "c2s" and cl == first]


def views(c, log, port):
    """(first datagram's SNIs, set of SNIs seen in single datagrams, in-order SNIs, default SNIs,
    first datagram's length, Initial packets in the first datagram)."""
    full = os.path.join(c.dir, "handshake.pcap")
    write_pcap(full, log, port)
    mine = client_datagrams(log)
    qm.check(mine, "the relay saw no datagram from the client")
    single_snis, first_snis, first_initials = set(), [], []
    for i, rec in enumerate(mine[:SINGLES]):
        p = os.path.join(c.dir, "dgram%d.pcap" % i)
        write_pcap(p, [rec], port)
        found = snis(p, port)
        single_snis.update(found)
        if i == 0:
            first_snis = found
            first_initials = tshark(p, port, "quic.long.packet_type", "quic.long.packet_type == 0")
    in_order = snis(full, port, ["-o", "quic.reassemble_crypto_out_of_order:FALSE"])
    default = snis(full, port)
    return first_snis, single_snis, in_order, default, len(mine[0][3]), first_initials


def metric(port, name, labels=""):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    total = 0
    for m in re.finditer(r"^%s\{([^}]*)\} (\d+)$" % re.escape(name), text, re.M):
        if labels in m.group(1):
            total += int(m.group(2))
    return total


def start_server(c, kind, security="none", key=""):
    e = c.echo_server()
    mport = None
    if kind == "quicmux":
        mport = qm.free_tcp_port()
        sp, saddr = c.qm_server(e.addr, security=security, key=key,
                                extra=("--metrics", "127.0.0.1:%d" % mport))
    else:
        sp, saddr = c.v2ray_server(e.addr, security=security, key=key)
    return e, sp, saddr, mport


def client_through(c, relay_addr, hide, security="none", key="", name="qm-client"):
    extra = ["--sni", SNI, "--insecure"] + (["--hide-initial"] if hide else [])
    return c.qm_client(relay_addr, security=security, key=key, extra=extra, name=name)


def need_tshark():
    if not tshark_bin():
        raise qm.Skip("tshark not installed (scripts/deps.sh --test installs it)")


def case_plain(c):
    """Without the option the first datagram is an Initial that shows the SNI."""
    need_tshark()
    e, sp, saddr, _m = start_server(c, "quicmux")
    rl = c.udp_relay(saddr)
    cp, caddr = client_through(c, rl.addr, hide=False)
    qm.check_transfer(caddr, conns=1, nbytes=64 * 1024, seed=11, timeout=30).raise_if_failed()
    first, singles, in_order, default, first_len, first_init = views(c, rl.datagrams(), saddr[1])
    qm.check(first == [SNI], "the first datagram alone should show the SNI without the option, tshark "
             "found %r" % first)
    qm.check(first_init, "the first datagram is not a QUIC Initial without the option")
    qm.check(in_order == [SNI] and default == [SNI],
             "tshark over the whole capture: in order %r, default %r" % (in_order, default))
    return "first datagram %d bytes shows %s; tshark (default) finds %r" % (first_len, SNI, default)


def case_hidden(c, kind):
    need_tshark()
    e, sp, saddr, mport = start_server(c, kind)
    rl = c.udp_relay(saddr)
    cp, caddr = client_through(c, rl.addr, hide=True)
    res = qm.check_transfer(caddr, conns=2, nbytes=MiB, seed=21, timeout=40)
    res.raise_if_failed()
    # a fresh connection after the first ones, on the same session
    ok, why = qm.echo_once(caddr, b"again" * 100)
    qm.check(ok, "a fresh connection after the transfer: %s" % why)
    log = rl.datagrams()
    first_len, default = check_hidden_views(c, log, saddr[1], SNI)
    # a second client: a fresh session, a second hidden Initial, through the same relay
    cp2, caddr2 = client_through(c, rl.addr, hide=True, name="qm-client-2")
    qm.check_transfer(caddr2, conns=1, nbytes=256 * 1024, seed=22, timeout=30).raise_if_failed()
    qm.check(e.accepted == 4, "the target saw %d connections, expected 4" % e.accepted)
    extra = ""
    if mport:
        resets = metric(mport, "quicmux_stateless_resets_sent_total")
        refused = metric(mport, "quicmux_sessions_closed_total", 'cause="refused"')
        retries = metric(mport, "quicmux_retries_sent_total")
        qm.check(resets == 0, "the server sent %d stateless resets" % resets)
        qm.check(refused == 0, "the server counted %d sessions closed as refused" % refused)
        # each client's decoy is dropped and counted: too short for a header, or no session's
        dropped = (metric(mport, "quicmux_bad_datagrams_total", 'kind="malformed"')
                   + metric(mport, "quicmux_bad_datagrams_total", 'kind="unroutable"'))
        qm.check(dropped >= 2, "the server counted %d malformed/unroutable datagrams, expected the 2 "
                 "decoys" % dropped)
        extra = ("; server: %d Retry (ClientHello start missing from the first Initial), 0 resets, "
                 "%d datagrams dropped as malformed/unroutable" % (retries, dropped))
    return ("decoy %d bytes; no SNI in any single datagram nor in order; tshark's default "
            "out-of-order reassembly finds %r; client datagrams before the first reply: %d%s; %s"
            % (first_len, default, first_flight_len(log), extra, res.summary()))


def check_hidden_views(c, log, port, sni):
    first, singles, in_order, default, first_len, first_init = views(c, log, port)
    qm.check(DECOY_MIN <= first_len <= DECOY_MAX,
             "the first datagram is %d bytes, not a %d-%d byte decoy" % (first_len, DECOY_MIN, DECOY_MAX))
    qm.check(not first_init and not first, "the first datagram dissects as an Initial (%r) or shows %r"
             % (first_init, first))
    qm.check(not singles, "a single datagram shows the SNI: %r" % sorted(singles))
    qm.check(not in_order, "tshark with in-order CRYPTO reassembly found %r" % in_order)
    qm.check(default in ([], [sni]), "tshark found another name: %r" % default)
    # the Initial right after the decoy carries the ClientHello's second part
    offsets = tshark(os.path.join(c.dir, "dgram1.pcap"), port, "quic.crypto.offset", "quic.crypto.offset")
    qm.check(offsets and int(offsets[0].split(",")[0]) > 0,
             "the first Initial starts the ClientHello (CRYPTO offsets %r): not sent last first" % offsets)
    return first_len, default


def case_plugin(c):
    """quicmux plugin client (hideInitial) -> ss-v2ray-plugin server -> echo, no shadowsocks."""
    need_tshark()
    vp = tp.v2ray_plugin()
    if not vp:
        raise qm.Skip("ss-v2ray-plugin not installed")
    cert, key = tp.make_cert(c)
    echo = c.echo_server()
    qport = qm.free_udp_port()
    lport = qm.free_tcp_port()
    sp = c.spawn([vp], "ss-v2ray-plugin-server",
                 env=tp.sip003_env(("127.0.0.1", qport), echo.addr, tp.server_opts(cert, key)))
    qm.wait_udp_bound(qport, pid=sp.pid, timeout=15, proc=sp)
    rl = c.udp_relay(("127.0.0.1", qport))
    tp.qm_plugin(c, tp.sip003_env(rl.addr, ("127.0.0.1", lport), tp.client_opts(cert, extra=";hideInitial")),
                 "qm-plugin-client", wait_tcp=lport)
    res = qm.check_transfer(("127.0.0.1", lport), conns=2, nbytes=MiB, seed=41, timeout=40)
    res.raise_if_failed()
    first_len, default = check_hidden_views(c, rl.datagrams(), qport, tp.HOST)
    return "SNI %s: decoy %d bytes, no single datagram shows it; tshark (default) finds %r; %s" % (
        tp.HOST, first_len, default, res.summary())


def case_decoys_unanswered(c, kind):
    """500 datagrams shaped like the decoy (8-21 random bytes) from one socket: the server
    answers none (no stateless reset, no version negotiation) and still serves a hidden
    handshake afterwards."""
    e, sp, saddr, mport = start_server(c, kind)
    rnd = random.Random(51)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.on_close(s.close)
    s.connect(saddr)
    for _ in range(500):
        s.send(rnd.randbytes(rnd.randint(DECOY_MIN, DECOY_MAX)))
        time.sleep(0.0005)
    s.settimeout(1.0)
    got = []
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        try:
            got.append(s.recv(2048))
        except socket.timeout:
            break
        except OSError as ex:  # e.g. ECONNREFUSED: the server died
            raise qm.CheckFailed("the socket got %r" % ex)
    qm.check(not got, "the server answered %d decoy-shaped datagrams (sizes %s)"
             % (len(got), sorted({len(g) for g in got})))
    qm.check(sp.alive(), "the server exited")
    cp, caddr = client_through(c, saddr, hide=True)
    qm.check_transfer(caddr, conns=1, nbytes=64 * 1024, seed=52, timeout=30).raise_if_failed()
    extra = ""
    if mport:
        dropped = (metric(mport, "quicmux_bad_datagrams_total", 'kind="malformed"')
                   + metric(mport, "quicmux_bad_datagrams_total", 'kind="unroutable"'))
        qm.check(dropped >= 500, "the server counted only %d of the 500 as malformed/unroutable" % dropped)
        extra = "; %d counted as malformed/unroutable" % dropped
    return "500 sent, 0 answered%s; a hidden handshake after them works" % extra


def case_bad_values(c):
    qm.require_quicmux()
    q = qm.quicmux_bin()
    notes = []
    cfg = {"tunnels": [{"role": "client", "listen": "127.0.0.1:0", "server": "127.0.0.1:9",
                        "hideInitial": "yes", "streamSettings": {"network": "quic", "quicSettings": {}}}]}
    for tunnel_patch, needle in (({}, "tunnels[0].hideInitial: want true or false"),
                                 ({"role": "server", "target": "127.0.0.1:9", "server": None,
                                   "hideInitial": True}, "tunnels[0].hideInitial: does not apply to role server")):
        t = dict(cfg["tunnels"][0])
        t.update(tunnel_patch)
        t = {k: v for k, v in t.items() if v is not None}
        path = c.write_file("bad.json", json.dumps({"tunnels": [t]}))
        rc, out, err, _dt = qm.run_cmd([q, "-c", path, "--check"], timeout=10)
        qm.check(rc == 2 and needle in err, "config %r: exit %s, stderr %r" % (t, rc, err[-300:]))
        notes.append(needle)
    rc, out, err, _dt = qm.run_cmd([q, "server", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:9",
                                    "--hide-initial", "--check"], timeout=10)
    qm.check(rc == 2 and "--hide-initial" in err, "server --hide-initial: exit %s, %r" % (rc, err[-300:]))
    env = dict(os.environ)
    env.update(tp.sip003_env(("127.0.0.1", 9), ("127.0.0.1", 1), "mode=quic;hideInitial=maybe"))
    rc, out, err, _dt = qm.run_cmd([q, "plugin", "--check"], timeout=10, env=env)
    qm.check(rc == 2 and "'hideInitial' 'maybe': want true or false" in err,
             "plugin hideInitial=maybe: exit %s, %r" % (rc, err[-300:]))
    cfg["tunnels"][0]["hideInitial"] = True
    path = c.write_file("good.json", json.dumps(cfg))
    rc, out, err, _dt = qm.run_cmd([q, "-c", path, "--check"], timeout=10)
    qm.check(rc == 0, "hideInitial true: exit %s, %r" % (rc, err[-300:]))
    return "; ".join(notes)


def first_flight_len(log):
    """Client datagrams sent before the first datagram from the server."""
    n = 0
    for d, _cl, _t, _b in log:
        if d == "s2c":
            break
        n += 1
    return n


def case_with_key(c):
    """With aes-128-gcm the option changes nothing: no decoy."""
    e, sp, saddr, _m = start_server(c, "quicmux", security="aes-128-gcm", key="k")
    rl = c.udp_relay(saddr)
    cp, caddr = client_through(c, rl.addr, hide=True, security="aes-128-gcm", key="k")
    qm.check_transfer(caddr, conns=1, nbytes=64 * 1024, seed=31, timeout=30).raise_if_failed()
    mine = client_datagrams(rl.datagrams())
    qm.check(mine and len(mine[0][3]) >= 1200,
             "with a key the first datagram should be the (encrypted) Initial, got %d bytes"
             % (len(mine[0][3]) if mine else -1))
    return "first datagram %d bytes" % len(mine[0][3])


def main():
    r = qm.Runner("test_hidden_initial")
    r.run_parallel([
        ("hidden.plain.first-datagram-shows-sni", case_plain, ()),
        ("hidden.qm-client.qm-server", case_hidden, ("quicmux",)),
        ("hidden.qm-client.v2ray-server", case_hidden, ("v2ray",)),
        ("hidden.plugin-client.ss-v2ray-plugin-server", case_plugin, ()),
        ("hidden.with-key-does-nothing", case_with_key, ()),
        ("hidden.bad-values", case_bad_values, ()),
        ("hidden.decoys-unanswered.qm-server", case_decoys_unanswered, ("quicmux",)),
        ("hidden.decoys-unanswered.v2ray-server", case_decoys_unanswered, ("v2ray",)),
    ], workers=2)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
