"""Showing eval's results: markdown tables (metrics.md, sweep.md) and the sweep's one plot."""

from __future__ import annotations

from typing import Any

from .protocol import LABELS, LOWER_IS_BETTER, METRIC_KEYS

PAPER_SUB8 = {"pixcorr": 0.160, "ssim": 0.345, "alexnet2": 0.776, "alexnet5": 0.866, "inception": 0.734, "clip": 0.786,
              "effnet": 0.826, "swav": 0.582}  # the paper notebook's subject-8 output (Table 1 prints these rounded)


def _arrow(key: str) -> str:
    return "↓" if key in LOWER_IS_BETTER else "↑"


def metrics_markdown(metrics: dict[str, Any]) -> str:
    """One table: each metric, this run's value, and the paper's subject-8 value for scale."""
    pairing = metrics["pairing"]
    lines = [f"Reconstruction metrics, {metrics['n']} pairs ({pairing['images_order']} / {pairing['truth_order']}).", "",
             "| metric | value | paper, subject 8 |", "|---|---|---|"]
    for k in METRIC_KEYS:
        lines.append(f"| {LABELS[k]} {_arrow(k)} | {metrics[k]:.4f} | {PAPER_SUB8[k]:.3f} |")
    return "\n".join(lines) + "\n"


def retrieval_markdown(res: dict[str, Any]) -> str:
    lines = [f"Zero-shot retrieval, {res['n_trials']} trials against {res['n_images']} images (k-way seed {res['seed']}).", "",
             "| k | top-1 | top-5 |", "|---|---|---|",
             f"| all {res['n_images']} | {res['top1']:.4f} | {res['top5']:.4f} |"]
    for k, v in sorted(res["k_way"].items(), key=lambda kv: int(kv[0])):
        top5 = "-" if v["top5"] is None else f"{v['top5']:.4f}"
        lines.append(f"| {k} | {v['top1']:.4f} | {top5} |")
    return "\n".join(lines) + "\n"


def _knobs(r: dict[str, Any]) -> str:
    graph = "" if r["prior_sampler"] != "ddpm" else f" {r['prior_graph']}"
    return f"{r['prior_sampler']}-{r['prior_steps']}{graph}, {r['steps']} step(s), {r['vae']} VAE, {r['precision']}"


def sweep_markdown(rows: list[dict[str, Any]], header: str = "") -> str:
    """One table: a row per setting, the paper's first; metrics, retrieval, latency, change vs the paper."""
    head = ["setting", "knobs", *(f"{LABELS[k]} {_arrow(k)}" for k in METRIC_KEYS), "top-1", "top-5",
            "p50 ms", "speed-up", "PSNR vs paper dB"]
    lines = ([header, ""] if header else []) + ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['name']} | {_knobs(r)} | skipped: {r['skipped']} |" + " |" * (len(head) - 3))
            continue
        m, ret, lat = r["metrics"], r["retrieval"], r["latency_ms"]
        psnr = r.get("psnr_vs_paper_db")
        cells = [r["name"], _knobs(r), *(f"{m[k]:.3f}" for k in METRIC_KEYS), f"{ret['top1']:.3f}", f"{ret['top5']:.3f}",
                 f"{lat['total']:.1f}", f"{r.get('speedup_vs_paper', float('nan')):.2f}x",
                 "identical" if psnr is None else f"{psnr:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_sweep(rows: list[dict[str, Any]], title: str = "") -> bytes:
    """One figure (PNG bytes): each metric (and top-1) against the end-to-end median latency, a point per setting."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    done = [r for r in rows if "metrics" in r]
    panels = [*METRIC_KEYS, "top1"]
    fig = Figure(figsize=(12, 9), dpi=100)
    FigureCanvasAgg(fig)
    for i, key in enumerate(panels):
        ax = fig.add_subplot(3, 3, i + 1)
        for r in done:
            x = r["latency_ms"]["total"]
            y = r["retrieval"]["top1"] if key == "top1" else r["metrics"][key]
            paper = r["name"] == "paper"
            ax.scatter([x], [y], s=60 if paper else 25, marker="*" if paper else "o", color="C3" if paper else "C0")
            ax.annotate(r["name"], (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_title(("retrieval top-1 ↑" if key == "top1" else f"{LABELS[key]} {_arrow(key)}"), fontsize=9)
        ax.set_xlabel("end-to-end p50 (ms, batch 1)", fontsize=7)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
