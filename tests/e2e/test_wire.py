#!/usr/bin/env python3
"""What quicmux puts on the wire, seen by a recording UDP relay between client and server
(SPEC sections 3 and 5):

* every datagram = [header, H bytes][12-byte nonce][ciphertext + 16-byte tag] with AEAD,
  [header][QUIC] without;
* the QUIC datagram inside is never longer than 1452 bytes (a longer one with AEAD
  crashes Debian's v2ray);
* header bytes follow v2ray's generators: srtp B5 E8 + counter +1 per datagram; utp
  fixed id + 01 00; wechat-video A1 08 + sequence +1 + 00 10 11 18 30 22 30; dtls
  17 FE FD + fixed epoch + 00 00 + sequence from 0 + "length" 17, 34, ... (+17, -50 above
  100); wireguard 04 00 00 00;
* AEAD nonces are fresh per datagram; without AEAD the first datagram is a QUIC v1
  long-header Initial padded to at least 1200 bytes.

The same checks run on v2ray client <-> v2ray server traffic first ("reference" cases),
which shows the checks themselves match the real thing.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402

KEY = "k1"
WECHAT_TAIL = bytes.fromhex("00101118302230")


def check_stream(dgrams, sec, hdr, label, fresh=True):
    """Problems (strings) found in one socket's datagrams, in send order."""
    probs = []
    H = qm.HEADER_SIZE[hdr]
    over = 28 if sec != "none" else 0
    prev = None
    first = dgrams[0] if dgrams else b""
    nonces = set()
    dup_nonces = 0
    biggest = 0

    def bad(i, msg):
        if len(probs) < 6:
            probs.append("%s datagram %d (%d bytes, starts %s): %s" % (label, i, len(dgrams[i]), dgrams[i][:16].hex(), msg))

    for i, d in enumerate(dgrams):
        if len(d) <= H + over:
            bad(i, "too short for header %s + %d" % (hdr, over))
            continue
        q = len(d) - H - over
        biggest = max(biggest, q)
        if q > 1452:
            bad(i, "QUIC datagram of %d bytes > 1452" % q)
        if over:
            n = d[H:H + 12]
            if n in nonces:
                dup_nonces += 1
            nonces.add(n)
        if hdr == "srtp":
            if d[0:2] != b"\xb5\xe8":
                bad(i, "srtp bytes 0-1 are not b5e8")
            ctr = int.from_bytes(d[2:4], "big")
            if prev is not None and ctr != (prev + 1) % 65536:
                bad(i, "srtp counter %d after %d (expected +1)" % (ctr, prev))
            prev = ctr
        elif hdr == "utp":
            if d[2:4] != b"\x01\x00":
                bad(i, "utp bytes 2-3 are not 0100")
            if d[0:2] != first[0:2]:
                bad(i, "utp connection id changed (%s -> %s)" % (first[0:2].hex(), d[0:2].hex()))
        elif hdr == "wechat-video":
            if d[0:2] != b"\xa1\x08" or d[6:13] != WECHAT_TAIL:
                bad(i, "wechat-video fixed bytes wrong")
            seq = int.from_bytes(d[2:6], "big")
            if prev is not None and seq != (prev + 1) % (1 << 32):
                bad(i, "wechat-video sequence %d after %d (expected +1)" % (seq, prev))
            prev = seq
        elif hdr == "dtls":
            if d[0:3] != b"\x17\xfe\xfd" or d[5:7] != b"\x00\x00":
                bad(i, "dtls fixed bytes wrong")
            if d[3:5] != first[3:5]:
                bad(i, "dtls epoch changed (%s -> %s)" % (first[3:5].hex(), d[3:5].hex()))
            seq = int.from_bytes(d[7:11], "big")
            ln = int.from_bytes(d[11:13], "big")
            if prev is None:
                if fresh and (seq != 0 or ln != 17):
                    bad(i, "first dtls sequence/length %d/%d, expected 0/17" % (seq, ln))
            else:
                pseq, pln = prev
                want = pln + 17
                if want > 100:
                    want -= 50
                if seq != pseq + 1 or ln != want:
                    bad(i, "dtls sequence/length %d/%d after %d/%d, expected %d/%d" % (seq, ln, pseq, pln, pseq + 1, want))
            prev = (seq, ln)
        elif hdr == "wireguard":
            if d[0:4] != b"\x04\x00\x00\x00":
                bad(i, "wireguard header is not 04000000")
    if dup_nonces:
        probs.append("%s: %d repeated AEAD nonces" % (label, dup_nonces))
    return probs, biggest


def wire_case(c, impl, sec, hdr, host="127.0.0.1"):
    key = KEY if sec != "none" else ""
    if impl == "v2ray":
        t = c.tunnel("v2ray", "v2ray", host=host, security=sec, key=key, header=hdr, relay=True)
    else:
        t = c.tunnel("quicmux", "quicmux", host=host, security=sec, key=key, header=hdr, relay=True)
    res = qm.check_transfer(t["addr"], conns=2, nbytes=96 * 1024, seed=5, timeout=30)
    res.raise_if_failed()
    relay = t["relay"]
    clients = relay.clients()
    qm.check(len(clients) == 1, "expected one client UDP socket, the relay saw %d: %s" % (len(clients), clients))
    c2s = [b for _d, _c, _t, b in relay.datagrams("c2s")]
    s2c = [b for _d, _c, _t, b in relay.datagrams("s2c")]
    qm.check(len(c2s) >= 5 and len(s2c) >= 5, "too few datagrams captured (%d c2s, %d s2c)" % (len(c2s), len(s2c)))
    probs1, big1 = check_stream(c2s, sec, hdr, "client->server")
    probs2, big2 = check_stream(s2c, sec, hdr, "server->client")
    probs = probs1 + probs2
    H = qm.HEADER_SIZE[hdr]
    if sec == "none":
        q = c2s[0][H:]
        if not (len(q) >= 5 and q[0] & 0xC0 == 0xC0 and q[1:5] == b"\x00\x00\x00\x01"):
            probs.append("first client datagram is not a QUIC v1 long header: %s" % q[:8].hex())
        if len(q) < 1200:
            probs.append("first client datagram (Initial) carries %d QUIC bytes, < 1200" % len(q))
    else:
        q = len(c2s[0]) - H - 28
        if q < 1200:
            probs.append("first client datagram (Initial) carries %d QUIC bytes, < 1200" % q)
    qm.check(not probs, "; ".join(probs))
    return "%d c2s / %d s2c datagrams; largest QUIC datagram %d / %d bytes" % (len(c2s), len(s2c), big1, big2)


def main():
    r = qm.Runner("test_wire")
    items = []
    if qm.have_v2ray():
        for sec, hdr in [("aes-128-gcm", h) for h in qm.HEADERS] + [("none", "none"), ("chacha20-poly1305", "dtls")]:
            items.append(("wire.reference.v2ray.%s.%s" % (sec, hdr), wire_case, ("v2ray", sec, hdr)))
    for sec in qm.SECURITIES:
        for hdr in qm.HEADERS:
            items.append(("wire.quicmux.%s.%s" % (sec, hdr), wire_case, ("quicmux", sec, hdr)))
    items.append(("wire.quicmux.v6.aes-128-gcm.srtp", wire_case, ("quicmux", "aes-128-gcm", "srtp", "::1")))
    r.run_parallel(items, workers=3)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
