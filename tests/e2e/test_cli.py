#!/usr/bin/env python3
"""quicmux command line: bad input -> exit 2 with one line on stderr naming the problem;
--help / --version; SIGTERM/SIGINT -> clean exit 0."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402

ALLOWED_SECURITY = ["none", "aes-128-gcm", "chacha20-poly1305"]
ALLOWED_HEADER = ["none", "srtp", "utp", "wechat-video", "dtls", "wireguard"]


def run_qm(args, timeout=5):
    qm.require_quicmux()
    return qm.run_cmd([qm.quicmux_bin()] + args, timeout=timeout)


def expect_usage_error(c, args, needles, allowed=()):
    """args must exit 2 quickly with exactly one non-empty line on stderr that contains
    one of `needles` (case-insensitive) and every value in `allowed`."""
    rc, out, err, dt = run_qm(args)
    shown = "stderr=%r stdout=%r" % (err[-400:], out[-200:])
    qm.check(rc is not None, "did not exit within 5s (it probably started running): %s" % shown)
    qm.check(rc == 2, "exit status %s, expected 2; %s" % (rc, shown))
    lines = [ln for ln in err.splitlines() if ln.strip()]
    qm.check(len(lines) >= 1, "nothing on stderr; %s" % shown)
    qm.check(len(lines) == 1, "expected one line on stderr, got %d: %r" % (len(lines), err[-400:]))
    low = lines[0].lower()
    qm.check(any(n.lower() in low for n in needles),
             "stderr does not name the problem (looked for %s): %r" % (" or ".join(repr(n) for n in needles), lines[0]))
    missing = [a for a in allowed if a.lower() not in low]
    qm.check(not missing, "stderr does not list the allowed value(s) %s: %r" % (", ".join(missing), lines[0]))
    return "exit 2: %s" % lines[0].strip()[:160]


def client_args(extra=(), listen=None, server=None):
    listen = listen or qm.hostport("127.0.0.1", qm.free_tcp_port())
    server = server or qm.hostport("127.0.0.1", qm.free_udp_port())
    return ["client", "--listen", listen, "--server", server] + list(extra)


def server_args(extra=(), listen=None, target=None):
    listen = listen or qm.hostport("127.0.0.1", qm.free_udp_port())
    target = target or qm.hostport("127.0.0.1", qm.free_tcp_port())
    return ["server", "--listen", listen, "--target", target] + list(extra)


def make_cert(c):
    """A self-signed ECDSA P-256 cert+key with openssl (None if openssl is missing)."""
    import shutil
    if not shutil.which("openssl"):
        return None, None
    cert = os.path.join(c.dir, "cert.pem")
    key = os.path.join(c.dir, "key.pem")
    rc, out, err, _ = qm.run_cmd(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                                  "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                                  "-subj", "/CN=quic.internal.v2ray.com",
                                  "-addext", "subjectAltName=DNS:quic.internal.v2ray.com"], timeout=20)
    if rc != 0:
        return None, None
    return cert, key


# ----------------------------------------------------------------------------- cases

def case_help(c):
    rc, out, err, dt = run_qm(["--help"])
    text = out + err
    qm.check(rc == 0, "--help exit status %s, expected 0; output %r" % (rc, text[-300:]))
    qm.check("client" in text and "server" in text, "--help does not mention both subcommands: %r" % text[:400])
    return "%d lines" % len(text.splitlines())


def case_version(c):
    rc, out, err, dt = run_qm(["--version"])
    text = (out + err).strip()
    qm.check(rc == 0, "--version exit status %s, expected 0; output %r" % (rc, text[-300:]))
    import re
    qm.check(re.search(r"\d+\.\d+", text) is not None, "--version prints no version number: %r" % text[:200])
    return text.splitlines()[0][:100]


def case_no_subcommand(c):
    rc, out, err, dt = run_qm([])
    qm.check(rc == 2, "no arguments: exit status %s, expected 2; stderr %r" % (rc, err[-300:]))
    qm.check(err.strip() != "", "no arguments: nothing on stderr")


def case_bad_subcommand(c):
    return expect_usage_error(c, ["frobnicate", "--listen", "127.0.0.1:1"], ["frobnicate"])


def main():
    r = qm.Runner("test_cli")
    if not qm.have_quicmux():
        r.info("quicmux binary missing: %s" % qm.quicmux_bin())
    r.run("cli.help", case_help)
    r.run("cli.version", case_version)
    r.run("cli.no-subcommand", case_no_subcommand)
    r.run("cli.unknown-subcommand", case_bad_subcommand)

    errs = [
        ("cli.client.unknown-security",
         lambda: client_args(["--security", "aes-256-cfb"]), ["aes-256-cfb", "security"], ALLOWED_SECURITY),
        ("cli.server.unknown-security",
         lambda: server_args(["--security", "aes-256-cfb"]), ["aes-256-cfb", "security"], ALLOWED_SECURITY),
        ("cli.client.unknown-header",
         lambda: client_args(["--header", "bogus-hdr"]), ["bogus-hdr", "header"], ALLOWED_HEADER),
        ("cli.server.unknown-header",
         lambda: server_args(["--header", "bogus-hdr"]), ["bogus-hdr", "header"], ALLOWED_HEADER),
        ("cli.client.listen-without-port",
         lambda: client_args(listen="127.0.0.1"), ["127.0.0.1", "listen"], ()),
        ("cli.client.listen-port-70000",
         lambda: client_args(listen="127.0.0.1:70000"), ["70000", "listen", "port"], ()),
        ("cli.client.server-without-port",
         lambda: client_args(server="127.0.0.1"), ["127.0.0.1", "server"], ()),
        ("cli.client.server-bad-ipv6",
         lambda: client_args(server="[::1:443"), ["[::1:443", "server"], ()),
        ("cli.server.listen-port-70000",
         lambda: server_args(listen="127.0.0.1:70000"), ["70000", "listen", "port"], ()),
        ("cli.server.target-without-port",
         lambda: server_args(target="127.0.0.1"), ["127.0.0.1", "target"], ()),
        ("cli.client.missing-server",
         lambda: ["client", "--listen", qm.hostport("127.0.0.1", qm.free_tcp_port())], ["server"], ()),
        ("cli.client.missing-listen",
         lambda: ["client", "--server", qm.hostport("127.0.0.1", qm.free_udp_port())], ["listen"], ()),
        ("cli.server.missing-target",
         lambda: ["server", "--listen", qm.hostport("127.0.0.1", qm.free_udp_port())], ["target"], ()),
        ("cli.client.unknown-option",
         lambda: client_args(["--frobnicate", "1"]), ["frobnicate"], ()),
        ("cli.server.unknown-option",
         lambda: server_args(["--frobnicate"]), ["frobnicate"], ()),
        ("cli.client.bad-log-level",
         lambda: client_args(["--log-level", "loud"]), ["loud", "log-level"], ()),
        ("cli.server.bad-max-streams",
         lambda: server_args(["--max-streams", "abc"]), ["abc", "max-streams"], ()),
        ("cli.client.missing-ca-file",
         lambda: client_args(["--ca", "/nonexistent/qm-ca.pem"]), ["/nonexistent/qm-ca.pem", "qm-ca.pem"], ()),
    ]
    for name, argf, needles, allowed in errs:
        r.run(name, lambda c, argf=argf, needles=needles, allowed=allowed:
              expect_usage_error(c, argf(), needles, allowed))

    def missing_key(c):
        cert, _key = make_cert(c)
        if cert is None:
            cert = c.write_file("dummy-cert.pem", "not a certificate\n")
        badkey = os.path.join(c.dir, "no-such-key.pem")
        return expect_usage_error(c, server_args(["--tls-cert", cert, "--tls-key", badkey]),
                                  [badkey, "no-such-key.pem", "tls-key"])
    r.run("cli.server.missing-tls-key-file", missing_key)

    def missing_cert(c):
        _cert, key = make_cert(c)
        if key is None:
            key = c.write_file("dummy-key.pem", "not a key\n")
        badcert = os.path.join(c.dir, "no-such-cert.pem")
        return expect_usage_error(c, server_args(["--tls-cert", badcert, "--tls-key", key]),
                                  [badcert, "no-such-cert.pem", "tls-cert"])
    r.run("cli.server.missing-tls-cert-file", missing_cert)

    # ---------------------------------------------------------------- signals
    def sig_client(c, sig):
        p, addr = c.qm_client(("127.0.0.1", qm.free_udp_port()))
        time.sleep(0.3)
        rc, dt, killed = p.stop(sig=sig, timeout=5)
        qm.check(not killed, "client still running 5s after %s (killed)" % sig.name)
        qm.check(rc == 0, "client exit status %s after %s, expected 0" % (rc, sig.name))
        return "exit 0 after %.2fs" % dt

    def sig_server(c, sig):
        p, addr = c.qm_server(("127.0.0.1", qm.free_tcp_port()))
        time.sleep(0.3)
        rc, dt, killed = p.stop(sig=sig, timeout=5)
        qm.check(not killed, "server still running 5s after %s (killed)" % sig.name)
        qm.check(rc == 0, "server exit status %s after %s, expected 0" % (rc, sig.name))
        return "exit 0 after %.2fs" % dt

    def sig_busy(c):
        """SIGTERM while a tunneled connection is open: both ends still exit 0 promptly."""
        t = c.tunnel("quicmux", "quicmux", security="aes-128-gcm", key="k1")
        socks = qm.open_held(t["addr"], 3)
        try:
            rc, dt, killed = t["client"].stop(timeout=5)
            qm.check(not killed and rc == 0, "client with open connections: exit %s after SIGTERM (killed=%s)"
                     % (rc, killed))
            rc2, dt2, killed2 = t["server"].stop(timeout=5)
            qm.check(not killed2 and rc2 == 0, "server with open connections: exit %s after SIGTERM (killed=%s)"
                     % (rc2, killed2))
        finally:
            qm.close_all(socks)
        return "client %.2fs, server %.2fs" % (dt, dt2)

    r.run("cli.client.sigterm", sig_client, signal.SIGTERM)
    r.run("cli.client.sigint", sig_client, signal.SIGINT)
    r.run("cli.server.sigterm", sig_server, signal.SIGTERM)
    r.run("cli.server.sigint", sig_server, signal.SIGINT)
    r.run("cli.sigterm-with-open-connections", sig_busy)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
