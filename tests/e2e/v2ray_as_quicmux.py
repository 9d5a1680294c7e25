#!/usr/bin/python3
"""A stand-in for the quicmux program, made of the real v2ray, to validate the test
harness itself (not a test; CTest does not run it):

    QUICMUX_BIN=tests/e2e/v2ray_as_quicmux.py python3 tests/e2e/test_e2e.py

It takes quicmux's command line, checks it the way quicmux must (exit 2 and one line on
stderr for bad input), writes the equivalent v2ray config and exec()s v2ray, so the PID
that owns the sockets is the one the test started.  TLS options are checked for files and
otherwise ignored.
"""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402

SEC = ["none", "aes-128-gcm", "chacha20-poly1305"]
HDR = ["none", "srtp", "utp", "wechat-video", "dtls", "wireguard"]
LVL = ["debug", "info", "warning", "error", "none"]
USAGE = """usage: quicmux client --listen HOST:PORT --server HOST:PORT [options]
       quicmux server --listen HOST:PORT --target HOST:PORT [options]
(v2ray stand-in used to validate the quicmux test harness)"""


def die(msg):
    sys.stderr.write("quicmux: %s\n" % msg)
    sys.exit(2)


def parse_addr(opt, s):
    if s.startswith("["):
        end = s.find("]")
        if end < 0 or s[end + 1:end + 2] != ":":
            die("bad address for %s: %r (expected HOST:PORT or [IPv6]:PORT)" % (opt, s))
        host, port = s[1:end], s[end + 2:]
    else:
        host, sep, port = s.rpartition(":")
        if not sep or not host or ":" in host:
            die("bad address for %s: %r (expected HOST:PORT or [IPv6]:PORT)" % (opt, s))
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        die("bad port for %s: %r (expected 1-65535)" % (opt, s))
    return host, int(port)


def main(argv):
    if not argv:
        die("missing subcommand (expected client or server)")
    if argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if argv[0] == "--version":
        print("quicmux 0.0.0-v2ray-stand-in")
        return 0
    mode = argv[0]
    if mode not in ("client", "server"):
        die("unknown subcommand %r (expected client or server)" % mode)
    opts = {"--security": "none", "--key": "", "--header": "none", "--log-level": "warning"}
    valued = {"--listen", "--server", "--target", "--security", "--key", "--header", "--sni", "--ca", "--alpn",
              "--tls-cert", "--tls-key", "--max-streams", "--log-level"}
    flags = {"--insecure"}
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(USAGE)
            return 0
        if a in flags:
            opts[a] = True
            i += 1
            continue
        if a not in valued:
            die("unknown option %r" % a)
        if i + 1 >= len(argv):
            die("option %s needs a value" % a)
        opts[a] = argv[i + 1]
        i += 2
    if opts["--security"] not in SEC:
        die("unknown --security %r (allowed: %s)" % (opts["--security"], ", ".join(SEC)))
    if opts["--header"] not in HDR:
        die("unknown --header %r (allowed: %s)" % (opts["--header"], ", ".join(HDR)))
    if opts["--log-level"] not in LVL:
        die("unknown --log-level %r (allowed: %s)" % (opts["--log-level"], ", ".join(LVL)))
    if "--max-streams" in opts and not opts["--max-streams"].isdigit():
        die("bad --max-streams %r (expected a positive number)" % opts["--max-streams"])
    for f in ("--ca", "--tls-cert", "--tls-key"):
        if f in opts and not os.path.isfile(opts[f]):
            die("%s: cannot read file %s" % (f, opts[f]))
    if "--listen" not in opts:
        die("missing required option --listen")
    peer_opt = "--server" if mode == "client" else "--target"
    if peer_opt not in opts:
        die("missing required option %s" % peer_opt)
    lhost, lport = parse_addr("--listen", opts["--listen"])
    phost, pport = parse_addr(peer_opt, opts[peer_opt])
    sec, key, hdr = opts["--security"], opts["--key"], opts["--header"]
    if mode == "client":
        cfg = qm.v2ray_client_config(lhost, lport, phost, pport, sec, key, hdr)
    else:
        cfg = qm.v2ray_server_config(lhost, lport, phost, pport, sec, key, hdr)
    cfg["log"]["loglevel"] = opts["--log-level"]
    fd, path = tempfile.mkstemp(prefix="v2ray-as-quicmux.", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f)
    args = qm.v2ray_argv(path)
    sys.stdout.flush()
    os.execv(args[0], args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
