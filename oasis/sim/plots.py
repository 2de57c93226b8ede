"""PNG plots of one run (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _cdf(ax: Any, values: np.ndarray, label: str) -> None:
    if len(values) == 0:
        return
    v = np.sort(values.astype(np.float64))
    if len(v) > 20000:  # thin the curve, not the data
        idx = np.linspace(0, len(v) - 1, 20000).astype(int)
        v = v[idx]
    ax.plot(v * 1000, np.linspace(0, 1, len(v)), label=label)


def write_plots(out_dir: str, sim: Any, baselines: dict[str, Any], s: Any) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    pd = sim.plot_data()
    files = []

    def save(fig: Any, name: str) -> None:
        path = os.path.join(out_dir, name)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(path)

    fig, ax = plt.subplots(figsize=(7, 4))
    _cdf(ax, pd["latency_s"], "oasis")
    for name, b in baselines.items():
        _cdf(ax, b.latencies(), name)
    ax.set_xscale("log")
    ax.set_xlabel("delivery latency (ms, log)")
    ax.set_ylabel("CDF")
    ax.set_title(f"{s.name}: delivery latency")
    ax.legend()
    ax.grid(alpha=0.3)
    save(fig, "latency_cdf.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    if pd["offload_t"]:
        x, y = zip(*pd["offload_t"], strict=True)
        ax.plot(x, y, label="oasis")
    for name, b in baselines.items():
        ax.axhline(b_off(b), ls="--", lw=1, label=f"{name} (run mean)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("offload (p2p share of bytes)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{s.name}: offload over time")
    ax.legend()
    ax.grid(alpha=0.3)
    save(fig, "offload_over_time.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    if pd["continuity_t"]:
        x, y = zip(*pd["continuity_t"], strict=True)
        ax.plot(x, y, label="oasis")
    ax.set_xlabel("chunk time (s)")
    ax.set_ylabel("continuity (on-time share)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{s.name}: continuity over time")
    ax.legend()
    ax.grid(alpha=0.3)
    save(fig, "continuity_over_time.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    util = pd["upload_util"]
    names = sorted(util)
    if names:
        ax.boxplot([util[n] for n in names], tick_labels=names, showfliers=False)
        means = [float(np.mean(util[n])) for n in names]
        ax.plot(range(1, len(names) + 1), means, "o", label="mean")
        ax.legend()
    ax.set_ylabel("upload used / upload capacity")
    ax.set_title(f"{s.name}: Oasis upload utilisation by access type")
    ax.grid(alpha=0.3)
    save(fig, "upload_by_access.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    hops = {k: v for k, v in pd["hops"].items() if k >= 0}
    if hops:
        ks = sorted(hops)
        tot = sum(hops.values())
        ax.bar(ks, [hops[k] / tot for k in ks])
    ax.set_xlabel("hops from the broadcaster (push-tree depth at delivery)")
    ax.set_ylabel("share of P2P deliveries")
    ax.set_title(f"{s.name}: hops from the broadcaster")
    ax.grid(alpha=0.3)
    save(fig, "hops.png")
    return files


def b_off(b: Any) -> float:
    p2p = sum(r.bytes_by_source.get("p2p", 0) for r in b.records)
    tot = sum(sum(r.bytes_by_source.values()) for r in b.records)
    return p2p / tot if tot else 0.0
