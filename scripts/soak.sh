#!/bin/sh
# Soak test (not part of CI): mixed load through one quicmux client/server pair for a
# while, RSS of both sampled every 10 s.
#
#   scripts/soak.sh [SECONDS]          default 600 (10 minutes)
#   QUICMUX_BIN=path/to/quicmux        default build/quicmux
#   SOAK_SECURITY=aes-128-gcm SOAK_HEADER=srtp SOAK_BULK=2 SOAK_SHORT=8
#
# Load: SOAK_BULK threads each echoing 8 MiB transfers back to back, and SOAK_SHORT
# threads each opening short connections (1 KiB echo, then close) back to back --
# thousands over the run.  Pass when: no transfer or connection failed, no "error" or
# unexpected "warning" line in either log, both processes alive, and at the end the RSS
# of each process is at most 10 % (or 2 MiB, whichever is larger) above its RSS after
# the first minute (after a third of the run for runs shorter than 3 minutes); shrinking
# is fine.
set -eu
cd "$(dirname "$0")/.."
exec python3 - "$(pwd)" "${1:-600}" <<'PYEOF'
import os, re, signal, socket, sys, threading, time
ROOT, DURATION = sys.argv[1], float(sys.argv[2])
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
if not os.environ.get("QUICMUX_BIN"):
    os.environ["QUICMUX_BIN"] = os.path.join(ROOT, "build", "quicmux")
import qmtest as qm

SEC = os.environ.get("SOAK_SECURITY", "aes-128-gcm")
HDR = os.environ.get("SOAK_HEADER", "srtp")
NBULK = int(os.environ.get("SOAK_BULK", "2"))
NSHORT = int(os.environ.get("SOAK_SHORT", "8"))
BULK_BYTES = 8 * qm.MiB
qm.install_signal_handlers()


def rss(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    except (OSError, AttributeError):
        return None


root = qm.tempfile.mkdtemp(prefix="qm-soak.")
c = qm.Case("soak", root)
stop = threading.Event()
lock = threading.Lock()
count = {"bulk_ok": 0, "bulk_bytes": 0, "short_ok": 0, "errors": 0}
errors = []


def err(msg):
    with lock:
        count["errors"] += 1
        if len(errors) < 20:
            errors.append("%.0fs %s" % (time.monotonic() - t0, msg))


def bulk(i, addr):
    n = 0
    while not stop.is_set():
        n += 1
        res = qm.check_transfer(addr, conns=1, nbytes=BULK_BYTES, seed=i * 100000 + n, timeout=120, stall=30)
        if res.ok:
            with lock:
                count["bulk_ok"] += 1
                count["bulk_bytes"] += BULK_BYTES
        else:
            err("bulk: " + "; ".join(r.describe() for r in res.failures()))
            time.sleep(1)


def short(i, addr):
    rnd = qm.random.Random(i)
    while not stop.is_set():
        payload = rnd.randbytes(1024)
        try:
            s = socket.create_connection(addr, timeout=10)
            try:
                s.settimeout(10)
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                got = b""
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    got += d
            finally:
                s.close()
            if got != payload:
                err("short: echo differs (%d bytes back)" % len(got))
            else:
                with lock:
                    count["short_ok"] += 1
        except OSError as e:
            err("short: %r" % e)
            time.sleep(0.5)


rc = 1
try:
    target = c.echo_server()
    sp, saddr = c.qm_server(target.addr, security=SEC, key="soak", header=HDR, log_level="warning")
    cp, caddr = c.qm_client(saddr, security=SEC, key="soak", header=HDR, log_level="warning")
    print("soak: %.0f s, %s + %s, %d bulk + %d short-connection threads; quicmux %s; logs in %s" % (
        DURATION, SEC, HDR, NBULK, NSHORT, qm.quicmux_bin(), root), flush=True)
    t0 = time.monotonic()
    threads = [threading.Thread(target=bulk, args=(i, caddr), daemon=True) for i in range(NBULK)]
    threads += [threading.Thread(target=short, args=(i, caddr), daemon=True) for i in range(NSHORT)]
    for t in threads:
        t.start()
    ref_at = 60.0 if DURATION >= 180 else DURATION / 3.0
    samples = []
    ref = None
    next_sample = 10.0
    while True:
        now = time.monotonic() - t0
        if now >= DURATION:
            break
        if not (sp.alive() and cp.alive()):
            err("a process exited: server %s, client %s" % (sp.returncode(), cp.returncode()))
            break
        if now >= next_sample:
            rc_, rs_ = rss(cp.pid), rss(sp.pid)
            samples.append((now, rc_, rs_))
            with lock:
                snap = dict(count)
            print("  t=%4.0fs  RSS client %6.1f MiB  server %6.1f MiB  bulk %d (%.0f MiB)  short %d  errors %d"
                  % (now, (rc_ or 0) / 1024.0, (rs_ or 0) / 1024.0, snap["bulk_ok"], snap["bulk_bytes"] / qm.MiB,
                     snap["short_ok"], snap["errors"]), flush=True)
            if ref is None and now >= ref_at:
                ref = (now, rc_, rs_)
            next_sample += 10.0
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join(130)
    time.sleep(1.0)
    end = (time.monotonic() - t0, rss(cp.pid), rss(sp.pid))
    alive = sp.alive() and cp.alive()
    # Log lines that are not expected.
    bad_lines = []
    for p in (cp, sp):
        for ln in p.log().splitlines():
            if ln.startswith("$ ") or "[stats]" in ln:
                continue
            if re.search(r"\b(error|warning)\b", ln) and "certificate is not verified" not in ln:
                bad_lines.append("%s: %s" % (p.name, ln))
    if ref is None:
        ref = samples[0] if samples else end
    ok = True
    print("soak summary:")
    print("  duration %.0f s; bulk transfers %d (%.0f MiB each way), short connections %d, errors %d"
          % (end[0], count["bulk_ok"], count["bulk_bytes"] / qm.MiB, count["short_ok"], count["errors"]))
    for name, idx in (("client", 1), ("server", 2)):
        r0, r1 = ref[idx], end[idx]
        peak = max((s[idx] or 0) for s in samples) if samples else r1
        if r0 is None or r1 is None:
            print("  %s: RSS unknown (process gone)" % name)
            ok = False
            continue
        grow = r1 - r0
        lim = max(0.10 * r0, 2048)
        verdict = "ok" if grow <= lim else "GREW"
        print("  %s RSS: %.1f MiB at %.0fs (reference), %.1f MiB at the end, peak %.1f MiB: %+.1f%% (%s; limit +10%%)"
              % (name, r0 / 1024.0, ref[0], r1 / 1024.0, peak / 1024.0, 100.0 * grow / r0, verdict))
        ok = ok and grow <= lim
    if errors:
        ok = False
        print("  errors (first %d):" % len(errors))
        for e in errors:
            print("    " + e)
    if bad_lines:
        ok = False
        print("  unexpected log lines (first 10 of %d):" % len(bad_lines))
        for ln in bad_lines[:10]:
            print("    " + ln)
    if not alive:
        ok = False
        print("  a process died: server %s, client %s" % (sp.returncode(), cp.returncode()))
    print("soak: %s" % ("PASS" if ok else "FAIL"))
    rc = 0 if ok else 1
finally:
    stop.set()
    c.close()
sys.exit(rc)
PYEOF
