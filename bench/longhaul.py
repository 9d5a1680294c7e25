#!/usr/bin/env python3
"""Long-haul benchmark: quicmux and v2ray 4.34 side by side through one user-space bottleneck.

    sudo python3 bench/longhaul.py [--quicmux PATH] [--time 30] [--quick] [--out DIR]
         [--only single,share,v2ray,quicmux,...] [--conditions 40M-200ms-0,...]
         [--dirs up,down] [--streams 1,8] [--variants bbr,reno | NAME=FLAGS ...]

Topology (root needed for the namespaces; processes stopped by PID, namespaces deleted):

    iperf3 -c [ns c, 127.0.0.1] -> tunnel client [ns c] --UDP over veth-->
        bench/bottleneck [this namespace: the router between c and s]
        --UDP over veth--> tunnel server [ns s] -> iperf3 -s [ns s, 127.0.0.1]

Two namespaces, each joined to this one by a veth link (tests/e2e/qmtest.NetnsHost,
10.231.K.0/24).  Only the QUIC/UDP traffic crosses the bottleneck; both TCP legs are on
the loopback of their namespace.  The bottleneck (bench/bottleneck.c, built at the start
into /tmp/qm-longhaul/bottleneck-<hash of the source>) has per direction: random loss (fixed seed), a drop-tail queue
of one bandwidth-delay product, serialisation at the link rate (each datagram's UDP
payload + 28 bytes of IPv4/UDP header), and the one-way propagation delay (RTT/2 each
way).  "up" = upload = iperf3 client -> server, the tunnel client's QUIC stack sends;
"down" = download = iperf3 -R, the tunnel server's QUIC stack sends.

Every run starts fresh processes: iperf3 -s -1, the tunnel server, the bottleneck, the
tunnel client, and iperf3 -c -t TIME -P N [-R] -J.  Reported per tunnel:
  goodput    iperf3's end.sum_received (bytes the receiving iperf3 got / its seconds);
  share      goodput / link rate (the rate counts UDP payload + 28 B per datagram, so
             100 % cannot be reached: QUIC, v2ray wrap and IP/UDP headers take ~5-7 %);
  wire       UDP payload bytes the sender put into the bottleneck (its direction) while
             the receiving iperf3 counted: from the first 100 ms tick with > 30 kB in, for
             iperf3's measured seconds (from the bottleneck's timeline; the tail that was
             still in the tunnel's buffers when iperf3 stopped counting is left out);
  dropped    bytes of it the bottleneck lost at random or dropped at its queue, in % of
             goodput: each must be sent again, so this is the retransmission that was
             necessary (spurious retransmissions are invisible without decrypting);
  excess     (wire - goodput) / goodput: retransmissions + per-datagram overhead (QUIC
             headers, v2ray's 28-byte aes-128-gcm wrap) + iperf3's control stream: an upper
             bound of the retransmitted bytes;
  cwnd/RTT   quicmux only: SIGUSR1 to the *sender's* process every 0.5 s, its per-session
             line "rtt X ms (min Y), cwnd C, in flight F" parsed from the log.  v2ray's
             quic-go exposes no congestion state: for v2ray the plots show what the
             bottleneck sees (its queue, hence the path RTT = propagation + queueing).
  CPU        cores used by each tunnel end, the bottleneck, and the rest of the machine
             during the transfer (/proc); the bottleneck's lag behind its own schedule
             and the kernel drops on its sockets, so it can be shown not to be the limit.
Sharing tests: two tunnels through the same bottleneck (one queue per direction) at the
same time, each with its own iperf3 pair: quicmux + quicmux, quicmux + v2ray, and v2ray +
v2ray for reference; each one's share, and Jain's fairness index.

Run time: the default matrix is 38 runs (4 conditions x 2 directions x 1 and 8 streams x
2 implementations, plus 3 pairs x 2 directions of sharing); it took 1324 s on 2 cores with
-t 30.  --time 10 or --quick for development; each --variants entry adds 16 runs.

Output (default bench/out/longhaul/, git-ignored): results.md, results.json, per run the
bottleneck's JSON (with a 100 ms timeline) and the process logs under logs/, and PNG plots
under plots/ (goodput, cwnd/in flight, RTT over time; drawn by bench/longhaul_plot.py
with Debian's /usr/bin/python3 + matplotlib: scripts/deps.sh --bench installs it).
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
import qmtest as qm  # noqa: E402

SECURITY, KEY, HEADER = "aes-128-gcm", "longhaul-key", "none"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TOOL_DIR = "/tmp/qm-longhaul"
OVERHEAD = 28  # bytes the bottleneck adds to each UDP payload (IPv4 + UDP headers)

# name -> (rate Mbit/s, RTT ms, loss per direction)
CONDITIONS = {
    "40M-200ms-0": (40, 200, 0.0),
    "40M-200ms-1": (40, 200, 0.01),
    "40M-200ms-3": (40, 200, 0.03),
    "100M-150ms-1": (100, 150, 0.01),
}
DEFAULT_CONDITIONS = list(CONDITIONS)
# selectable with --conditions, not run by default: a clean 100 Mbit/s path (shows that the
# bottleneck holds 100 Mbit/s, and what the tunnels do when loss does not hold them back)
CONDITIONS["100M-150ms-0"] = (100, 150, 0.0)
SHARE_PAIRS = [("quicmux", "quicmux"), ("quicmux", "v2ray"), ("v2ray", "v2ray")]

STAT_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z.*\[stats\].*session (\d+) .*"
                     r"rtt ([\d.]+) ms \(min ([\d.]+)\), cwnd (\d+), in flight (\d+)")


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc

def proc_cpu_s(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK  # all but idle and iowait


def foreign_bottlenecks(own_pid):
    """PIDs of other bottleneck processes (another long-haul run on the machine: both
    runs' figures are disturbed; each run records this)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == own_pid:
            continue
        try:
            with open("/proc/%s/comm" % d) as f:
                if f.read().startswith("bottleneck"):
                    out.append(int(d))
        except OSError:
            pass
    return out


def rcvbuf_errors(pid):
    """UDP RcvbufErrors of the namespace PID lives in."""
    total = 0
    for fn in ("snmp", "snmp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, fn)) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        if fn == "snmp":
            for i in range(len(lines) - 1):
                if lines[i].startswith("Udp:") and lines[i + 1].startswith("Udp:"):
                    h, v = lines[i].split(), lines[i + 1].split()
                    if "RcvbufErrors" in h:
                        total += int(v[h.index("RcvbufErrors")])
                    break
        else:
            for ln in lines:
                if ln.startswith("Udp6RcvbufErrors"):
                    total += int(ln.split()[1])
    return total


# --------------------------------------------------------------------------- tools

def bottleneck_bin():
    """bench/bottleneck.c compiled into TOOL_DIR, named after a hash of its source: runs from
    other work trees (other sources) share TOOL_DIR without replacing each other's binary."""
    src = os.path.join(HERE, "bottleneck.c")
    with open(src, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    out = os.path.join(TOOL_DIR, "bottleneck-" + digest)
    os.makedirs(TOOL_DIR, exist_ok=True)
    if not os.access(out, os.X_OK):
        tmp = "%s.%d.tmp" % (out, os.getpid())
        cmd = ["cc", "-std=c11", "-O2", "-Wall", "-Wextra", "-o", tmp, src]
        log("building the bottleneck: " + " ".join(cmd))
        subprocess.run(cmd, check=True, timeout=120)
        os.replace(tmp, out)
    return out


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def quicmux_version(path):
    try:
        r = subprocess.run([path, "--version"], capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
        return (r.stdout + r.stderr).decode(errors="replace").strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def tool_version(argv):
    try:
        r = subprocess.run(argv, capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
        return (r.stdout + r.stderr).decode(errors="replace").strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


# --------------------------------------------------------------------------- one run

class Tunnel:
    """One tunnel through the bottleneck: iperf3 server, tunnel server, tunnel client."""

    def __init__(self, idx, impl, flags):
        self.idx, self.impl, self.flags = idx, impl, flags
        self.kind = "v2ray" if impl == "v2ray" else "quicmux"
        self.samples = []  # (t since iperf3 start, session, rtt ms, min rtt ms, cwnd, in flight)


def start_tunnel_server(c, t, sh):
    port = qm.free_tcp_port()
    t.iperf_s = c.spawn(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)], "iperf3-s%d" % t.idx,
                        netns=sh)
    qm.wait_tcp_listen(port, pid=t.iperf_s.pid, timeout=10, proc=t.iperf_s)
    target = ("127.0.0.1", port)
    if t.kind == "quicmux":
        t.server, t.saddr = c.qm_server(target, host=sh.addr, security=SECURITY, key=KEY, header=HEADER,
                                        extra=t.flags, name="qm-server%d" % t.idx, log_level="warning",
                                        netns=sh)
    else:
        t.server, t.saddr = c.v2ray_server(target, host=sh.addr, security=SECURITY, key=KEY, header=HEADER,
                                           name="v2ray-server%d" % t.idx, netns=sh)
    t.target = target


def start_tunnel_client(c, t, ch):
    if t.kind == "quicmux":
        t.client, t.caddr = c.qm_client(t.raddr, host="127.0.0.1", security=SECURITY, key=KEY, header=HEADER,
                                        extra=t.flags, name="qm-client%d" % t.idx, log_level="warning",
                                        netns=ch)
    else:
        t.client, t.caddr = c.v2ray_client(t.raddr, host="127.0.0.1", security=SECURITY, key=KEY,
                                           header=HEADER, name="v2ray-client%d" % t.idx, netns=ch,
                                           target=t.target)


def window_counts(rst, t0_unix, m, d, seconds):
    """Bytes of map m's sender (direction d) that entered / were dropped by the bottleneck
    from the start until the receiving iperf3 stopped counting, from the 100 ms timeline.
    The measurement starts when the data does: the first tick with more than 30 kB in
    (handshake and iperf3's control exchange are smaller); it lasts iperf3's `seconds`.
    Whatever crossed later (the tail still in the tunnel's buffers) is left out."""
    rows = rst.get("timeline") or []
    smap = [i for i, x in enumerate(rst["sessions"]) if x["map"] == m]
    dd = 0 if d == "up" else 1
    off = rst["start_unix_s"] - t0_unix

    def val(r, k):
        return sum(r[3 + 6 * i + 3 * dd + k] for i in smap if 3 + 6 * i + 3 * dd + k < len(r))
    pts = [(r[0] / 1000.0 + off, val(r, 0), val(r, 1)) for r in rows]
    start = next((t for t, vin, _ in pts if vin > 30000), None)
    if start is None:
        return None
    end = start + seconds

    def at(t, k):
        prev = pts[0]
        for p in pts:
            if p[0] >= t:
                if p[0] == prev[0]:
                    return p[k]
                return prev[k] + (p[k] - prev[k]) * (t - prev[0]) / (p[0] - prev[0])
            prev = p
        return pts[-1][k]
    return {"start_s": round(start, 2), "end_s": round(end, 2), "in_bytes": int(at(end, 1)),
            "dropped_bytes": int(at(end, 2))}


def parse_stats_lines(path, t0_unix):
    """quicmux SIGUSR1 session lines -> [(t, session, rtt, min_rtt, cwnd, in_flight)]."""
    out = []
    try:
        with open(path, errors="replace") as f:
            for ln in f:
                m = STAT_RE.match(ln)
                if not m:
                    continue
                ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(
                    tzinfo=datetime.timezone.utc).timestamp()
                out.append((round(ts - t0_unix, 3), int(m.group(2)), float(m.group(3)), float(m.group(4)),
                            int(m.group(5)), int(m.group(6))))
    except OSError:
        pass
    return out


def one_run(c, hosts, spec, args, outdir):
    """spec: name, group, cond, dir, streams, tunnels [(impl, flags)].  Returns a record."""
    ch, sh = hosts
    rate, rtt, loss = CONDITIONS[spec["cond"]]
    tunnels = [Tunnel(i, impl, flags) for i, (impl, flags) in enumerate(spec["tunnels"])]
    for t in tunnels:
        start_tunnel_server(c, t, sh)
    # the bottleneck: one map per tunnel, all sharing one link per direction
    stats_path = os.path.join(outdir, "bottleneck", spec["name"] + ".json")
    os.makedirs(os.path.dirname(stats_path), exist_ok=True)
    if os.path.exists(stats_path):
        os.unlink(stats_path)
    argv = [args.bottleneck, "--rate", str(rate), "--delay-ms", str(rtt / 2.0), "--loss", str(loss),
            "--overhead", str(OVERHEAD), "--seed", str(args.seed), "--stats", stats_path, "--tick-ms", "100",
            "--duration", str(args.time + 120)]
    for t in tunnels:
        t.raddr = (ch.peer_addr, qm.free_udp_port(ch.peer_addr))
        argv += ["--map", "%s=%s" % (qm.hostport(*t.raddr), qm.hostport(*t.saddr))]
    relay = c.spawn(argv, "bottleneck")
    for t in tunnels:
        qm.wait_udp_bound(t.raddr[1], pid=relay.pid, timeout=10, proc=relay)
    for t in tunnels:
        start_tunnel_client(c, t, ch)
    sender_of = (lambda t: t.client) if spec["dir"] == "up" else (lambda t: t.server)

    procs = {"relay": relay}
    for t in tunnels:
        procs["client%d" % t.idx] = t.client
        procs["server%d" % t.idx] = t.server
    foreign = foreign_bottlenecks(relay.pid)
    if foreign:
        log("    another bottleneck is running (pid %s): another long-haul run disturbs this one"
            % ", ".join(map(str, foreign)))
    drops0 = {t.idx: (rcvbuf_errors(t.client.pid), rcvbuf_errors(t.server.pid)) for t in tunnels}
    cpu0 = {k: proc_cpu_s(p.pid) for k, p in procs.items()}
    busy0, w0 = machine_busy_s(), time.monotonic()
    t0_unix = time.time()
    for t in tunnels:
        argv = ["iperf3", "-c", "127.0.0.1", "-p", str(t.caddr[1]), "-t", str(args.time), "-P",
                str(spec["streams"]), "-J"] + (["-R"] if spec["dir"] == "down" else [])
        t.iperf_c = c.spawn(argv, "iperf3-c%d" % t.idx, netns=ch)
        procs["iperf3-c%d" % t.idx] = t.iperf_c
        procs["iperf3-s%d" % t.idx] = t.iperf_s
        cpu0["iperf3-c%d" % t.idx] = proc_cpu_s(t.iperf_c.pid) or 0.0
        cpu0["iperf3-s%d" % t.idx] = proc_cpu_s(t.iperf_s.pid)
    # sample the senders' congestion state every 0.5 s while iperf3 runs (bounded)
    deadline = time.monotonic() + args.time + 60
    last_cpu = dict(cpu0)
    while time.monotonic() < deadline and any(t.iperf_c.alive() for t in tunnels):
        for t in tunnels:
            if t.kind == "quicmux" and t.iperf_c.alive():
                sender_of(t).send_signal(signal.SIGUSR1)
        for k, p in procs.items():  # the last value seen before a process exits
            v = proc_cpu_s(p.pid)
            if v is not None:
                last_cpu[k] = v
        time.sleep(0.5)
    wall = time.monotonic() - w0
    busy = machine_busy_s() - busy0
    for k, p in procs.items():
        v = proc_cpu_s(p.pid)
        if v is not None:
            last_cpu[k] = v
    timed_out = [t.idx for t in tunnels if t.iperf_c.alive()]
    for t in tunnels:
        t.iperf_c.stop(timeout=5)
    cores = {k: (last_cpu[k] - cpu0[k]) / wall if cpu0.get(k) is not None and last_cpu.get(k) is not None
             else None for k in procs}
    drops1 = {t.idx: (rcvbuf_errors(t.client.pid), rcvbuf_errors(t.server.pid)) for t in tunnels}
    relay.stop(timeout=10)  # SIGTERM: writes its final JSON
    try:
        with open(stats_path) as f:
            rst = json.load(f)
    except (OSError, ValueError) as e:
        rst = None
        log("%s: no bottleneck statistics (%s)" % (spec["name"], e))
    for t in tunnels:
        if t.kind == "quicmux":
            t.samples = parse_stats_lines(sender_of(t).log_path, t0_unix)

    d = spec["dir"]
    rec = {k: spec[k] for k in ("name", "group", "cond", "dir", "streams")}
    rec.update(rate_mbit=rate, rtt_ms=rtt, loss=loss, time_s=args.time, wall_s=round(wall, 2),
               bottleneck_json=os.path.relpath(stats_path, outdir), t0_unix=t0_unix, tunnels=[])
    ours = sum(v for v in cores.values() if v)
    rec["cores"] = {k: (round(v, 3) if v is not None else None) for k, v in cores.items()}
    rec["cores_others"] = round(max(0.0, busy / wall - ours), 3)
    rec["foreign_bottlenecks"] = foreign
    if rst:
        rec["bottleneck"] = {
            "cpu_s": round(rst["cpu_user_s"] + rst["cpu_sys_s"], 3), "elapsed_s": rst["elapsed_s"],
            "socket_rx_overflows": rst["socket_rx_overflows"],
            "late_max_us": max(rst["up"]["late_max_us"], rst["down"]["late_max_us"]),
            "late_mean_us": {x: rst[x]["late_mean_us"] for x in ("up", "down")},
            "max_backlog_bytes": {x: rst[x]["max_backlog_bytes"] for x in ("up", "down")},
            "queue_bytes": rst[d]["queue_bytes"],
            "totals": {x: {k: v for k, v in rst[x].items() if k.endswith(("_bytes", "_dgrams"))}
                       for x in ("up", "down")},
        }
    errors = []
    for t in tunnels:
        tr = {"impl": t.impl, "flags": t.flags, "sender": "client" if d == "up" else "server"}
        try:
            txt = t.iperf_c.log()
            j = json.loads(txt[txt.index("{"):])
            if j.get("error"):
                raise ValueError(j["error"])
            r = j["end"]["sum_received"]
            tr.update(goodput_mbit=round(r["bits_per_second"] / 1e6, 3), goodput_bytes=r["bytes"],
                      seconds=round(r["seconds"], 3), sent_bytes=j["end"]["sum_sent"]["bytes"])
            tr["share"] = round(tr["goodput_mbit"] / rate, 4)
        except (ValueError, KeyError) as e:
            tr["error"] = "iperf3: %s" % e
            errors.append("tunnel %d (%s): %s" % (t.idx, t.impl, tr["error"]))
        if t.idx in timed_out:
            tr["error"] = "iperf3 still running %.0f s after its end: stopped" % (args.time + 60)
            errors.append("tunnel %d (%s): %s" % (t.idx, t.impl, tr["error"]))
        if rst:
            mc = rst["maps"][t.idx][d]
            tr.update(wire_bytes_total=mc["in_bytes"], lost_bytes_total=mc["lost_bytes"],
                      qdrop_bytes_total=mc["qdrop_bytes"], lost_dgrams=mc["lost_dgrams"],
                      qdrop_dgrams=mc["qdrop_dgrams"],
                      ack_bytes_total=rst["maps"][t.idx]["down" if d == "up" else "up"]["in_bytes"],
                      sessions=sum(1 for x in rst["sessions"] if x["map"] == t.idx))
            w = window_counts(rst, t0_unix, t.idx, d, tr["seconds"]) if "seconds" in tr else None
            if w:
                tr.update(window=w, wire_bytes=w["in_bytes"], dropped_bytes=w["dropped_bytes"])
                tr["excess_bytes"] = tr["wire_bytes"] - tr["goodput_bytes"]
                tr["excess_pct"] = round(100.0 * tr["excess_bytes"] / max(1, tr["goodput_bytes"]), 2)
                tr["dropped_pct"] = round(100.0 * tr["dropped_bytes"] / max(1, tr["goodput_bytes"]), 2)
        tr["udp_rcvbuf_drops"] = {"client_ns": drops1[t.idx][0] - drops0[t.idx][0],
                                  "server_ns": drops1[t.idx][1] - drops0[t.idx][1]}
        tr["cores_client"] = rec["cores"].get("client%d" % t.idx)
        tr["cores_server"] = rec["cores"].get("server%d" % t.idx)
        tr["cwnd_samples"] = t.samples
        if t.kind != "quicmux":
            tr["cwnd_note"] = "not observable: v2ray (quic-go) exposes no congestion state"
        rec["tunnels"].append(tr)
        for p in (t.client, t.server):
            if not p.alive():
                errors.append("%s exited (status %s)" % (p.name, p.returncode()))
    if len(tunnels) > 1 and all("goodput_mbit" in x for x in rec["tunnels"]):
        xs = [x["goodput_mbit"] for x in rec["tunnels"]]
        rec["jain"] = round(sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs)), 4) if any(xs) else None
        rec["total_share"] = round(sum(xs) / rate, 4)
    rec["errors"] = errors
    rec["logs"] = os.path.relpath(c.dir, outdir)
    return rec


# --------------------------------------------------------------------------- plan, report

def build_plan(args, impls):
    plan = []
    if "single" in args.groups:
        k = 0
        for cond in args.conditions:
            for d in args.dirs:
                for n in args.streams:
                    order = impls if k % 2 == 0 else list(reversed(impls))  # alternate the order
                    k += 1
                    for name, flags in order:
                        plan.append({"name": "%s.%s.P%d.%s" % (cond, d, n, name), "group": "single",
                                     "cond": cond, "dir": d, "streams": n, "tunnels": [(name, flags)]})
    if "share" in args.groups:
        byname = dict(impls)
        for a, b in args.share_pairs:
            if a not in byname or b not in byname:
                continue
            for d in args.share_dirs:
                plan.append({"name": "share.%s.%s.%s+%s" % (args.share_cond, d, a, b), "group": "share",
                             "cond": args.share_cond, "dir": d, "streams": args.share_streams,
                             "tunnels": [(a, byname[a]), (b, byname[b])]})
    return plan


def fmt(v, f="%.1f"):
    return "-" if v is None else f % v


def dir_name(d):
    return "upload" if d == "up" else "download"


def write_report(outdir, meta, recs):
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump({"meta": meta, "runs": recs}, f, indent=1)
    L = []
    L.append("# Long-haul benchmark: quicmux vs v2ray through one user-space bottleneck")
    L.append("")
    L.append("Started %s, %s; command: `%s`" % (meta["started"], meta["host"], meta["command"]))
    L.append("")
    L.append("| | |")
    L.append("|---|---|")
    for k in ("quicmux", "quicmux_sha256", "v2ray", "iperf3", "kernel", "cpus", "time_s", "seed", "total_wall_s"):
        L.append("| %s | %s |" % (k, meta.get(k)))
    L.append("")
    L.append("Bottleneck per direction: random loss, drop-tail queue of one BDP (rate x RTT), "
             "serialisation at the rate (UDP payload + %d B), RTT/2 propagation delay. aes-128-gcm, "
             "header none, on both ends. Share = goodput / rate. While the receiving iperf3 counted: "
             "dropped = bytes the bottleneck lost at random or at its queue (the retransmissions that "
             "were necessary: a lower bound), excess = sender's UDP bytes into the bottleneck - goodput "
             "(retransmissions + per-datagram overhead: an upper bound); both in %% of goodput. The "
             "datagram counts in brackets are for the whole run." % OVERHEAD)
    L.append("")
    singles = [r for r in recs if r["group"] == "single"]
    if singles:
        impls = []
        for r in singles:
            if r["tunnels"][0]["impl"] not in impls:
                impls.append(r["tunnels"][0]["impl"])
        L.append("## Goodput (Mbit/s) and share of the bottleneck")
        L.append("")
        L.append("| condition | direction | streams | " + " | ".join(impls) + " |")
        L.append("|---|---|---|" + "---|" * len(impls))
        keys = []
        for r in singles:
            k = (r["cond"], r["dir"], r["streams"])
            if k not in keys:
                keys.append(k)
        for k in keys:
            cells = []
            for im in impls:
                rr = [r for r in singles if (r["cond"], r["dir"], r["streams"]) == k
                      and r["tunnels"][0]["impl"] == im]
                if not rr:
                    cells.append("")
                    continue
                t = rr[0]["tunnels"][0]
                cells.append("%s (%s %%)" % (fmt(t.get("goodput_mbit")), fmt(100 * t["share"], "%.0f"))
                             if "share" in t else "FAILED")
            L.append("| %s | %s | %d | %s |" % (k[0], dir_name(k[1]), k[2], " | ".join(cells)))
        L.append("")
        L.append("## Every run")
        L.append("")
        L.append("| run | goodput Mbit/s | share | excess % | dropped % (random/queue dgrams) | "
                 "UDP rcvbuf drops c/s | cores client/server | cores bottleneck | cores others | "
                 "bottleneck lag mean/max µs | plot |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in singles:
            t = r["tunnels"][0]
            b = r.get("bottleneck", {})
            lag = b.get("late_mean_us", {}).get(r["dir"])
            L.append("| %s | %s | %s | %s | %s (%s/%s) | %s/%s | %s/%s | %s | %s | %s/%s | [png](plots/%s.png) |" % (
                r["name"], fmt(t.get("goodput_mbit")), fmt(100 * t["share"], "%.0f %%") if "share" in t else "-",
                fmt(t.get("excess_pct")), fmt(t.get("dropped_pct")), t.get("lost_dgrams", "-"),
                t.get("qdrop_dgrams", "-"), t["udp_rcvbuf_drops"]["client_ns"], t["udp_rcvbuf_drops"]["server_ns"],
                fmt(t.get("cores_client"), "%.2f"), fmt(t.get("cores_server"), "%.2f"),
                fmt(r["cores"].get("relay"), "%.3f"), fmt(r.get("cores_others"), "%.2f"),
                fmt(lag, "%.0f"), fmt(b.get("late_max_us"), "%.0f"), r["name"]))
        L.append("")
    shares = [r for r in recs if r["group"] == "share"]
    if shares:
        L.append("## Two tunnels through one bottleneck")
        L.append("")
        L.append("| run | tunnel A | A Mbit/s (share) | tunnel B | B Mbit/s (share) | total share | "
                 "Jain index | plot |")
        L.append("|---|---|---|---|---|---|---|---|")
        for r in shares:
            a, b = r["tunnels"]
            L.append("| %s | %s | %s (%s) | %s | %s (%s) | %s | %s | [png](plots/%s.png) |" % (
                r["name"], a["impl"], fmt(a.get("goodput_mbit")), fmt(100 * a["share"], "%.0f %%")
                if "share" in a else "-", b["impl"], fmt(b.get("goodput_mbit")),
                fmt(100 * b["share"], "%.0f %%") if "share" in b else "-",
                fmt(100 * r["total_share"], "%.0f %%") if r.get("total_share") else "-",
                fmt(r.get("jain"), "%.3f"), r["name"]))
        L.append("")
    L.append("cwnd / RTT: quicmux's sender is sampled with SIGUSR1 every 0.5 s (plots: cwnd and bytes "
             "in flight, smoothed and min RTT). v2ray's cwnd is **not observable** (quic-go inside "
             "v2ray exposes no congestion state); its plots show the bottleneck's view only: "
             "goodput over time and the path RTT (propagation + queueing in both directions).")
    L.append("")
    errs = [(r["name"], e) for r in recs for e in r.get("errors", [])]
    errs += [(r["name"], "another long-haul run's bottleneck was running (pid %s): disturbed"
              % ", ".join(map(str, r["foreign_bottlenecks"]))) for r in recs if r.get("foreign_bottlenecks")]
    if errs:
        L.append("## Problems")
        L.append("")
        for n, e in errs:
            L.append("* %s: %s" % (n, e))
        L.append("")
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write("\n".join(L) + "\n")
    return "\n".join(L)


def plot(outdir):
    py = "/usr/bin/python3"
    script = os.path.join(HERE, "longhaul_plot.py")
    try:
        r = subprocess.run([py, script, outdir], capture_output=True, timeout=600, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as e:
        log("plots: %s (scripts/deps.sh --bench installs python3-matplotlib)" % e)
        return
    if r.returncode != 0:
        log("plots failed (scripts/deps.sh --bench installs python3-matplotlib): %s"
            % r.stderr.decode(errors="replace")[-800:])
    else:
        log(r.stdout.decode(errors="replace").strip())


# --------------------------------------------------------------------------- main

def parse_variants(vals):
    """'bbr' -> ('quicmux-bbr', ['--cc', 'bbr']); 'NAME=FLAGS' -> ('quicmux-NAME', FLAGS split)."""
    out = []
    for v in vals or []:
        for item in v.split(","):
            item = item.strip()
            if not item:
                continue
            if "=" in item:
                name, flags = item.split("=", 1)
                out.append(("quicmux-" + name.strip(), shlex.split(flags)))
            else:
                out.append(("quicmux-" + item, ["--cc", item]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quicmux", default=os.environ.get("QUICMUX_BIN") or os.path.join(REPO, "build", "quicmux"),
                    help="quicmux binary (default: $QUICMUX_BIN or build/quicmux); quicmux rows are "
                         "skipped (and said so) when it does not run")
    ap.add_argument("--out", default=os.path.join(HERE, "out", "longhaul"))
    ap.add_argument("--time", type=int, default=30, help="iperf3 -t (seconds, default 30)")
    ap.add_argument("--quick", action="store_true",
                    help="-t 10, conditions 40M-200ms-1 and 100M-150ms-1, sharing upload only")
    ap.add_argument("--only", default="",
                    help="comma list of groups (single, share) and/or implementations (v2ray, quicmux, "
                         "quicmux-VARIANT) to run; default everything")
    ap.add_argument("--conditions", default=",".join(DEFAULT_CONDITIONS),
                    help="comma list of: " + ", ".join(CONDITIONS) + " (RATE-RTT-LOSS%%; default the first four)")
    ap.add_argument("--dirs", default="up,down")
    ap.add_argument("--streams", default="1,8")
    ap.add_argument("--variants", action="append",
                    help="extra quicmux rows with flags for both ends: 'bbr' (= --cc bbr), "
                         "'reno', 'cubic', or NAME=FLAGS; comma-separated or repeated")
    ap.add_argument("--share-cond", default="40M-200ms-0")
    ap.add_argument("--share-dirs", default="up,down")
    ap.add_argument("--share-streams", type=int, default=1)
    ap.add_argument("--share-pairs", default=",".join("%s+%s" % p for p in SHARE_PAIRS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--plot-only", action="store_true", help="redraw the plots of --out and exit")
    args = ap.parse_args()
    if args.plot_only:
        plot(args.out)
        return 0
    if args.quick:
        args.time = 10
        if args.conditions == ap.get_default("conditions"):
            args.conditions = "40M-200ms-1,100M-150ms-1"
        if args.share_dirs == ap.get_default("share_dirs"):
            args.share_dirs = "up"
    args.conditions = [x for x in args.conditions.split(",") if x]
    for x in args.conditions + [args.share_cond]:
        if x not in CONDITIONS:
            ap.error("unknown condition %r (known: %s)" % (x, ", ".join(CONDITIONS)))
    args.dirs = [x for x in args.dirs.split(",") if x in ("up", "down")]
    args.share_dirs = [x for x in args.share_dirs.split(",") if x in ("up", "down")]
    args.streams = [int(x) for x in args.streams.split(",") if x]
    args.share_pairs = [tuple(p.split("+", 1)) for p in args.share_pairs.split(",") if "+" in p]

    impls = [("v2ray", []), ("quicmux", [])] + parse_variants(args.variants)
    only = [x for x in args.only.split(",") if x]
    args.groups = ["single", "share"]
    if only:
        gs = [g for g in only if g in ("single", "share")]
        args.groups = gs or ["single", "share"]
        names = [x for x in only if x not in ("single", "share")]
        if names:
            unknown = set(names) - {n for n, _ in impls}
            if unknown:
                ap.error("unknown implementation(s) in --only: %s" % ", ".join(sorted(unknown)))
            impls = [i for i in impls if i[0] in names]

    if os.geteuid() != 0:
        ap.error("needs root (network namespaces)")
    ok, why = qm.have_netns()
    if not ok:
        ap.error("cannot make network namespaces here: %s" % why)
    for tool in ("iperf3",):
        if not shutil.which(tool):
            ap.error("%s not installed (scripts/deps.sh --bench)" % tool)
    qm_path = os.path.abspath(args.quicmux)
    qm_ver = quicmux_version(qm_path) if os.access(qm_path, os.X_OK) else None
    notes = []
    if any(n.startswith("quicmux") for n, _ in impls) and not qm_ver:
        notes.append("quicmux rows skipped: %s does not run" % qm_path)
        log(notes[-1])
        impls = [i for i in impls if not i[0].startswith("quicmux")]
    if any(n == "v2ray" for n, _ in impls) and not qm.have_v2ray():
        notes.append("v2ray rows skipped: v2ray not installed (scripts/deps.sh --bench)")
        log(notes[-1])
        impls = [i for i in impls if i[0] != "v2ray"]
    os.environ["QUICMUX_BIN"] = qm_path
    args.bottleneck = bottleneck_bin()  # once: a source edited during a run changes nothing

    outdir = os.path.abspath(args.out)
    os.makedirs(outdir, exist_ok=True)
    for sub in ("logs", "bottleneck", "plots"):
        shutil.rmtree(os.path.join(outdir, sub), ignore_errors=True)
        os.makedirs(os.path.join(outdir, sub))
    plan = build_plan(args, impls)
    est = len(plan) * (args.time + 6)
    log("%d runs of %d s each (about %d min)" % (len(plan), args.time, est // 60 + 1))
    meta = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "host": platform.node(),
            "command": " ".join(shlex.quote(a) for a in sys.argv), "quicmux": qm_ver and "%s (%s)" % (qm_ver, qm_path),
            "quicmux_sha256": sha256_of(qm_path) if qm_ver else None, "bottleneck": args.bottleneck,
            "v2ray": tool_version(["v2ray", "-version"]), "iperf3": tool_version(["iperf3", "--version"]),
            "kernel": platform.release(), "cpus": os.cpu_count(), "time_s": args.time, "seed": args.seed,
            "notes": notes, "security": SECURITY, "header": HEADER, "overhead_bytes": OVERHEAD}

    def on_signal(signum, frame):  # say why the run ended (then clean up as qmtest does)
        log("stopped by signal %d (%s); results so far are in %s" % (
            signum, signal.Signals(signum).name, os.path.join(outdir, "results.md")))
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    t_start = time.monotonic()
    recs = []
    hosts = []
    try:
        hosts = [qm.NetnsHost("c"), qm.NetnsHost("s")]
        for i, spec in enumerate(plan):
            c = qm.Case(spec["name"], os.path.join(outdir, "logs"))
            log("[%d/%d] %s" % (i + 1, len(plan), spec["name"]))
            try:
                rec = one_run(c, hosts, spec, args, outdir)
            except (qm.CheckFailed, OSError, subprocess.SubprocessError) as e:
                rec = {k: spec[k] for k in ("name", "group", "cond", "dir", "streams")}
                rec.update(errors=["%s: %s" % (e.__class__.__name__, e)], tunnels=[],
                           logs=os.path.relpath(c.dir, outdir))
                for ln in c.log_tails(8):
                    log("  | " + ln)
            finally:
                c.close()
            for t in rec["tunnels"]:
                log("    %-14s %s Mbit/s (%s of %d), excess %s %%, dropped %s %%%s" % (
                    t["impl"], fmt(t.get("goodput_mbit")), fmt(100 * t["share"], "%.0f %%") if "share" in t
                    else "-", CONDITIONS[spec["cond"]][0], fmt(t.get("excess_pct")), fmt(t.get("dropped_pct")),
                    "; " + t["error"] if t.get("error") else ""))
            if rec.get("errors"):
                log("    problems: " + "; ".join(rec["errors"]))
            if rec.get("cores"):
                b = rec.get("bottleneck", {})
                log("    cores: bottleneck %s, others %s; bottleneck lag mean %s µs, socket drops %s" % (
                    fmt(rec["cores"].get("relay"), "%.3f"), fmt(rec.get("cores_others"), "%.2f"),
                    fmt(b.get("late_mean_us", {}).get(spec["dir"]), "%.0f"), b.get("socket_rx_overflows")))
            recs.append(rec)
            meta["total_wall_s"] = round(time.monotonic() - t_start, 1)
            write_report(outdir, meta, recs)  # after every run: a partial result survives
    finally:
        for h in hosts:
            h.close()
    meta["total_wall_s"] = round(time.monotonic() - t_start, 1)
    md = write_report(outdir, meta, recs)
    if not args.no_plots:
        plot(outdir)
    print(md)
    log("results: %s (%.0f s)" % (os.path.join(outdir, "results.md"), meta["total_wall_s"]))
    return 1 if any(r.get("errors") for r in recs) else 0


if __name__ == "__main__":
    sys.exit(main())
