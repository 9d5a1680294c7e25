#!/usr/bin/env python3
"""qlog (--qlog-dir DIR, --qlog-max-files N), on loopback:

- one file per session on each end (counted against the metrics' sessions_opened_total),
  named <UTC time>-<client|server>-<original DCID hex>.sqlog, the two ends of a session
  sharing the DCID; every record of the JSON-SEQ file is JSON, the first is the qlog
  header, and the events include packet_sent, packet_received and metrics_updated;
- the cap: with --qlog-max-files 3 and six sessions, three files remain, the newest
  ones, and files that are not quicmux's qlogs are left alone;
- bad settings: a missing directory, a file instead of a directory, 0 files ->
  exit 2 naming the option (flag and JSON key)."""

import json
import os
import re
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmtest as qm  # noqa: E402

NAME_RE = re.compile(r"^(\d{8}T\d{6}\.\d{3}Z)-(client|server)-([0-9a-f]{16,40})\.sqlog$")
RS = b"\x1e"


def qlogs(d):
    return sorted(f for f in os.listdir(d) if NAME_RE.match(f))


def read_qlog(path):
    """The records of a JSON-SEQ file, each parsed (fails on any that is not JSON)."""
    with open(path, "rb") as f:
        data = f.read()
    qm.check(data.startswith(RS), "%s does not start with the record separator" % os.path.basename(path))
    recs = []
    for i, r in enumerate(data.split(RS)[1:]):
        try:
            recs.append(json.loads(r))
        except ValueError as e:
            raise qm.CheckFailed("%s: record %d is not JSON (%s): %r" % (os.path.basename(path), i, e, r[:120]))
    return recs


def sessions_opened(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"^quicmux_sessions_opened_total\{[^}]*\} (\d+)$", text, re.M)
    qm.check(m, "no quicmux_sessions_opened_total in the metrics")
    return int(m.group(1))


def case_files(c):
    sdir, cdir = os.path.join(c.dir, "q-server"), os.path.join(c.dir, "q-client")
    os.mkdir(sdir)
    os.mkdir(cdir)
    sport, cport = qm.free_tcp_port(), qm.free_tcp_port()
    e = c.echo_server()
    # 4 streams per session and 12 connections held open at once: several sessions
    sp, saddr = c.qm_server(e.addr, security="chacha20-poly1305", key="q",
                            extra=["--qlog-dir", sdir, "--metrics", "127.0.0.1:%d" % sport,
                                   "--max-streams", "4"])
    cp, caddr = c.qm_client(saddr, security="chacha20-poly1305", key="q",
                            extra=["--qlog-dir", cdir, "--metrics", "127.0.0.1:%d" % cport])
    qm.wait_tcp_listen(cport, pid=cp.pid, timeout=10, proc=cp)
    qm.check_transfer(caddr, conns=12, nbytes=64 * 1024, read_delay=0.5, timeout=60).raise_if_failed()
    n_client, n_server = sessions_opened(cport), sessions_opened(sport)
    qm.check(n_client >= 2, "the client opened %d session(s); the test wants several" % n_client)
    # files are complete once the sessions are freed: stop the client, then the server
    rc, _, killed = cp.stop(timeout=10)
    qm.check(rc == 0 and not killed, "client exit %s" % rc)
    rc, _, killed = sp.stop(timeout=10)
    qm.check(rc == 0 and not killed, "server exit %s" % rc)
    cf, sf = qlogs(cdir), qlogs(sdir)
    qm.check(len(cf) == n_client, "%d client qlog files for %d sessions: %r" % (len(cf), n_client, cf))
    qm.check(len(sf) == n_server, "%d server qlog files for %d sessions: %r" % (len(sf), n_server, sf))
    qm.check(all(NAME_RE.match(f).group(2) == "client" for f in cf), "client files named %r" % cf)
    qm.check(all(NAME_RE.match(f).group(2) == "server" for f in sf), "server files named %r" % sf)
    # the two ends name a session by the same original DCID
    cids = {NAME_RE.match(f).group(3) for f in cf}
    qm.check(cids == {NAME_RE.match(f).group(3) for f in sf}, "client and server DCIDs differ")
    counts = {}
    for d, files in ((cdir, cf), (sdir, sf)):
        for f in files:
            recs = read_qlog(os.path.join(d, f))
            head = recs[0]
            qm.check(head.get("qlog_format") == "JSON-SEQ", "%s: header %r" % (f, head))
            qm.check(head["trace"]["common_fields"].get("group_id") == NAME_RE.match(f).group(3),
                     "%s: the trace's group_id is not the DCID in the name" % f)
            names = {str(r.get("name", "")).split(":")[-1] for r in recs[1:]}
            for ev in ("packet_sent", "packet_received", "metrics_updated"):
                qm.check(ev in names, "%s has no %s event (has %s)" % (f, ev, ", ".join(sorted(names))))
            counts[f] = len(recs)
    return "%d client + %d server sessions, one file each, %d records in all" % (
        n_client, n_server, sum(counts.values()))


def case_cap(c):
    sdir = os.path.join(c.dir, "q")
    os.mkdir(sdir)
    other = os.path.join(sdir, "notes.sqlog")
    with open(other, "w") as f:
        f.write("not quicmux's\n")
    e = c.echo_server()
    sp, saddr = c.qm_server(e.addr, extra=["--qlog-dir", sdir, "--qlog-max-files", "3"])
    seen = []
    for i in range(6):
        cp, caddr = c.qm_client(saddr, name="client%d" % i)
        qm.check_transfer(caddr, conns=1, nbytes=16 * 1024, timeout=30).raise_if_failed()
        cp.stop(timeout=10)
        new = [f for f in qlogs(sdir) if f not in seen]
        seen.extend(new)
        qm.check(len(qlogs(sdir)) <= 3, "after session %d: %d files: %r" % (i + 1, len(qlogs(sdir)), qlogs(sdir)))
        time.sleep(0.01)
    sp.stop(timeout=10)
    left = qlogs(sdir)
    qm.check(len(seen) == 6, "6 sessions made %d files: %r" % (len(seen), seen))
    qm.check(left == sorted(seen)[-3:], "kept %r, expected the newest three of %r" % (left, seen))
    qm.check(os.path.exists(other), "a file that is not quicmux's qlog was deleted")
    for f in left:
        read_qlog(os.path.join(sdir, f))
    return "6 sessions, the newest 3 files kept"


def case_bad(c):
    qm.require_quicmux()
    q = qm.quicmux_bin()
    base = ["client", "--listen", "127.0.0.1:%d" % qm.free_tcp_port(), "--server", "127.0.0.1:9"]
    missing = os.path.join(c.dir, "nope")
    afile = c.write_file("plain", "x")
    for extra, needles in (
            (["--qlog-dir", missing], ["--qlog-dir", missing]),
            (["--qlog-dir", afile], ["--qlog-dir", "not a directory"]),
            (["--qlog-dir", c.dir, "--qlog-max-files", "0"], ["--qlog-max-files", "1 to 100000"]),
    ):
        rc, out, err, _ = qm.run_cmd([q] + base + extra, timeout=5)
        qm.check(rc == 2, "%s: exit %s, expected 2 (%r)" % (" ".join(extra), rc, err))
        qm.check(all(n in err for n in needles), "%s: message %r does not name %r" % (" ".join(extra), err, needles))
    cfg = {"tunnels": [{"role": "server", "listen": "127.0.0.1:%d" % qm.free_udp_port(), "target": "127.0.0.1:9",
                        "qlogDir": missing, "streamSettings": {"network": "quic"}}]}
    path = c.write_file("c.json", json.dumps(cfg))
    rc, out, err, _ = qm.run_cmd([q, "-c", path, "--check"], timeout=5)
    qm.check(rc == 2 and "tunnels[0].qlogDir" in err, "JSON qlogDir missing: exit %s %r" % (rc, err))
    cfg["tunnels"][0]["qlogDir"] = c.dir
    cfg["tunnels"][0]["qlogMaxFiles"] = 5
    path = c.write_file("c2.json", json.dumps(cfg))
    rc, out, err, _ = qm.run_cmd([q, "-c", path, "--check"], timeout=5)
    qm.check(rc == 0, "JSON qlogDir + qlogMaxFiles: exit %s %r" % (rc, err))
    return "exit 2 naming the option"


def main():
    r = qm.Runner("qlog")
    r.run("qlog.one-file-per-session", case_files)
    r.run("qlog.cap-keeps-newest", case_cap)
    r.run("qlog.bad-settings", case_bad)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
