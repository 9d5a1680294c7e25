#!/usr/bin/env python3
"""quicmux as a shadowsocks SIP003 plugin, against Debian's shadowsocks-libev and
ss-v2ray-plugin in mode=quic (SPEC section 8).

* (a) ss-tunnel/ss-local + quicmux plugin  <->  ss-server + ss-v2ray-plugin
* (b) ss-tunnel/ss-local + ss-v2ray-plugin <->  ss-server + quicmux plugin
* (c) quicmux plugin on both ends
  each byte-exact through ss-tunnel (fixed target = an echo server) and through a SOCKS5
  CONNECT via ss-local (a tiny SOCKS5 client lives here);
* quicmux plugin <-> quicmux plugin with no shadowsocks at all: the SIP003 address mapping,
  escaping in SS_PLUGIN_OPTIONS, certRaw, several server addresses ("a|b": a server listens
  on each, a client uses each as one server), TLS really
  verified (wrong host or no cert = no data);
* bad input: mode=websocket, unknown key, missing default certificate -> exit 2 with one
  clear line; SIGTERM/SIGINT -> exit 0.

TLS: a self-signed ECDSA P-256 certificate with SAN DNS:<host> and CA:TRUE, made with
openssl (or GnuTLS certtool) in each run.  Everything on loopback.
"""

import os
import random
import re
import shutil
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402
from qmtest import MiB  # noqa: E402

HOST = "quicmux-plugin.test"
PASSWORD = "qm-plugin-pass"
METHOD = "chacha20-ietf-poly1305"
SS_BINS = ["ss-server", "ss-local", "ss-tunnel"]


# ----------------------------------------------------------------------------- helpers

def need(*names):
    missing = [n for n in names if not shutil.which(n)]
    if missing:
        raise qm.Skip("not installed: %s" % ", ".join(missing))


def v2ray_plugin():
    return shutil.which("ss-v2ray-plugin") or shutil.which("v2ray-plugin")


def make_cert(c, host=HOST, sub=""):
    """A self-signed ECDSA P-256 certificate for `host` (SAN DNS, CA:TRUE) and its key.
    Returns (cert_path, key_path); Skip if neither openssl nor certtool exists."""
    d = os.path.join(c.dir, sub) if sub else c.dir
    os.makedirs(d, exist_ok=True)
    cert = os.path.join(d, "cert.pem")
    key = os.path.join(d, "key.pem")
    if shutil.which("openssl"):
        rc, out, err, _ = qm.run_cmd(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=" + host,
             "-addext", "subjectAltName=DNS:" + host, "-addext", "basicConstraints=critical,CA:TRUE"],
            timeout=30)
        qm.check(rc == 0, "openssl failed: %s" % err[-300:])
    elif shutil.which("certtool"):
        tmpl = c.write_file("cert.tmpl", 'cn = "%s"\ndns_name = "%s"\nca\nsigning_key\ncert_signing_key\n'
                            'tls_www_server\nexpiration_days = 30\n' % (host, host))
        rc, out, err, _ = qm.run_cmd(["certtool", "--generate-privkey", "--key-type", "ecdsa", "--curve",
                                      "secp256r1", "--outfile", key], timeout=30)
        qm.check(rc == 0, "certtool key failed: %s" % err[-300:])
        rc, out, err, _ = qm.run_cmd(["certtool", "--generate-self-signed", "--load-privkey", key,
                                      "--template", tmpl, "--outfile", cert], timeout=30)
        qm.check(rc == 0, "certtool cert failed: %s" % err[-300:])
    else:
        raise qm.Skip("neither openssl nor certtool is installed")
    return cert, key


def cert_raw(cert):
    """The base64 body of a PEM certificate, on one line (what Android passes)."""
    with open(cert) as f:
        lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith("-----")]
    return "".join(lines)


def plugin_cmd(kind):
    if kind == "quicmux":
        qm.require_quicmux()
        return qm.quicmux_bin()
    p = v2ray_plugin()
    if not p:
        raise qm.Skip("ss-v2ray-plugin not installed")
    return p


def sip003_escape(v):
    return v.replace("\\", "\\\\").replace(";", "\\;").replace("=", "\\=")


def client_opts(cert, host=HOST, extra=""):
    return "mode=quic;host=%s;cert=%s%s" % (host, sip003_escape(cert), extra)


def server_opts(cert, key, host=HOST, extra=""):
    return "server;mode=quic;host=%s;cert=%s;key=%s%s" % (host, sip003_escape(cert), sip003_escape(key), extra)


def ss_server(c, plugin, opts, port=None):
    need(*SS_BINS)
    port = port or qm.free_udp_port()
    p = c.spawn(["ss-server", "-s", "127.0.0.1", "-p", str(port), "-k", PASSWORD, "-m", METHOD,
                 "--plugin", plugin_cmd(plugin), "--plugin-opts", opts, "-v"], "ss-server+" + plugin)
    qm.wait_udp_bound(port, timeout=15, proc=p)  # bound by the plugin, a child of ss-server
    return p, port


def ss_client(c, tool, plugin, opts, server_port, target=None):
    """ss-tunnel (fixed target) or ss-local (SOCKS5) with a plugin; returns (proc, addr)."""
    need(*SS_BINS)
    lport = qm.free_tcp_port()
    argv = [tool, "-s", "127.0.0.1", "-p", str(server_port), "-b", "127.0.0.1", "-l", str(lport),
            "-k", PASSWORD, "-m", METHOD, "--plugin", plugin_cmd(plugin), "--plugin-opts", opts, "-v"]
    if tool == "ss-tunnel":
        argv += ["-L", qm.hostport(*target)]
    p = c.spawn(argv, "%s+%s" % (tool, plugin))
    qm.wait_tcp_listen(lport, timeout=15, proc=p)
    # ss-local listens at once, but connects each connection to the plugin's own port:
    # wait for the plugin (its child) to listen too, or the first connections race it.
    qm.wait_until(lambda: child_listening(p.pid), 15, "the plugin under %s to listen" % tool, proc=p)
    return p, ("127.0.0.1", lport)


def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        if int(st.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(d))
    return out


def child_listening(pid):
    """Does a child (or grandchild) of pid have a listening TCP socket?"""
    todo = children_of(pid)
    while todo:
        k = todo.pop()
        inodes = qm.socket_inodes(k)
        if any(st == "0A" and ino in inodes for _port, st, ino in qm.tcp_rows()):
            return True
        todo += children_of(k)
    return False


def socks5_connect(addr, target, timeout=10):
    """A SOCKS5 CONNECT (no authentication) to target (an IPv4 host, port)."""
    s = socket.create_connection(addr, timeout=timeout)
    try:
        s.settimeout(timeout)
        s.sendall(b"\x05\x01\x00")
        rep = recv_exact(s, 2)
        qm.check(rep == b"\x05\x00", "SOCKS5 greeting answered %r" % rep)
        s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(target[0]) + struct.pack("!H", target[1]))
        rep = recv_exact(s, 4)
        qm.check(rep[:2] == b"\x05\x00", "SOCKS5 CONNECT answered %r" % rep)
        if rep[3] == 1:
            recv_exact(s, 6)
        elif rep[3] == 4:
            recv_exact(s, 18)
        else:
            recv_exact(s, recv_exact(s, 1)[0] + 2)
        return s
    except BaseException:
        s.close()
        raise


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise qm.CheckFailed("EOF after %d of %d bytes" % (len(buf), n))
        buf += d
    return buf


def echo_transfer(connect, conns=4, nbytes=MiB, seed=1, timeout=60):
    """conns concurrent connections made by connect(); each sends nbytes of seeded data
    while reading, and must read back exactly the same bytes.  Shadowsocks-libev does not
    pass a half-close on (an EOF from the application closes the whole connection), so the
    sending side is only closed after the whole echo came back."""
    results = [None] * conns
    deadline = time.monotonic() + timeout

    def one(i):
        data = random.Random(seed * 7919 + i).randbytes(nbytes)
        try:
            s = connect()
        except Exception as e:  # noqa: BLE001 - reported per connection
            results[i] = "conn %d: connect: %r" % (i, e)
            return
        err = []

        def writer():
            try:
                s.sendall(data)
            except OSError as e:
                err.append("write: %r" % e)
        w = threading.Thread(target=writer, daemon=True)
        w.start()
        got = bytearray()
        try:
            s.settimeout(0.5)
            while len(got) < nbytes and time.monotonic() < deadline:
                try:
                    d = s.recv(262144)
                except socket.timeout:
                    continue
                if not d:
                    break
                got += d
        except OSError as e:
            err.append("read: %r" % e)
        finally:
            w.join(max(0.1, deadline - time.monotonic()))
            s.close()
        if len(got) != nbytes:
            results[i] = "conn %d: got %d/%d bytes%s" % (i, len(got), nbytes, (" (" + "; ".join(err) + ")") if err else "")
        elif bytes(got) != data:
            results[i] = "conn %d: bytes differ" % i
        else:
            results[i] = "ok"

    t0 = time.monotonic()
    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(max(0.1, deadline - time.monotonic()) + 5)
    bad = [r or "conn still running" for r in results if r != "ok"]
    qm.check(not bad, "%d/%d connections failed: %s" % (len(bad), conns, "; ".join(bad[:4])))
    dt = time.monotonic() - t0
    return "%d conns x %.1f MiB echoed byte-exact in %.2fs" % (conns, nbytes / MiB, dt)


def sip003_env(remote, local, opts=None):
    env = {"SS_REMOTE_HOST": remote[0], "SS_REMOTE_PORT": str(remote[1]),
           "SS_LOCAL_HOST": local[0], "SS_LOCAL_PORT": str(local[1])}
    if opts is not None:
        env["SS_PLUGIN_OPTIONS"] = opts
    return env


def qm_plugin(c, env, name, wait_tcp=None, wait_udp=None, args=()):
    """quicmux started as shadowsocks would: no arguments, the SIP003 variables set."""
    qm.require_quicmux()
    p = c.spawn([qm.quicmux_bin()] + list(args), name, env=env)
    if wait_tcp:
        qm.wait_tcp_listen(wait_tcp, pid=p.pid, timeout=10, proc=p)
    for port in wait_udp or ():
        qm.wait_udp_bound(port, pid=p.pid, timeout=10, proc=p)
    return p


def expect_exit2(c, env, needles, args=()):
    qm.require_quicmux()
    rc, out, err, dt = qm.run_cmd([qm.quicmux_bin()] + list(args), timeout=10, env=env)
    shown = "stderr=%r" % err[-400:]
    qm.check(rc == 2, "exit status %s, expected 2; %s" % (rc, shown))
    lines = [ln for ln in err.splitlines() if ln.strip()]
    qm.check(len(lines) == 1, "expected one line on stderr, got %d: %r" % (len(lines), err[-400:]))
    low = lines[0].lower()
    missing = [n for n in needles if n.lower() not in low]
    qm.check(not missing, "stderr does not name %s: %r" % (", ".join(missing), lines[0]))
    return "exit 2 in %.2fs: %s" % (dt, lines[0][:150])


# ----------------------------------------------------------------------------- cases

def interop(c, client_plugin, server_plugin, tool):
    cert, key = make_cert(c)
    echo = c.echo_server()
    _sp, sport = ss_server(c, server_plugin, server_opts(cert, key))
    _cp, addr = ss_client(c, tool, client_plugin, client_opts(cert), sport, target=echo.addr)
    if tool == "ss-tunnel":
        res = echo_transfer(lambda: socket.create_connection(addr, timeout=10), conns=4, nbytes=MiB, seed=3)
    else:
        res = echo_transfer(lambda: socks5_connect(addr, echo.addr), conns=4, nbytes=MiB, seed=4)
    qm.check(echo.accepted >= 4, "the echo target saw %d connections, expected 4" % echo.accepted)
    return res


def direct(c):
    """quicmux plugin client -> quicmux plugin server -> echo, with no shadowsocks: the SIP003
    variables map as SPEC 8.1 says, and a cert path with ';' and '=' escaped works."""
    cert, key = make_cert(c, sub="odd;dir=x")
    echo = c.echo_server()
    qport = qm.free_udp_port()
    lport = qm.free_tcp_port()
    # Server: listens on UDP SS_REMOTE_*, forwards to SS_LOCAL_* (the echo target).
    qm_plugin(c, sip003_env(("127.0.0.1", qport), echo.addr, server_opts(cert, key)), "qm-plugin-server",
              wait_udp=[qport])
    # Client: listens on TCP SS_LOCAL_*, dials SS_REMOTE_*.
    qm_plugin(c, sip003_env(("127.0.0.1", qport), ("127.0.0.1", lport), client_opts(cert)), "qm-plugin-client",
              wait_tcp=lport)
    res = qm.check_transfer(("127.0.0.1", lport), conns=4, nbytes=2 * MiB, seed=9, timeout=30)
    res.raise_if_failed()
    return res.summary()


def cert_raw_case(c):
    """The client trusts the server through certRaw (base64 body) instead of cert."""
    cert, key = make_cert(c)
    echo = c.echo_server()
    qport = qm.free_udp_port()
    lport = qm.free_tcp_port()
    qm_plugin(c, sip003_env(("127.0.0.1", qport), echo.addr, server_opts(cert, key)), "qm-plugin-server",
              wait_udp=[qport])
    opts = "mode=quic;host=%s;certRaw=%s" % (HOST, sip003_escape(cert_raw(cert)))
    qm_plugin(c, sip003_env(("127.0.0.1", qport), ("127.0.0.1", lport), opts), "qm-plugin-client", wait_tcp=lport)
    res = qm.check_transfer(("127.0.0.1", lport), conns=2, nbytes=MiB, seed=10, timeout=30)
    res.raise_if_failed()
    return res.summary()


def cert_raw_tmpfile_removed(c):
    """certRaw goes to a private temporary file in $TMPDIR, removed at exit."""
    cert, key = make_cert(c)
    tmpdir = os.path.join(c.dir, "tmp")
    os.makedirs(tmpdir)
    lport = qm.free_tcp_port()
    env = sip003_env(("127.0.0.1", qm.free_udp_port()), ("127.0.0.1", lport),
                     "mode=quic;host=%s;certRaw=%s" % (HOST, cert_raw(cert)))
    env["TMPDIR"] = tmpdir
    p = qm_plugin(c, env, "qm-plugin-client", wait_tcp=lport)
    files = os.listdir(tmpdir)
    qm.check(len(files) == 1, "expected one temporary file in $TMPDIR, found %r" % files)
    mode = os.stat(os.path.join(tmpdir, files[0])).st_mode & 0o777
    qm.check(mode == 0o600, "temporary certificate file has mode %o, expected 600" % mode)
    rc, dt, killed = p.stop(timeout=5)
    qm.check(rc == 0 and not killed, "exit %s after SIGTERM (killed=%s)" % (rc, killed))
    left = os.listdir(tmpdir)
    qm.check(not left, "temporary files left after exit: %r" % left)
    return "%s mode 600, removed at exit" % files[0]


def multi_listen(c):
    """Server SS_REMOTE_HOST "127.0.0.1|::1": one UDP listener per address."""
    cert, key = make_cert(c)
    echo = c.echo_server()
    qport = qm.free_udp_port()
    p = qm_plugin(c, sip003_env(("127.0.0.1|::1", qport), echo.addr, server_opts(cert, key)), "qm-plugin-server")
    qm.wait_until(lambda: len([x for x in qm.udp_sockets_of(p.pid) if x[0] == qport]) == 2, 10,
                  "two UDP sockets on port %d" % qport, proc=p)
    out = []
    for host in ("127.0.0.1", "::1"):
        lport = qm.free_tcp_port()
        qm_plugin(c, sip003_env((host, qport), ("127.0.0.1", lport), client_opts(cert)), "qm-client-" + host,
                  wait_tcp=lport)
        res = qm.check_transfer(("127.0.0.1", lport), conns=2, nbytes=256 * 1024, seed=12, timeout=30)
        res.raise_if_failed("via " + host)
        out.append(host)
    # a client given both (ss-local passes its servers as "a|b"): two servers, both used
    lport = qm.free_tcp_port()
    cp = qm_plugin(c, sip003_env(("127.0.0.1|::1", qport), ("127.0.0.1", lport), client_opts(cert)),
                   "qm-client-both", wait_tcp=lport)
    res = qm.check_transfer(("127.0.0.1", lport), conns=4, nbytes=256 * 1024, seed=13, timeout=30)
    res.raise_if_failed("via both")
    cp.send_signal(signal.SIGUSR1)
    want = ["server 127.0.0.1:%d up" % qport, "server [::1]:%d up" % qport]
    qm.wait_until(lambda: all(w in cp.log() for w in want), 10, "a SIGUSR1 line per server", proc=cp)
    used = re.findall(r"server (\S+) up: sessions \d+ \(\d+ handshaking\), streams \d+, opened (\d+)", cp.log())
    qm.check(len(used) == 2 and all(int(n) >= 1 for _a, n in used), "servers used: %s" % used)
    return "served on " + " and ".join(out) + "; a client with both used both"


def port_range(c):
    """Server plugin option ports=P1-P2: one UDP socket per port of the range (which holds
    SS_REMOTE_PORT); a quicmux plugin client given another port of the range carries data.
    A range without the server port (on a server, or on a client, where ports= is the
    server's range to hop in) stops with exit 2."""
    cert, key = make_cert(c)
    echo = c.echo_server()
    base = qm.free_udp_range(5)
    rng = "%d-%d" % (base, base + 4)
    p = qm_plugin(c, sip003_env(("127.0.0.1", base + 2), echo.addr, server_opts(cert, key, extra=";ports=" + rng)),
                  "qm-plugin-server", wait_udp=range(base, base + 5))
    lport = qm.free_tcp_port()
    qm_plugin(c, sip003_env(("127.0.0.1", base + 4), ("127.0.0.1", lport), client_opts(cert)), "qm-plugin-client",
              wait_tcp=lport)
    res = qm.check_transfer(("127.0.0.1", lport), conns=2, nbytes=MiB, seed=13, timeout=30)
    res.raise_if_failed()
    qm.check(p.alive(), "the server plugin exited")
    expect_exit2(c, sip003_env(("127.0.0.1", base + 9), echo.addr, server_opts(cert, key, extra=";ports=" + rng)),
                 ["ports", "does not include the server port %d" % (base + 9)])
    # a client's ports= is the server's range (it hops between them, test_hop.py):
    # it must hold the server port too
    expect_exit2(c, sip003_env(("127.0.0.1", base + 9), ("127.0.0.1", lport), client_opts(cert, extra=";ports=" + rng)),
                 ["ports", "does not include the server port %d" % (base + 9)])
    expect_exit2(c, sip003_env(("127.0.0.1", base), echo.addr, server_opts(cert, key, extra=";ports=%d-%d" % (
        base, base + 1024))), ["ports", "1025 ports, at most 1024"])
    return "ports=%s: 5 UDP sockets, a client on the last port: %s" % (rng, res.summary())


def verify_negative(c, what):
    """TLS is really verified: a wrong host, or no cert (system roots only), carries nothing."""
    cert, key = make_cert(c)
    echo = c.echo_server()
    qport = qm.free_udp_port()
    lport = qm.free_tcp_port()
    qm_plugin(c, sip003_env(("127.0.0.1", qport), echo.addr, server_opts(cert, key)), "qm-plugin-server",
              wait_udp=[qport])
    opts = client_opts(cert, host="other.test") if what == "wrong-host" else "mode=quic;host=%s" % HOST
    qm_plugin(c, sip003_env(("127.0.0.1", qport), ("127.0.0.1", lport), opts), "qm-plugin-client", wait_tcp=lport)
    got, outcome, dt = qm.probe_no_data(("127.0.0.1", lport), wait=6)
    qm.check(got == 0, "%s: %d bytes came back; the certificate was not checked" % (what, got))
    qm.check(echo.accepted == 0, "%s: the target saw a connection" % what)
    return "%s after %.1fs, nothing carried" % (outcome, dt)


def bad_mode(c):
    env = sip003_env(("127.0.0.1", qm.free_udp_port()), ("127.0.0.1", qm.free_tcp_port()), "mode=websocket")
    return expect_exit2(c, env, ["websocket", "quic", "mode"])


def bad_mode_flag(c):
    return expect_exit2(c, {}, ["websocket", "quic"], args=["plugin", "-mode", "websocket"])


def bad_mode_via_ss_local(c):
    """ss-local starts quicmux with mode=websocket: the clear error reaches ss-local's log."""
    need(*SS_BINS)
    lport = qm.free_tcp_port()
    p = c.spawn(["ss-local", "-s", "127.0.0.1", "-p", str(qm.free_udp_port()), "-b", "127.0.0.1", "-l", str(lport),
                 "-k", PASSWORD, "-m", METHOD, "--plugin", plugin_cmd("quicmux"), "--plugin-opts", "mode=websocket"],
                "ss-local+quicmux")
    qm.wait_until(lambda: "websocket" in p.log() and "want quic" in p.log(), 10, "the plugin's error in ss-local's log")
    line = [ln for ln in p.log().splitlines() if "websocket" in ln][-1]
    return line.strip()[:160]


def unknown_key(c):
    env = sip003_env(("127.0.0.1", qm.free_udp_port()), ("127.0.0.1", qm.free_tcp_port()), "mode=quic;frob=1")
    return expect_exit2(c, env, ["frob", "unknown"])


def bad_escape(c):
    env = sip003_env(("127.0.0.1", qm.free_udp_port()), ("127.0.0.1", qm.free_tcp_port()), "mode=quic;host=a\\")
    return expect_exit2(c, env, ["SS_PLUGIN_OPTIONS", "\\"])


def missing_default_cert(c):
    env = sip003_env(("127.0.0.1", qm.free_udp_port()), ("127.0.0.1", qm.free_tcp_port()),
                     "server;mode=quic;host=nocert.test")
    env["HOME"] = c.dir
    return expect_exit2(c, env, [".acme.sh/nocert.test/fullchain.cer"])


def signal_stop(c, sig):
    lport = qm.free_tcp_port()
    p = qm_plugin(c, sip003_env(("127.0.0.1", qm.free_udp_port()), ("127.0.0.1", lport), "mode=quic"),
                  "qm-plugin-client", wait_tcp=lport)
    rc, dt, killed = p.stop(sig=sig, timeout=5)
    qm.check(not killed and rc == 0, "exit %s after %s (killed=%s)" % (rc, sig.name, killed))
    return "exit 0 after %.2fs" % dt


def flags_mode(c):
    """The same options as single-dash flags: quicmux plugin -server -host ... (no SIP003)."""
    cert, key = make_cert(c)
    echo = c.echo_server()
    qport = qm.free_udp_port()
    lport = qm.free_tcp_port()
    qm.require_quicmux()
    ps = c.spawn([qm.quicmux_bin(), "plugin", "-server", "-mode", "quic", "-host", HOST, "-cert", cert, "-key", key,
                  "-localAddr", "127.0.0.1", "-localPort", str(qport), "-remoteAddr", "127.0.0.1",
                  "-remotePort", str(echo.port), "-loglevel", "info"], "qm-plugin-flags-server")
    qm.wait_udp_bound(qport, pid=ps.pid, timeout=10, proc=ps)
    pc = c.spawn([qm.quicmux_bin(), "plugin", "-mode=quic", "--host", HOST, "-cert=" + cert, "-localAddr",
                  "127.0.0.1", "-localPort", str(lport), "-remoteAddr", "127.0.0.1", "-remotePort", str(qport),
                  "-fast-open", "-V", "-tls", "-path", "/x", "-mux", "4"], "qm-plugin-flags-client")
    qm.wait_tcp_listen(lport, pid=pc.pid, timeout=10, proc=pc)
    res = qm.check_transfer(("127.0.0.1", lport), conns=2, nbytes=MiB, seed=13, timeout=30)
    res.raise_if_failed()
    return res.summary()


def fwmark(c):
    """fwmark=N puts SO_MARK N on the client's QUIC UDP socket (needs CAP_NET_ADMIN)."""
    if os.geteuid() != 0:
        raise qm.Skip("SO_MARK needs CAP_NET_ADMIN (not root)")
    if not shutil.which("ss"):
        raise qm.Skip("ss (iproute2) not installed")
    cert, key = make_cert(c)
    echo = c.echo_server()
    qport = qm.free_udp_port()
    lport = qm.free_tcp_port()
    qm_plugin(c, sip003_env(("127.0.0.1", qport), echo.addr, server_opts(cert, key)), "qm-plugin-server",
              wait_udp=[qport])
    p = qm_plugin(c, sip003_env(("127.0.0.1", qport), ("127.0.0.1", lport), client_opts(cert, extra=";fwmark=77")),
                  "qm-plugin-client", wait_tcp=lport)
    socks = qm.open_held(("127.0.0.1", lport), 1)
    try:
        rc, out, err, _ = qm.run_cmd(["ss", "-uanpe"], timeout=10)
        mine = [ln for ln in out.splitlines() if "pid=%d," % p.pid in ln]
        qm.check(mine, "no UDP socket of the plugin client in `ss -uanpe`")
        qm.check(all("fwmark:0x4d" in ln for ln in mine), "UDP socket without fwmark 77 (0x4d): %r" % mine)
    finally:
        qm.close_all(socks)
    return "%d UDP socket(s) with fwmark:0x4d" % len(mine)


def main():
    r = qm.Runner("test_plugin")
    pairs = [("a", "quicmux", "v2ray"), ("b", "v2ray", "quicmux"), ("c", "quicmux", "quicmux")]
    items = []
    for tag, cl, sv in pairs:
        for tool in ("ss-tunnel", "ss-local"):
            name = "plugin.%s.%s-client.%s-server.%s" % (tag, cl, sv, "tunnel" if tool == "ss-tunnel" else "socks5")
            items.append((name, interop, (cl, sv, tool)))
    r.run_parallel(items, workers=2)
    r.run("plugin.direct.sip003-mapping.escaped-cert-path", direct)
    r.run("plugin.direct.certRaw", cert_raw_case)
    r.run("plugin.certRaw.private-tmpfile-removed", cert_raw_tmpfile_removed)
    r.run("plugin.server.several-addresses", multi_listen)
    r.run("plugin.server.port-range", port_range)
    r.run("plugin.flags.single-dash", flags_mode)
    r.run("plugin.fwmark", fwmark)
    r.run("plugin.verify.wrong-host", verify_negative, "wrong-host")
    r.run("plugin.verify.no-cert", verify_negative, "no-cert")
    r.run("plugin.bad-mode.websocket", bad_mode)
    r.run("plugin.bad-mode.flag", bad_mode_flag)
    r.run("plugin.bad-mode.via-ss-local", bad_mode_via_ss_local)
    r.run("plugin.unknown-key", unknown_key)
    r.run("plugin.bad-escape", bad_escape)
    r.run("plugin.server.missing-default-cert", missing_default_cert)
    r.run("plugin.sigterm", signal_stop, signal.SIGTERM)
    r.run("plugin.sigint", signal_stop, signal.SIGINT)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
