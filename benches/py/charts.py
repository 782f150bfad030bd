"""Charts of an `eventide-bench suite` report: python charts.py REPORT.json OUTDIR.

Writes throughput.png (ingest events/s over time), latency.png (ack latency and freshness
distributions) and queries.png (per-query Eventide/DuckDB median ratio).
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    report = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)

    ing = report.get("ingest")
    if ing and ing.get("timeline"):
        t = [p[0] for p in ing["timeline"]]
        r = [p[1] for p in ing["timeline"]]
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.plot(t, r, label="HTTP /1/batch, acked events/s")
        ceiling = report.get("decode", {}).get("events_per_s")
        if ceiling:
            ax.axhline(ceiling, color="gray", linestyle="--", label="decode ceiling (1 core)")
        ax.set_xlabel("seconds")
        ax.set_ylabel("events/s")
        ax.set_title("Ingest throughput (embedded log, durable acks)")
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "throughput.png"), dpi=110)
        plt.close(fig)

    fresh = report.get("freshness", {}).get("samples_ms")
    acks = ing.get("ack_samples_ms") if ing else None
    if fresh or acks:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        if acks:
            axes[0].hist(acks, bins=50)
            axes[0].set_title("ack latency per batch (ms)")
        if fresh:
            axes[1].hist(fresh, bins=50, color="tab:orange")
            axes[1].set_title("freshness: ack → visible (ms)")
        for ax in axes:
            ax.set_ylabel("count")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "latency.png"), dpi=110)
        plt.close(fig)

    qs = report.get("query", {}).get("queries")
    if qs:
        names = [q["name"] for q in qs]
        ratios = [q["ratio"] for q in qs]
        colors = ["tab:green" if r <= 1 else "tab:red" for r in ratios]
        fig, ax = plt.subplots(figsize=(9, 4))
        ax.barh(names, ratios, color=colors)
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("Eventide / DuckDB median time (log scale; < 1: Eventide faster)")
        g = report["query"].get("geomean_ratio")
        ax.set_title(f"Query suite, same Parquet files (geometric mean {g:.2f})")
        ax.invert_yaxis()
        ax.grid(alpha=0.3, axis="x")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "queries.png"), dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    main()
