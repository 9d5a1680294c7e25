#!/usr/bin/env python3
"""Profile quicmux at full speed: one iperf3 stream through a quicmux tunnel (loopback).

    python3 bench/profile.py [--security aes-128-gcm] [--mib 128] [--secs 8] [--out bench/out/profile]
                             [--quicmux BIN] [--skip callgrind,perf,strace] [--no-netns]

1. callgrind (instruction counts, repeatable): the tunnel client and, in a second pass,
   the tunnel server run under `valgrind --tool=callgrind` while iperf3 sends a fixed
   amount (-n MIB) through the tunnel; top functions by self instructions (Ir), with the
   nearest exported symbol named for functions of stripped libraries.
2. perf (wall-clock samples, `-e cpu-clock`: hardware counters are not available here):
   user/kernel split and top symbols of client and server during `iperf3 -t SECS`.
3. strace -c -f on the client and the server (separate passes) during `iperf3 -t SECS`,
   with UDP datagram counts from /proc/net/snmp, so syscalls per datagram can be read.
Reports go to OUT/profile.md (plus the raw files).
"""

import argparse
import bisect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # leave no __pycache__ in tests/ or bench/
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as bench  # noqa: E402
from run import qt, HOST, KEY, log  # noqa: E402


def snmp_udp():
    with open("/proc/net/snmp") as f:
        lines = f.read().splitlines()
    for i in range(0, len(lines) - 1, 2):
        hdr, val = lines[i].split(), lines[i + 1].split()
        if hdr[0] == "Udp:":
            return dict(zip(hdr[1:], map(int, val[1:])))
    return {}


def start_pair(case, security, wrap_client=None, wrap_server=None, target=None):
    """quicmux server+client, optionally with a command prefix (valgrind) for one of them."""
    b = qt.quicmux_bin()
    sport = qt.free_udp_port(HOST)
    cport = qt.free_tcp_port(HOST)
    common = ["--security", security, "--key", KEY, "--header", "none", "--log-level", "warning"]
    sargv = (wrap_server or []) + [b, "server", "--listen", qt.hostport(HOST, sport),
                                   "--target", qt.hostport(*target)] + common
    sp = case.spawn(sargv, "server")
    qt.wait_udp_bound(sport, pid=sp.pid, timeout=60, proc=sp)
    cargv = (wrap_client or []) + [b, "client", "--listen", qt.hostport(HOST, cport),
                                   "--server", qt.hostport(HOST, sport)] + common
    cp = case.spawn(cargv, "client")
    qt.wait_tcp_listen(cport, pid=cp.pid, timeout=60, proc=cp)
    return sp, cp, (HOST, cport)


def iperf_server(case):
    port = qt.free_tcp_port(HOST)
    p = case.spawn(["iperf3", "-s", "-1", "-B", HOST, "-p", str(port)], "iperf3-server")
    qt.wait_tcp_listen(port, pid=p.pid, timeout=10, proc=p)
    return p, (HOST, port)


def iperf_client(addr, extra, timeout):
    rc, out, err, dt = qt.run_cmd(["iperf3", "-c", addr[0], "-p", str(addr[1]), "-J",
                                   "--connect-timeout", "10000"] + extra, timeout=timeout)
    try:
        j = json.loads(out)
    except ValueError:
        raise RuntimeError("iperf3 rc=%s: %s" % (rc, (err or out)[-300:]))
    if "error" in j:
        raise RuntimeError("iperf3: %s" % j["error"])
    r = j["end"]["sum_received"]
    return r["bytes"], r["bits_per_second"] / 1e6, dt


# --------------------------------------------------------------------------- symbol naming

_symcache = {}


def nearest_symbol(lib, addr):
    """Nearest exported symbol at or below addr in lib (for stripped libraries)."""
    if lib not in _symcache:
        syms = []
        out = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True).stdout
        for ln in out.splitlines():
            parts = ln.split()
            if len(parts) == 3 and parts[1] in "tTwW":
                syms.append((int(parts[0], 16), parts[2].split("@")[0]))
        syms.sort()
        _symcache[lib] = syms
    syms = _symcache[lib]
    i = bisect.bisect_right(syms, (addr, "\xff")) - 1
    if i < 0:
        return None
    a, name = syms[i]
    return "%s+0x%x" % (name, addr - a)


def insn_hint(lib, addr):
    """A few words on what an unnamed function does, from its first ~600 bytes of code."""
    out = subprocess.run(["objdump", "-d", "--start-address=0x%x" % addr, "--stop-address=0x%x" % (addr + 600),
                          lib], capture_output=True, text=True).stdout
    ops = re.findall(r"\t([a-z][a-z0-9]*)\s", out)
    hints = []
    if any(o.startswith(("aesenc", "vaesenc")) for o in ops):
        hints.append("AES-NI")
    if any("pclmul" in o for o in ops):
        hints.append("PCLMUL (GHASH)")
    return ", ".join(hints)


def callgrind_top(path, n=25):
    out = subprocess.run(["callgrind_annotate", "--threshold=99", path], capture_output=True, text=True).stdout
    total = None
    rows = []
    for ln in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+PROGRAM TOTALS", ln)
        if m:
            total = int(m.group(1).replace(",", ""))
            continue
        m = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+(.*?):(\S+) \[(.*)\]$", ln)
        if m:
            ir, pctv, _file, fn, obj = m.groups()
            name = fn
            if fn.startswith("0x"):
                near = nearest_symbol(obj, int(fn, 16))
                hint = insn_hint(obj, int(fn, 16))
                name = "%s (near %s%s)" % (fn, near or "?", ("; " + hint) if hint else "")
            rows.append((int(ir.replace(",", "")), float(pctv), name, os.path.basename(obj)))
    by_obj = {}
    for ir, _p, _nm, obj in rows:
        by_obj[obj] = by_obj.get(obj, 0) + ir
    return total, rows[:n], by_obj


def perf_top(path, n=20):
    rep = subprocess.run(["perf", "report", "-i", path, "--no-children", "--sort", "dso,sym", "--stdio",
                          "-g", "none", "--percent-limit", "0.7"], capture_output=True, text=True).stdout
    rows = []
    for ln in rep.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[([k.])\]\s+(.*)$", ln)
        if m:
            rows.append((float(m.group(1)), m.group(2), m.group(3), m.group(4).strip()))
    dso = subprocess.run(["perf", "report", "-i", path, "--no-children", "--sort", "dso", "--stdio", "-g", "none"],
                         capture_output=True, text=True).stdout
    drows = []
    for ln in dso.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)", ln)
        if m:
            drows.append((float(m.group(1)), m.group(2)))
    return rows[:n], drows


# --------------------------------------------------------------------------- passes

def pass_callgrind(args, root, role):
    case = qt.Case("callgrind-" + role, root)
    try:
        _ip, iaddr = iperf_server(case)
        outf = os.path.join(args.out, "callgrind.%s.%s.out" % (role, args.security))
        vg = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + outf]
        sp, cp, caddr = start_pair(case, args.security, wrap_client=vg if role == "client" else None,
                                   wrap_server=vg if role == "server" else None, target=iaddr)
        time.sleep(0.5)
        nbytes, mbps, dt = iperf_client(caddr, ["-n", "%dM" % args.mib], timeout=900)
        p = cp if role == "client" else sp
        p.stop(timeout=60)
        total, rows, by_obj = callgrind_top(outf, args.top)
        return {"role": role, "bytes": nbytes, "mbps_under_valgrind": mbps, "total_ir": total,
                "ir_per_byte": total / nbytes if nbytes else None, "top": rows,
                "by_obj": sorted(by_obj.items(), key=lambda x: -x[1]), "file": outf}
    finally:
        case.close()


def pass_perf(args, root):
    case = qt.Case("perf", root)
    try:
        _ip, iaddr = iperf_server(case)
        sp, cp, caddr = start_pair(case, args.security, target=iaddr)
        time.sleep(0.3)
        res = {}
        recs = []
        for role, p in (("client", cp), ("server", sp)):
            f = os.path.join(args.out, "perf.%s.%s.data" % (role, args.security))
            rp = case.spawn(["perf", "record", "-e", "cpu-clock", "-F", "2999", "-g", "-o", f, "-p", str(p.pid),
                             "--", "sleep", str(args.secs + 1)], "perf-" + role)
            recs.append((role, rp, f))
        time.sleep(0.5)
        nbytes, mbps, _dt = iperf_client(caddr, ["-t", str(args.secs)], timeout=args.secs + 60)
        for role, rp, f in recs:
            rp.wait(30)
            top, dso = perf_top(f, args.top)
            res[role] = {"top": top, "dso": dso, "file": f}
        res["mbps"] = mbps
        res["bytes"] = nbytes
        return res
    finally:
        case.close()


def parse_strace(text):
    rows = []
    for ln in text.splitlines():
        parts = ln.split()
        if len(parts) >= 5 and re.match(r"^[\d.]+$", parts[0]) and parts[-1] not in ("total",):
            try:
                calls = int(parts[3])
            except ValueError:
                continue
            errors = int(parts[4]) if len(parts) == 6 else 0
            rows.append({"syscall": parts[-1], "pct": float(parts[0]), "seconds": float(parts[1]),
                         "calls": calls, "errors": errors})
    return rows


def pass_strace(args, root, role):
    case = qt.Case("strace-" + role, root)
    try:
        _ip, iaddr = iperf_server(case)
        sp, cp, caddr = start_pair(case, args.security, target=iaddr)
        time.sleep(0.3)
        p = cp if role == "client" else sp
        f = os.path.join(args.out, "strace.%s.%s.txt" % (role, args.security))
        st = case.spawn(["strace", "-c", "-f", "-o", f, "-p", str(p.pid)], "strace-" + role)
        time.sleep(0.5)
        u0 = snmp_udp()
        nbytes, mbps, _dt = iperf_client(caddr, ["-t", str(args.secs)], timeout=args.secs + 60)
        u1 = snmp_udp()
        st.stop(sig=2, timeout=10)   # SIGINT: strace detaches and writes the summary
        with open(f) as fh:
            rows = parse_strace(fh.read())
        return {"role": role, "bytes": nbytes, "mbps_under_strace": mbps,
                "udp_out_datagrams": u1.get("OutDatagrams", 0) - u0.get("OutDatagrams", 0),
                "udp_in_datagrams": u1.get("InDatagrams", 0) - u0.get("InDatagrams", 0),
                "syscalls": rows, "file": f}
    finally:
        case.close()


# --------------------------------------------------------------------------- report

def report(args, results):
    md = ["# quicmux profile: 1 iperf3 stream, security %s, header none" % args.security, ""]
    md.append("- binary: %s (%s)" % (args.quicmux_src, bench.sh([qt.quicmux_bin(), "--version"])))
    md.append("- command: `python3 bench/profile.py %s`" % os.environ.get("QMBENCH_ARGV", ""))
    md.append("")
    for cg in results.get("callgrind", []):
        md.append("## callgrind, tunnel %s (%d MiB through iperf3 -n; %.1f Mbit/s under valgrind)"
                  % (cg["role"], cg["bytes"] // (1 << 20), cg["mbps_under_valgrind"]))
        md.append("")
        md.append("Total %s instructions = **%.1f instructions per payload byte**." % (
            "{:,}".format(cg["total_ir"]), cg["ir_per_byte"]))
        md.append("")
        md.append("| Ir % (self) | function | object |")
        md.append("|---|---|---|")
        for ir, pctv, name, obj in cg["top"]:
            md.append("| %.2f | %s | %s |" % (pctv, name, obj))
        md.append("")
        md.append("By object: " + ", ".join("%s %.1f%%" % (o, 100.0 * ir / cg["total_ir"])
                                            for o, ir in cg["by_obj"][:8]))
        md.append("")
    pf = results.get("perf")
    if pf:
        md.append("## perf (cpu-clock samples), %d s at %.0f Mbit/s" % (args.secs, pf["mbps"]))
        md.append("")
        for role in ("client", "server"):
            md.append("### %s: by object" % role)
            md.append("")
            md.append(", ".join("%s %.1f%%" % (d, p) for p, d in pf[role]["dso"][:8]))
            md.append("")
            md.append("| % samples | object | k/u | symbol |")
            md.append("|---|---|---|---|")
            for p, dso, ku, sym in pf[role]["top"]:
                md.append("| %.2f | %s | %s | %s |" % (p, dso, "kernel" if ku == "k" else "user", sym))
            md.append("")
    for s in results.get("strace", []):
        md.append("## strace -c -f, tunnel %s, iperf3 -t %d (%.0f Mbit/s under strace)" % (
            s["role"], args.secs, s["mbps_under_strace"]))
        md.append("")
        dg = s["udp_out_datagrams"]
        mib = s["bytes"] / float(1 << 20)
        md.append("Payload %.1f MiB. UDP sends of both tunnel ends (OutDatagrams of the namespace; a GSO send "
                  "counts once): %d, i.e. %.0f payload bytes per send (a full QUIC packet carries ~1.4 KB)."
                  % (mib, dg, s["bytes"] / max(1, dg)))
        md.append("")
        md.append("| syscall | calls | errors | % time | calls per MiB of payload | payload bytes per call |")
        md.append("|---|---|---|---|---|---|")
        for r in s["syscalls"][:12]:
            md.append("| %s | %d | %d | %.1f | %.1f | %.0f |" % (r["syscall"], r["calls"], r["errors"], r["pct"],
                                                              r["calls"] / max(1e-9, mib),
                                                              s["bytes"] / max(1, r["calls"])))
        md.append("")
    text = "\n".join(md) + "\n"
    with open(os.path.join(args.out, "profile.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "profile.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--security", default="aes-128-gcm")
    ap.add_argument("--mib", type=int, default=128, help="MiB sent through the tunnel for callgrind")
    ap.add_argument("--secs", type=int, default=8, help="iperf3 -t for perf and strace")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--skip", default="")
    ap.add_argument("--quicmux", default="")
    ap.add_argument("--out", default=os.path.join(bench.REPO, "bench", "out", "profile"))
    ap.add_argument("--no-netns", action="store_true")
    args = ap.parse_args()
    args.out = os.path.abspath(args.out)
    if args.quicmux:
        os.environ["QUICMUX_BIN"] = os.path.abspath(args.quicmux)
    os.environ.setdefault("QMBENCH_ARGV", " ".join(sys.argv[1:]))
    if (not args.no_netns and os.environ.get("QMBENCH_NETNS") is None and os.geteuid() == 0
            and shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"]).returncode == 0):
        env = dict(os.environ, QMBENCH_NETNS="1")
        argv = ["unshare", "-n", "--", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\"", sys.executable,
                os.path.abspath(__file__)] + sys.argv[1:] + ["--out", args.out]
        return subprocess.call(argv, env=env)
    qt.install_signal_handlers()
    os.makedirs(args.out, exist_ok=True)
    root = tempfile.mkdtemp(prefix="qmprof.")
    args.quicmux_src = qt.quicmux_bin()
    priv = os.path.join(root, "quicmux")
    shutil.copy2(args.quicmux_src, priv)
    os.environ["QUICMUX_BIN"] = priv
    skip = set(args.skip.split(",")) if args.skip else set()
    results = {}
    if "callgrind" not in skip:
        results["callgrind"] = []
        for role in ("client", "server"):
            log("callgrind %s ..." % role)
            results["callgrind"].append(pass_callgrind(args, root, role))
    if "perf" not in skip:
        log("perf ...")
        results["perf"] = pass_perf(args, root)
    if "strace" not in skip:
        results["strace"] = []
        for role in ("client", "server"):
            log("strace %s ..." % role)
            results["strace"].append(pass_strace(args, root, role))
    report(args, results)
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
