"""Showing a ``bench`` report: a rich table, a PNG, and markdown for ``benchmarks/results``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .prior_graphs import describe as describe_prior_graphs
from .stats import report_stages


def print_report(report: dict[str, Any], console=None) -> None:
    """A rich table of stage latencies (runtime, and baseline + ratio when present), then a summary."""
    from rich import box
    from rich.table import Table

    from ..terminal import console as default_console

    console = console or default_console()
    s, rt, base = report["settings"], report["runtime"], report.get("baseline")
    title = (f"{s['backend']} on {s['provider']}, batch {s['batch']}, {s.get('image_size', '?')} px, "
             f"{s['steps']} step(s), {s['prior_steps']} prior steps, {s['runs']} runs (ms)")
    table = Table(title=title, box=box.SIMPLE_HEAD)
    table.add_column("stage", no_wrap=True)
    for col in ("p50", "p90", "p99", "mean", "min", "max"):
        table.add_column(col, justify="right")
    if base:
        table.add_column("torch p50", justify="right", no_wrap=True)
        table.add_column("torch/runtime", justify="right", no_wrap=True)
    for k in (*report_stages(s), "total"):
        st = rt["latency_ms"][k]
        row = [k, *(f"{st[c]:.1f}" for c in ("p50", "p90", "p99", "mean", "min", "max"))]
        if base:
            row += [f"{base['latency_ms'][k]['p50']:.1f}", f"{report['ratios'][k]:.2f}x"]
        table.add_row(*row, style="bold" if k == "total" else None)
    console.print(table)
    ov = rt["overhead"]
    imported = f"import {rt['import_ms']:.0f} ms" if "import_ms" in rt else "backend already imported"
    lines = [
        f"cold start: {imported}, load {rt['load_ms']:.0f} ms, first call {rt['first_call_ms']:.0f} ms",
        f"throughput: {rt['throughput_images_per_s']:.2f} images/s",
        f"runtime overhead (wall - backend): p50 {ov['ms']['p50']:.2f} ms = {ov['pct']['p50']:.1f} % of the total",
        (f"peak RSS: {rt['memory']['peak_rss_mb']:.0f} MB ({rt['memory']['peak_rss_scope']}), "
        f"+{rt['memory'].get('peak_rss_increase_mb', float('nan')):.0f} MB over the RSS before loading"),
        describe_prior_graphs(rt.get("prior_graphs")),
    ]
    if base:
        lines.append(f"torch baseline: load {base['load_ms']:.0f} ms, first call {base['first_call_ms']:.0f} ms, "
                     f"{base['throughput_images_per_s']:.2f} images/s, peak RSS {base['memory']['peak_rss_mb']:.0f} MB "
                     f"(+{base['memory'].get('peak_rss_increase_mb', float('nan')):.0f}), "
                     f"image_embeds max |diff| {base['parity']['image_embeds_max_abs_diff']:.1e}")
    for line in lines:
        console.print(line)


def stacked_bars(report: dict[str, Any]) -> dict[str, tuple[dict[str, float], str]]:
    """Per pipeline: its stage medians (the bar's segments) and the bar's label, their sum.

    One quantity: the bar's height is the sum of the stage medians and so is its label (the median of
    the end-to-end totals differs from that sum by the runtime's overhead and the spread of the runs).
    """
    s = report["settings"]
    runs = {f"runtime ({s['backend']})": report["runtime"]}
    if report.get("baseline"):
        runs["torch reference"] = report["baseline"]
    out = {}
    for name, run in runs.items():
        values = {stage: run["latency_ms"][stage]["p50"] for stage in report_stages(s)}
        out[name] = (values, f"{sum(values.values()):.1f} ms")
    return out


def plot_report(report: dict[str, Any], path: str | Path) -> Path:
    """PNG: one stacked bar of stage medians per pipeline (runtime, and the torch baseline if present)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import (
        Figure,  # no pyplot: no global state, no display needed
    )

    s = report["settings"]
    bars = stacked_bars(report)
    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    names = list(bars)
    bottom = np.zeros(len(names))
    for stage in report_stages(s):
        values = np.array([bars[n][0][stage] for n in names])
        ax.bar(names, values, bottom=bottom, label=stage, width=0.5)
        bottom += values
    for i, n in enumerate(names):
        ax.annotate(bars[n][1], (i, bottom[i]), ha="center", va="bottom", xytext=(0, 3), textcoords="offset points")
    ax.set_ylabel("sum of per-stage median latencies (ms)")
    ax.set_ylim(0, bottom.max() * 1.15)
    ax.set_title(f"batch {s['batch']}, {s.get('image_size', '?')} px, {s['steps']} step(s), {s['prior_steps']} prior steps, "
                 f"{s['vae']} VAE, {s['backend']}/{s['provider']}", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


# ---- results files ----------------------------------------------------------------------------------
def report_markdown(report: dict[str, Any]) -> str:
    """The stage table of a report as markdown (medians; ratio = torch / runtime)."""
    rt, base = report["runtime"], report.get("baseline")
    head = ["stage", "runtime p50", "p90", "p99", "mean"] + (["torch p50", "p90", "torch / runtime"] if base else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in (*report_stages(report["settings"]), "total"):
        st = rt["latency_ms"][k]
        row = [f"**{k}**" if k == "total" else k, *(f"{st[c]:.2f}" for c in ("p50", "p90", "p99", "mean"))]
        if base:
            b = base["latency_ms"][k]
            row += [f"{b['p50']:.2f}", f"{b['p90']:.2f}", f"{report['ratios'][k]:.2f}x"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def setup_line(command: str, machine: dict[str, Any], versions: dict[str, str], *, load_at_start=None,
               extra: str = "") -> str:
    """A results section's first line: the command, the machine, its load, the library versions."""
    cores = machine.get("usable_cores", machine["logical_cores"])
    load = f"load average {load_at_start} at start, {machine.get('load_average_1m')} at the end" if load_at_start is not None \
        else f"load average {machine.get('load_average_1m')}"
    libs = ", ".join(f"{k} {v}" for k, v in versions.items())
    return f"`{command}` - {machine['cpu']}, {cores} cores, {machine.get('ram_gb', '?')} GB; {load}; {libs}{extra}."


def update_results_readme(readme: str | Path, name: str, body: str) -> Path:
    """Replace the section between ``<!-- name -->`` and ``<!-- /name -->`` (or append it); leave the rest alone."""
    import re

    from ..fileio import atomic_write_text

    readme = Path(readme)
    text = readme.read_text() if readme.is_file() else "# Benchmark results\n\nEach section is written by the script it names.\n"
    block = f"<!-- {name} -->\n{body.strip()}\n<!-- /{name} -->"
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.DOTALL)
    text = pattern.sub(lambda _: block, text, count=1) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block + "\n"
    readme.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(readme, text)
    return readme
