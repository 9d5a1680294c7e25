#!/usr/bin/python3
"""Plots of a bench/longhaul.py run: /usr/bin/python3 bench/longhaul_plot.py OUTDIR

Runs with Debian's python3 and python3-matplotlib (scripts/deps.sh --bench); longhaul.py
calls it at the end (and with --plot-only).  Reads OUTDIR/results.json and the
bottleneck's JSON of every run; writes OUTDIR/plots/RUN.png (three panels over time:
what the bottleneck forwards per tunnel, the quicmux sender's cwnd and bytes in flight,
RTTs) and OUTDIR/plots/summary.png (share of the bottleneck per condition).
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red"]


def series(bst, t0_unix, d, nmaps):
    """From the bottleneck's 100 ms timeline: times (s since iperf3 started), forwarded
    Mbit/s per map in direction d (0.5 s bins), and the queueing delay (ms) up and down."""
    rows = bst.get("timeline") or []
    if not rows:
        return None
    off = bst["start_unix_s"] - t0_unix
    smap = [s["map"] for s in bst["sessions"]]
    col = 3 + (0 if d == "up" else 3) + 2  # [t, backlog up, backlog down, 6 per session]
    ts, per_map, qd_up, qd_down = [], [[] for _ in range(nmaps)], [], []
    rate_up = bst["up"]["rate_mbit"] * 1e6 / 8
    rate_down = bst["down"]["rate_mbit"] * 1e6 / 8
    for r in rows:
        ts.append(r[0] / 1000.0 + off)
        vals = [0] * nmaps
        for i, m in enumerate(smap):
            k = col + 6 * i
            if k < len(r):
                vals[m] += r[k]
        for m in range(nmaps):
            per_map[m].append(vals[m])
        qd_up.append(1000.0 * r[1] / rate_up if rate_up else 0.0)
        qd_down.append(1000.0 * r[2] / rate_down if rate_down else 0.0)
    step = 5  # 5 x 100 ms
    bt, bmbit = [], [[] for _ in range(nmaps)]
    for i in range(step, len(ts), step):
        dt = ts[i] - ts[i - step]
        if dt <= 0:
            continue
        bt.append((ts[i] + ts[i - step]) / 2)
        for m in range(nmaps):
            bmbit[m].append((per_map[m][i] - per_map[m][i - step]) * 8 / dt / 1e6)
    return ts, bt, bmbit, qd_up, qd_down


def plot_run(outdir, run):
    path = os.path.join(outdir, run["bottleneck_json"])
    try:
        with open(path) as f:
            bst = json.load(f)
    except (OSError, ValueError):
        return None
    tunnels = run["tunnels"]
    d = run["dir"]
    s = series(bst, run["t0_unix"], d, len(tunnels))
    if not s:
        return None
    ts, bt, bmbit, qd_up, qd_down = s
    rate, rtt = run["rate_mbit"], run["rtt_ms"]
    fig, ax = plt.subplots(3, 1, figsize=(10, 9.5), sharex=True)
    labels = ["%s%s" % (t["impl"], " #%d" % (i + 1) if len(tunnels) > 1 else "") for i, t in enumerate(tunnels)]
    # 1: forwarded by the bottleneck
    for i, t in enumerate(tunnels):
        gp = t.get("goodput_mbit")
        ax[0].plot(bt, bmbit[i], color=COLORS[i], label="%s (iperf3 goodput %s Mbit/s)" % (
            labels[i], "%.1f" % gp if gp is not None else "-"))
    ax[0].axhline(rate, color="k", ls=":", lw=1, label="link rate %g Mbit/s" % rate)
    for i, t in enumerate(tunnels):  # where the receiving iperf3 counted
        w = t.get("window")
        if w:
            for a in ax:
                a.axvspan(w["start_s"], w["end_s"], color=COLORS[i], alpha=0.04, lw=0)
    ax[0].set_ylabel("forwarded, Mbit/s\n(UDP payload, 0.5 s bins)")
    ax[0].text(0.01, 0.95, "shaded: while the receiving iperf3 counted", transform=ax[0].transAxes,
               va="top", fontsize=8, color="grey")
    ax[0].set_ylim(0, rate * 1.15)
    ax[0].legend(loc="lower right", fontsize=8)
    ax[0].set_title("%s: %s, %d stream%s, %g Mbit/s, RTT %g ms, loss %g %% each way, queue %d kB" % (
        run["name"], "upload" if d == "up" else "download", run["streams"], "s" if run["streams"] > 1 else "",
        rate, rtt, 100 * run["loss"], bst[d]["queue_bytes"] // 1000), fontsize=10)
    # 2: cwnd / in flight
    bdp_kb = rate * 1e6 / 8 * rtt / 1000 / 1000
    for i, t in enumerate(tunnels):
        sm = t.get("cwnd_samples") or []
        if not sm:
            continue
        x = [p[0] for p in sm]
        ax[1].plot(x, [p[4] / 1000 for p in sm], color=COLORS[i], marker=".", ms=3,
                   label="%s cwnd (%s's sender)" % (labels[i], t["sender"]))
        ax[1].plot(x, [p[5] / 1000 for p in sm], color=COLORS[i], ls="--", lw=1,
                   label="%s bytes in flight" % labels[i])
    top = max([p[k] / 1000 for t in tunnels for p in (t.get("cwnd_samples") or []) for k in (4, 5)] or [0])
    top = max(1.15 * top, 0.1 * bdp_kb) if top else 2.2 * bdp_kb
    for y, c, what in ((bdp_kb, "k", "BDP"), (2 * bdp_kb, "grey", "BDP + queue")):
        if y <= top:
            ax[1].axhline(y, color=c, ls=":", lw=1, label="%s %.0f kB" % (what, y))
        else:
            ax[1].plot([], [], color=c, ls=":", lw=1, label="%s %.0f kB (off scale)" % (what, y))
    ax[1].set_ylim(0, top)
    notes = [labels[i] for i, t in enumerate(tunnels) if not t.get("cwnd_samples")]
    if notes:
        ax[1].text(0.01, 0.95, "cwnd not observable for %s (v2ray/quic-go exposes no congestion state)"
                   % ", ".join(notes), transform=ax[1].transAxes, va="top", fontsize=9,
                   bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))
    ax[1].set_ylabel("kB")
    ax[1].legend(loc="upper right", fontsize=8)
    # 3: RTT
    path_rtt = [rtt + a + b for a, b in zip(qd_up, qd_down)]
    ax[2].plot(ts, path_rtt, color="k", lw=1, label="path RTT at the bottleneck (propagation + queues)")
    for i, t in enumerate(tunnels):
        sm = t.get("cwnd_samples") or []
        if not sm:
            continue
        x = [p[0] for p in sm]
        ax[2].plot(x, [p[2] for p in sm], color=COLORS[i], marker=".", ms=3, label="%s smoothed RTT" % labels[i])
        ax[2].plot(x, [p[3] for p in sm], color=COLORS[i], ls="--", lw=1, label="%s min RTT" % labels[i])
    ax[2].set_ylabel("RTT, ms")
    ax[2].set_xlabel("seconds since iperf3 started")
    ax[2].set_ylim(bottom=0)
    ax[2].legend(loc="lower right", fontsize=8)
    xmax = run.get("time_s", 30) + 3
    ax[2].set_xlim(-0.5, xmax)
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    out = os.path.join(outdir, "plots", run["name"] + ".png")
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def plot_summary(outdir, runs):
    singles = [r for r in runs if r["group"] == "single" and r["tunnels"]]
    if not singles:
        return None
    keys, impls = [], []
    for r in singles:
        k = (r["cond"], r["dir"], r["streams"])
        if k not in keys:
            keys.append(k)
        im = r["tunnels"][0]["impl"]
        if im not in impls:
            impls.append(im)
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(keys) + 2), 4.5))
    w = 0.8 / len(impls)
    for j, im in enumerate(impls):
        xs, ys = [], []
        for i, k in enumerate(keys):
            rr = [r for r in singles if (r["cond"], r["dir"], r["streams"]) == k and r["tunnels"][0]["impl"] == im]
            if rr and "share" in rr[0]["tunnels"][0]:
                xs.append(i - 0.4 + w * (j + 0.5))
                ys.append(100 * rr[0]["tunnels"][0]["share"])
        ax.bar(xs, ys, width=w, label=im, color=COLORS[j % len(COLORS)])
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(["%s\n%s P%d" % (c, "up" if d == "up" else "down", n) for c, d, n in keys], fontsize=7)
    ax.set_ylabel("goodput / link rate, %")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Share of the bottleneck (iperf3 goodput through the tunnel)", fontsize=10)
    fig.tight_layout()
    out = os.path.join(outdir, "plots", "summary.png")
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main():
    outdir = sys.argv[1]
    with open(os.path.join(outdir, "results.json")) as f:
        res = json.load(f)
    os.makedirs(os.path.join(outdir, "plots"), exist_ok=True)
    n = 0
    for run in res["runs"]:
        if run.get("bottleneck_json") and run.get("tunnels") and plot_run(outdir, run):
            n += 1
    s = plot_summary(outdir, res["runs"])
    print("plots: %d run plots%s in %s" % (n, " + summary.png" if s else "", os.path.join(outdir, "plots")))


if __name__ == "__main__":
    main()
