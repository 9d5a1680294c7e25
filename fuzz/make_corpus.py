#!/usr/bin/env python3
"""Regenerate the seed corpora in fuzz/corpus/ (stdlib only).

  fuzz_unwrap:   real QUIC datagrams of a quicmux client <-> server exchange, captured
                 in the clear (security none) through tests/e2e/relay.py, then wrapped
                 for every security x header combination by fuzz_gen_corpus (built in
                 build-fuzz/fuzz by scripts/fuzz.sh), plus the plain ones (selector 0).
  fuzz_hostport: a few addresses (first byte = host buffer size - 1).
  fuzz_sip003:   option strings in the style of ss-v2ray-plugin.
  fuzz_config:   the example config files in examples/*.json.

usage: python3 fuzz/make_corpus.py BUILD_FUZZ_DIR QUICMUX_BIN
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))


def write(d, name, data):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def unwrap_corpus(build, qmbin):
    os.environ["QUICMUX_BIN"] = qmbin
    import qmtest as qm
    from relay import Relay
    out = os.path.join(HERE, "corpus", "fuzz_unwrap")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    tmp = tempfile.mkdtemp()
    case = qm.Case("corpus", tmp)
    try:
        target = case.echo_server()
        sp, saddr = case.qm_server(target.addr, security="none", header="none", log_level="warning")
        relay = Relay("127.0.0.1", upstream=saddr, capture=8)
        case.on_close(relay.close)
        cp, caddr = case.qm_client(relay.addr, security="none", header="none", log_level="warning")
        qm.check_transfer(caddr, conns=1, nbytes=20000, timeout=20).raise_if_failed()
        time.sleep(0.3)
        up, down = relay.captured("up"), relay.captured("down")
    finally:
        case.close()
    picks = {"client-initial": up["first"][0], "client-2": up["first"][1],
             "server-initial": down["first"][0], "server-2": down["first"][1],
             "client-short": up["last"][-1], "server-short": down["last"][-1]}
    plain_dir = os.path.join(tmp, "plain")
    for name, d in picks.items():
        write(plain_dir, name, d)
        write(out, name + ".plain", b"\x00" + d)  # selector 0: none/none, key ""
    # Wrapped: the Initial and a short-header packet in every combination.
    subprocess.check_call([os.path.join(build, "fuzz", "fuzz_gen_corpus"), out,
                           os.path.join(plain_dir, "client-initial"), os.path.join(plain_dir, "server-short")])
    shutil.rmtree(tmp, ignore_errors=True)
    return len(os.listdir(out))


def text_corpora():
    hp = os.path.join(HERE, "corpus", "fuzz_hostport")
    for i, s in enumerate(["127.0.0.1:443", "[::1]:8443", "example.com:0", "[fe80::1%eth0]:65535",
                           "host:99999", ":80", "[::1]80", "a:b:c:1"]):
        write(hp, "addr%d" % i, bytes([255 if i % 2 == 0 else 8]) + s.encode())
    sp = os.path.join(HERE, "corpus", "fuzz_sip003")
    for i, s in enumerate(["mode=quic;host=example.com", "server;mode=quic;cert=/tmp/c.pem;key=/tmp/k.pem",
                           "path=/a\\;b;host=x\\=y;loglevel=debug", "tls", "a=1;a=2;b", "key=\\\\"]):
        write(sp, "opts%d" % i, s.encode())
    cf = os.path.join(HERE, "corpus", "fuzz_config")
    n = 0
    exdir = os.path.join(ROOT, "examples")
    for f in sorted(os.listdir(exdir)) if os.path.isdir(exdir) else []:
        if f.endswith(".json") and os.path.getsize(os.path.join(exdir, f)) < 8192:
            shutil.copy(os.path.join(exdir, f), os.path.join(cf, f)) if os.path.isdir(cf) else (
                os.makedirs(cf), shutil.copy(os.path.join(exdir, f), os.path.join(cf, f)))
            n += 1
    write(cf, "comments.json", b'// c\n{ /* block */ "tunnels": [ # hash\n {"mode": "client"} ] }\n')


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    n = unwrap_corpus(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]))
    text_corpora()
    print("fuzz_unwrap: %d seeds" % n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
