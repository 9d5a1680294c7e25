#!/usr/bin/env python3
"""quicmux -c FILE.json: v2ray-style streamSettings in a config file of several tunnels.

* every examples/*.json passes --check (exit 0); two example pairs (aes-128-gcm+srtp, TLS
  with certificate files) and the two-tunnel example run end to end;
* bad configs (unknown key, wrong type, bad header type, header without type, network not
  quic, security tls without serverName, ...) exit 2 with one line naming the JSON path,
  before anything starts;
* v2ray's defaults and traps: no quicSettings = aes-128-gcm with key "" (checked against a
  quicmux server started with --security aes-128-gcm --key "", against one with none, and
  against a real v2ray server with no quicSettings); quicSettings {} = none; "auto" = none;
  transport.quicSettings as the global default; default TLS logs one warning;
* two tunnels in one process both work; SIGUSR1 logs stats per tunnel; SIGHUP reopens the
  --log-file; log lines carry UTC time, level and module; SIGTERM exits 0;
* docs/quicmux.1 is what `quicmux --man` prints (the man page is generated from the table).
"""

import glob
import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402
from qmtest import MiB  # noqa: E402

EXAMPLES = os.path.join(qm.REPO_ROOT, "examples")
SEC_HDR = {"security": "aes-128-gcm", "key": "k1", "header": {"type": "srtp"}}


# ----------------------------------------------------------------------------- helpers

def write_cfg(c, name, cfg):
    return c.write_file(name, json.dumps(cfg, indent=2) if not isinstance(cfg, str) else cfg)


def check_cfg(path):
    qm.require_quicmux()
    return qm.run_cmd([qm.quicmux_bin(), "-c", path, "--check"], timeout=10)


def expect_bad(c, cfg, needles, name="bad.json"):
    """The config must be refused: exit 2, exactly one line on stderr containing every
    needle (the JSON path first of all)."""
    path = write_cfg(c, name, cfg)
    for args in (["--check"], []):
        rc, out, err, dt = qm.run_cmd([qm.quicmux_bin(), "-c", path] + args, timeout=10)
        shown = "stderr=%r stdout=%r" % (err[-500:], out[-200:])
        qm.check(rc is not None, "did not exit within 10s (it started running?): %s" % shown)
        qm.check(rc == 2, "%s: exit status %s, expected 2; %s" % (" ".join(args) or "run", rc, shown))
        lines = [ln for ln in err.splitlines() if ln.strip()]
        qm.check(len(lines) == 1, "expected one line on stderr, got %d: %r" % (len(lines), err[-500:]))
        missing = [n for n in needles if n not in lines[0]]
        qm.check(not missing, "stderr does not contain %s: %r" % (", ".join(repr(m) for m in missing), lines[0]))
    return lines[0].strip()[:200]


def tunnel(role, listen, remote, stream, **extra):
    t = {"role": role, "listen": listen, ("server" if role == "client" else "target"): remote,
         "streamSettings": stream}
    t.update(extra)
    return t


def quic(qs=None, **extra):
    s = {"network": "quic"}
    if qs is not None:
        s["quicSettings"] = qs
    s.update(extra)
    return s


def client_cfg(port, server_port, stream, **extra):
    return {"tunnels": [tunnel("client", "127.0.0.1:%d" % port, "127.0.0.1:%d" % server_port, stream, **extra)]}


def run_cfg(c, cfg, name="qm-config", log_level="info", extra=()):
    """Start quicmux -c on cfg (a dict or a path); wait until every tunnel listens."""
    qm.require_quicmux()
    if isinstance(cfg, dict):
        path = write_cfg(c, name + ".json", cfg)
        data = cfg
    else:
        path = cfg
        with open(path) as f:
            data = json.load(f)
    p = c.spawn([qm.quicmux_bin(), "-c", path, "--log-level", log_level] + list(extra), name)
    for t in data["tunnels"]:
        port = int(t["listen"].rsplit(":", 1)[1])
        if t["role"] == "client":
            qm.wait_tcp_listen(port, pid=p.pid, timeout=10, proc=p)
        else:
            qm.wait_udp_bound(port, pid=p.pid, timeout=10, proc=p)
    return p


def load_example(name):
    with open(os.path.join(EXAMPLES, name)) as f:
        return json.load(f)


# ----------------------------------------------------------------------------- cases

def example_check(c, path):
    rc, out, err, dt = check_cfg(path)
    qm.check(rc == 0, "--check exit %s; stderr %r" % (rc, err[-400:]))
    qm.check("OK" in out, "--check printed no OK: %r" % out[-300:])
    return out.splitlines()[0][:150]


def example_pair(c, client_name, server_name):
    """Run an example client and server with their ports moved to free ones."""
    echo = c.echo_server()
    scfg = load_example(server_name)
    ccfg = load_example(client_name)
    qport = qm.free_udp_port()
    lport = qm.free_tcp_port()
    scfg["tunnels"][0]["listen"] = "127.0.0.1:%d" % qport
    scfg["tunnels"][0]["target"] = qm.hostport(*echo.addr)
    ccfg["tunnels"][0]["listen"] = "127.0.0.1:%d" % lport
    ccfg["tunnels"][0]["server"] = "127.0.0.1:%d" % qport
    run_cfg(c, scfg, "example-server")
    run_cfg(c, ccfg, "example-client")
    res = qm.check_transfer(("127.0.0.1", lport), conns=4, nbytes=2 * MiB, seed=5, timeout=30)
    res.raise_if_failed()
    return res.summary()


def example_both_ends(c):
    """examples/both-ends.json: a server tunnel and a client tunnel in one process; each is
    driven from outside with CLI quicmux processes."""
    echo = c.echo_server()
    cfg = load_example("both-ends.json")
    srv, cli = cfg["tunnels"]
    sport = qm.free_udp_port()
    lport = qm.free_tcp_port()
    up = qm.free_udp_port()
    srv["listen"] = "127.0.0.1:%d" % sport
    srv["target"] = qm.hostport(*echo.addr)
    cli["listen"] = "127.0.0.1:%d" % lport
    cli["server"] = "127.0.0.1:%d" % up
    p = run_cfg(c, cfg, "both-ends")
    sq = srv["streamSettings"]["quicSettings"]
    cq = cli["streamSettings"]["quicSettings"]
    # the config's client tunnel -> a CLI server
    c.qm_server(echo.addr, security=cq["security"], key=cq["key"], header=cq["header"]["type"], port=up)
    # a CLI client -> the config's server tunnel
    _pc, caddr = c.qm_client(("127.0.0.1", sport), security=sq["security"], key=sq["key"],
                             header=sq["header"]["type"])
    r1 = qm.check_transfer(("127.0.0.1", lport), conns=2, nbytes=MiB, seed=6, timeout=30)
    r1.raise_if_failed("client tunnel 'upstream'")
    r2 = qm.check_transfer(caddr, conns=2, nbytes=MiB, seed=7, timeout=30)
    r2.raise_if_failed("server tunnel 'ss-in'")
    qm.check(p.alive(), "the two-tunnel process exited")
    return "upstream: %s; ss-in: %s" % (r1.summary(), r2.summary())


def two_tunnels_chain(c):
    """Two tunnels in one process: a server (-> echo) and a client (-> that server), both
    from JSON; data goes client tunnel -> QUIC -> server tunnel -> echo."""
    echo = c.echo_server()
    sport = qm.free_udp_port()
    lport = qm.free_tcp_port()
    cfg = {"log": {"level": "info"}, "tunnels": [
        tunnel("server", "127.0.0.1:%d" % sport, qm.hostport(*echo.addr), quic(SEC_HDR), tag="s"),
        tunnel("client", "127.0.0.1:%d" % lport, "127.0.0.1:%d" % sport, quic(SEC_HDR), tag="c"),
    ]}
    p = run_cfg(c, cfg, "chain")
    res = qm.check_transfer(("127.0.0.1", lport), conns=4, nbytes=MiB, seed=8, timeout=30)
    res.raise_if_failed()
    qm.check(echo.accepted == 4, "echo saw %d connections" % echo.accepted)
    # SIGUSR1: one stats line per tunnel, whatever the level.
    p.send_signal(signal.SIGUSR1)
    qm.wait_until(lambda: len(re.findall(r"\[stats\] (s|c): ", p.log())) >= 2, 5, "two stats lines", proc=p)
    stats = [ln for ln in p.log().splitlines() if "[stats]" in ln]
    qm.check(any("c: 4 connections" in ln for ln in stats), "client stats line wrong: %r" % stats)
    qm.check(any("s: 4 streams" in ln for ln in stats), "server stats line wrong: %r" % stats)
    rc, dt, killed = p.stop(timeout=5)
    qm.check(rc == 0 and not killed, "exit %s after SIGTERM (killed=%s)" % (rc, killed))
    return "%s; stats: %s" % (res.summary(), " | ".join(ln.split("] ", 1)[1][:60] for ln in stats))


def trap_no_quicsettings(c, server_security, expect_ok):
    """A JSON client with network quic and no quicSettings at all is v2ray's default:
    aes-128-gcm with key "".  Against a CLI server with --security aes-128-gcm --key ""
    it works; against --security none it must not."""
    echo = c.echo_server()
    _ps, saddr = c.qm_server(echo.addr, security=server_security, key="")
    lport = qm.free_tcp_port()
    p = run_cfg(c, client_cfg(lport, saddr[1], quic()), "json-client")
    if expect_ok:
        res = qm.check_transfer(("127.0.0.1", lport), conns=2, nbytes=MiB, seed=14, timeout=30)
        res.raise_if_failed()
        qm.check("aes-128-gcm" in p.log(), "the log does not say aes-128-gcm: %r" % p.tail(5))
        return res.summary()
    got, outcome, dt = qm.probe_no_data(("127.0.0.1", lport), wait=4)
    qm.check(got == 0, "a no-quicSettings client talked to a server without encryption (%d bytes)" % got)
    return "%s after %.1fs, nothing carried" % (outcome, dt)


def trap_vs_v2ray(c):
    """The same trap against the real thing: a v2ray server whose streamSettings are just
    {"network": "quic"} and a quicmux JSON client with the same."""
    if not qm.have_v2ray():
        raise qm.Skip("v2ray not installed")
    echo = c.echo_server()
    vport = qm.free_udp_port()
    vcfg = {"log": {"loglevel": "warning"},
            "inbounds": [{"listen": "127.0.0.1", "port": vport, "protocol": "dokodemo-door",
                          "settings": {"address": echo.addr[0], "port": echo.addr[1], "network": "tcp"},
                          "streamSettings": {"network": "quic"}}],
            "outbounds": [{"protocol": "freedom"}]}
    vp = c.spawn(qm.v2ray_argv(c.write_file("v2ray.json", json.dumps(vcfg))), "v2ray-server")
    qm.wait_udp_bound(vport, pid=vp.pid, timeout=15, proc=vp)
    lport = qm.free_tcp_port()
    run_cfg(c, client_cfg(lport, vport, quic()), "json-client")
    res = qm.check_transfer(("127.0.0.1", lport), conns=2, nbytes=MiB, seed=15, timeout=30)
    res.raise_if_failed()
    return res.summary()


def trap_variant(c, qs, server_security, server_key="", glob_qs=None):
    """A JSON client whose quicSettings (or transport.quicSettings) should mean
    server_security; checked by a transfer through a CLI server with it."""
    echo = c.echo_server()
    _ps, saddr = c.qm_server(echo.addr, security=server_security, key=server_key)
    lport = qm.free_tcp_port()
    cfg = client_cfg(lport, saddr[1], quic(qs))
    if glob_qs is not None:
        cfg["transport"] = {"quicSettings": glob_qs}
    run_cfg(c, cfg, "json-client")
    res = qm.check_transfer(("127.0.0.1", lport), conns=2, nbytes=512 * 1024, seed=16, timeout=30)
    res.raise_if_failed()
    return res.summary()


def default_tls_warning(c):
    """No tlsSettings: v2ray's default TLS; exactly one warning that the certificate is not
    verified."""
    lport = qm.free_tcp_port()
    p = run_cfg(c, client_cfg(lport, qm.free_udp_port(), quic({})), "json-client", log_level="warning")
    time.sleep(0.3)
    warns = [ln for ln in p.log().splitlines() if "not verified" in ln]
    qm.check(len(warns) == 1, "expected one 'not verified' warning, got %d: %r" % (len(warns), p.tail(5)))
    qm.check(" warning " in warns[0], "not at level warning: %r" % warns[0])
    return warns[0][:150]


def log_format_and_reopen(c):
    """--log-file gets lines "YYYY-MM-DDTHH:MM:SS.mmmZ level [module] ..."; SIGHUP reopens it
    after a rename (logrotate)."""
    echo = c.echo_server()
    sport = qm.free_udp_port()
    lport = qm.free_tcp_port()
    logf = os.path.join(c.dir, "quicmux.log")
    cfg = {"log": {"level": "debug", "file": logf}, "tunnels": [
        tunnel("server", "127.0.0.1:%d" % sport, qm.hostport(*echo.addr), quic({}), tag="s"),
        tunnel("client", "127.0.0.1:%d" % lport, "127.0.0.1:%d" % sport, quic({}), tag="c")]}
    p = run_cfg(c, cfg, "logging", log_level="debug")
    qm.check_transfer(("127.0.0.1", lport), conns=1, nbytes=64 * 1024, seed=17, timeout=20).raise_if_failed()
    qm.wait_until(lambda: os.path.exists(logf) and "closed" in open(logf).read(), 5, "stream close lines in the log")
    with open(logf) as f:
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    pat = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warning|error)\s+\[[\w-]+\] ")
    bad = [ln for ln in lines if not pat.match(ln)]
    qm.check(not bad, "log lines not in the format: %r" % bad[:3])
    ids = [ln for ln in lines if re.search(r"session \d+ stream \d+", ln)]
    qm.check(ids, "no log line names a session and stream id")
    os.rename(logf, logf + ".1")
    p.send_signal(signal.SIGHUP)
    qm.wait_until(lambda: os.path.exists(logf), 5, "the log file to be reopened", proc=p)
    p.send_signal(signal.SIGUSR1)
    qm.wait_until(lambda: "[stats]" in open(logf).read(), 5, "stats in the reopened log", proc=p)
    rc, dt, killed = p.stop(timeout=5)
    qm.check(rc == 0 and not killed, "exit %s after SIGTERM" % rc)
    return "%d lines; e.g. %s" % (len(lines), ids[0][:110])


def man_page_current(c):
    qm.require_quicmux()
    rc, out, err, dt = qm.run_cmd([qm.quicmux_bin(), "--man"], timeout=10)
    qm.check(rc == 0 and out.startswith(".\\\""), "--man failed: %s %r" % (rc, err[-200:]))
    path = os.path.join(qm.REPO_ROOT, "docs", "quicmux.1")
    qm.check(os.path.exists(path), "docs/quicmux.1 missing")
    with open(path) as f:
        have = f.read()
    qm.check(have == out, "docs/quicmux.1 is not what `quicmux --man` prints; regenerate it with "
                          "`quicmux --man > docs/quicmux.1`")
    return "%d lines" % len(out.splitlines())


# ----------------------------------------------------------------------------- bad configs

def bad_cases():
    good = quic({})
    c1 = tunnel("client", "127.0.0.1:1", "127.0.0.1:2", good)
    s1 = tunnel("server", "127.0.0.1:3", "127.0.0.1:4", good)

    def with_stream(stream, role="client", **extra):
        t = tunnel(role, "127.0.0.1:1", "127.0.0.1:2", stream, **extra)
        return {"tunnels": [t]}

    return [
        ("unknown-top-key", {"tunnels": [c1], "inbounds": []}, ["inbounds", "unknown key"]),
        ("unknown-tunnel-key", {"tunnels": [dict(c1, protocol="vmess")]}, ["tunnels[0].protocol", "unknown key"]),
        ("unknown-quic-key", with_stream(quic({"security": "none", "cipher": "x"})),
         ["tunnels[0].streamSettings.quicSettings.cipher", "unknown key"]),
        ("unknown-tls-key", with_stream(quic({}, security="tls", tlsSettings={"serverName": "a", "sni": "b"})),
         ["tunnels[0].streamSettings.tlsSettings.sni"]),
        ("wrong-type-maxStreams", {"tunnels": [dict(s1, maxStreams="32")]}, ["tunnels[0].maxStreams", "number"]),
        ("wrong-type-allowInsecure",
         with_stream(quic({}, security="tls", tlsSettings={"serverName": "a", "allowInsecure": "yes"})),
         ["tunnels[0].streamSettings.tlsSettings.allowInsecure", "true or false"]),
        ("wrong-type-key", with_stream(quic({"security": "aes-128-gcm", "key": 5})),
         ["tunnels[0].streamSettings.quicSettings.key", "string"]),
        ("wrong-type-tunnels", {"tunnels": {"role": "client"}}, ["tunnels", "array"]),
        ("bad-header-type",
         {"tunnels": [c1, tunnel("server", "127.0.0.1:3", "127.0.0.1:4",
                                 quic({"security": "none", "header": {"type": "foo"}}))]},
         ["tunnels[1].streamSettings.quicSettings.header.type: 'foo' is not one of none, srtp, utp, "
          "wechat-video, dtls, wireguard"]),
        ("header-without-type", with_stream(quic({"header": {}})),
         ["tunnels[0].streamSettings.quicSettings.header.type", "missing"]),
        ("network-tcp", with_stream({"network": "tcp"}), ["tunnels[0].streamSettings.network", "'tcp'", "quic"]),
        ("network-ws", with_stream({"network": "ws", "wsSettings": {}}),
         ["tunnels[0].streamSettings.network", "'ws'", "quic"]),
        ("network-missing", with_stream({"quicSettings": {}}), ["tunnels[0].streamSettings.network", "missing"]),
        ("security-xtls", with_stream(quic({}, security="xtls")),
         ["tunnels[0].streamSettings.security", "'xtls'", "none, tls"]),
        ("tls-without-serverName", with_stream(quic({}, security="tls")),
         ["tunnels[0].streamSettings.tlsSettings.serverName", "allowInsecure"]),
        ("tls-empty-serverName", with_stream(quic({}, security="tls", tlsSettings={"serverName": ""})),
         ["tunnels[0].streamSettings.tlsSettings.serverName"]),
        ("tls-server-without-certificate", with_stream(quic({}, security="tls", tlsSettings={}), role="server"),
         ["tunnels[0].streamSettings.tlsSettings.certificates", "encipherment"]),
        ("tls-missing-cert-file",
         with_stream(quic({}, security="tls", tlsSettings={"certificates": [
             {"certificateFile": "/nonexistent/c.pem", "keyFile": "/nonexistent/k.pem"}]}), role="server"),
         ["tunnels[0].streamSettings.tlsSettings.certificates[0].certificateFile", "/nonexistent/c.pem"]),
        ("tls-bad-usage",
         with_stream(quic({}, security="tls", tlsSettings={"serverName": "a", "certificates": [
             {"certificateFile": "x", "usage": "sign"}]})),
         ["tunnels[0].streamSettings.tlsSettings.certificates[0].usage", "'sign'", "encipherment, verify, issue"]),
        ("bad-role", {"tunnels": [dict(c1, role="relay")]}, ["tunnels[0].role", "'relay'", "client, server"]),
        ("missing-role", {"tunnels": [{"listen": "127.0.0.1:1", "server": "127.0.0.1:2", "streamSettings": good}]},
         ["tunnels[0].role", "missing"]),
        ("server-key-on-server", {"tunnels": [dict(s1, server="127.0.0.1:9")]}, ["tunnels[0].server", "role server"]),
        ("missing-target", {"tunnels": [{"role": "server", "listen": "127.0.0.1:1", "streamSettings": good}]},
         ["tunnels[0].target", "missing"]),
        ("missing-streamSettings", {"tunnels": [{"role": "client", "listen": "127.0.0.1:1",
                                                 "server": "127.0.0.1:2"}]},
         ["tunnels[0].streamSettings", "missing"]),
        ("bad-listen-port", {"tunnels": [dict(c1, listen="127.0.0.1:70000")]}, ["tunnels[0].listen", "70000"]),
        ("maxStreams-range", {"tunnels": [dict(s1, maxStreams=0)]}, ["tunnels[0].maxStreams", "1 to 65535"]),
        ("bad-log-level", {"log": {"level": "loud"}, "tunnels": [c1]}, ["log.level", "'loud'"]),
        ("empty-tunnels", {"tunnels": []}, ["tunnels", "empty"]),
        ("syntax-error", '{"tunnels": [\n  {"role": "client",,}\n]}\n', ["line 2"]),
        ("duplicate-key", '{"tunnels": [], "tunnels": []}', ["duplicate"]),
    ]


def main():
    os.chdir(qm.REPO_ROOT)  # examples name their TLS files relative to the repository
    r = qm.Runner("test_config")
    for path in sorted(glob.glob(os.path.join(EXAMPLES, "*.json"))):
        r.run("config.example.check.%s" % os.path.basename(path)[:-5], example_check, path)
    r.run("config.example.run.aes-128-gcm-srtp", example_pair, "client-aes-srtp.json", "server-aes-srtp.json")
    r.run("config.example.run.tls-files", example_pair, "client-tls.json", "server-tls.json")
    r.run("config.example.run.plain", example_pair, "client-plain.json", "server-plain.json")
    r.run("config.example.run.both-ends", example_both_ends)
    for name, cfg, needles in bad_cases():
        r.run("config.bad.%s" % name, lambda c, cfg=cfg, needles=needles, name=name:
              expect_bad(c, cfg, needles, name + ".json"))
    r.run("config.trap.no-quicSettings-is-aes-128-gcm", trap_no_quicsettings, "aes-128-gcm", True)
    r.run("config.trap.no-quicSettings-is-not-none", trap_no_quicsettings, "none", False)
    r.run("config.trap.no-quicSettings-vs-v2ray", trap_vs_v2ray)
    r.run("config.trap.empty-quicSettings-is-none", trap_variant, {}, "none")
    r.run("config.trap.auto-is-none", trap_variant, {"security": "auto", "key": "x"}, "none")
    r.run("config.trap.security-case-insensitive", trap_variant, {"security": "AES-128-GCM", "key": "kk"},
          "aes-128-gcm", "kk")
    r.run("config.trap.global-transport-quicSettings", trap_variant, None, "chacha20-poly1305", "g",
          {"security": "chacha20-poly1305", "key": "g"})
    r.run("config.default-tls-one-warning", default_tls_warning)
    r.run("config.two-tunnels-one-process.stats", two_tunnels_chain)
    r.run("config.log-format.sighup-reopen", log_format_and_reopen)
    r.run("config.man-page-current", man_page_current)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
