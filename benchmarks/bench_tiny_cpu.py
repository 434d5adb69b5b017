"""Tiny pipeline at the real image size on the CPU: the onnxruntime runtime vs the PyTorch reference.

    python benchmarks/bench_tiny_cpu.py [--weights DIR] [--work DIR] [--runs 20] [--warmup 3]

512x512, batch 1, 1 SDXL-Turbo step, 50 prior steps (DDPM, guidance 5), full VAE, fp32. The weights
are the tiny set (``init_tiny``: full-size encoder and prior, tiny SDXL/VAE), so the encoder and
prior numbers are real and the UNet/VAE numbers measure each side's per-call machinery on small
graphs, not SDXL's cost. Everything goes through :func:`eeg2img_deploy.bench.run_bench`, the same
harness as ``eeg2img-deploy bench``.

Writes ``bench_tiny_cpu.json`` and ``.png`` under ``--out`` and its own section of ``README.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import tempfile
from pathlib import Path

NAME = "bench_tiny_cpu"
IMAGE_SIZE = 512


def prepare_bundle(weights: Path | None, work: Path) -> tuple[Path, Path]:
    """The tiny weights (written once) and their fp32 512x512 bundle (a no-op export when up to date)."""
    from eeg2img_deploy.export.bundle import ExportSettings, export_bundle
    from eeg2img_deploy.manifest import Precision
    from eeg2img_deploy.tiny import init_tiny
    from eeg2img_deploy.weights import resolve_weights

    if weights is None:
        weights = work / "tiny"
        if not (weights / "eeg").is_dir():
            init_tiny(weights, seed=0)
    bundle = work / f"bundle-{IMAGE_SIZE}"
    settings = ExportSettings(image_size=IMAGE_SIZE, precisions=(Precision.FP32,), steps=(1,))
    export_bundle(resolve_weights(weights), bundle, settings, progress=False)
    return weights, bundle


def section(report: dict, command: str) -> str:
    from eeg2img_deploy.bench import report_markdown, setup_line

    m, s, rt, base = report["machine"], report["settings"], report["runtime"], report["baseline"]
    ov = rt["overhead"]
    return "\n".join([
        "## Tiny pipeline, onnxruntime vs torch, CPU (`bench_tiny_cpu.py`)",
        "",
        setup_line(command, m, report["versions"], load_at_start=m.get("load_average_1m_at_start")),
        "",
        (f"Batch {s['batch']}, {s['image_size']}x{s['image_size']}, {s['steps']} UNet step, {s['prior_steps']} prior steps "
        f"(DDPM + CFG), full VAE, fp32; {s['runs']} runs after {s['warmup']} warm-up. Tiny weights: encoder and prior are "
        "full size, UNet/VAE are tiny. Milliseconds."),
        "",
        report_markdown(report),
        "",
        (f"- Runtime overhead (wall - time in onnxruntime calls): p50 {ov['ms']['p50']:.2f} ms = {ov['pct']['p50']:.2f} % "
        f"(max {ov['pct']['max']:.2f} %)."),
        (f"- Cold start (onnxruntime and torch already imported by the export): runtime load {rt['load_ms']:.0f} ms + "
         f"first call {rt['first_call_ms']:.0f} ms; torch load {base['load_ms']:.0f} ms + first call {base['first_call_ms']:.0f} ms."),
        f"- Throughput: runtime {rt['throughput_images_per_s']:.2f} images/s, torch {base['throughput_images_per_s']:.2f} images/s.",
        (f"- Peak RSS (process, {rt['memory']['peak_rss_scope']} peak; + the increase over the RSS before the phase): "
         f"runtime {rt['memory']['peak_rss_mb']:.0f} MB (+{rt['memory']['peak_rss_increase_mb']:.0f}), torch "
         f"{base['memory']['peak_rss_mb']:.0f} MB (+{base['memory']['peak_rss_increase_mb']:.0f}); the export ran first in "
         "the same process."),
        (f"- Same computation: image_embeds max |diff| {base['parity']['image_embeds_max_abs_diff']:.1e}, "
        f"images max |diff| {base['parity']['images_max_abs_diff']} / 255."),
        f"- Plot: [{NAME}.png]({NAME}.png); raw samples in [{NAME}.json]({NAME}.json).",
    ])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, help="weights folder (default: a tiny set written under --work)")
    ap.add_argument("--work", type=Path, help="folder for the tiny weights and bundle (default: a temporary folder)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, help="intra-op threads of both sides (default: each library's default)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--bundle", type=Path, help="an existing bundle of --weights (default: exported under --work)")
    ap.add_argument("--smoke", action="store_true", help="1 run, no warm-up: checks the script, measures nothing")
    args = ap.parse_args(argv)
    if args.smoke:
        args.runs, args.warmup = 1, 0
    if args.bundle is not None and args.weights is None:
        ap.error("--bundle needs --weights (the weights it was exported from, for the torch baseline)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("diffusers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    from eeg2img_deploy.bench import (
        plot_report,
        print_report,
        run_bench,
        update_results_readme,
    )

    command = shlex.join(["python", "benchmarks/bench_tiny_cpu.py", *(sys.argv[1:] if argv is None else argv)])
    with tempfile.TemporaryDirectory(prefix="bench-tiny-") as tmp:
        work = args.work or Path(tmp)
        weights, bundle = (args.weights, args.bundle) if args.bundle else prepare_bundle(args.weights, work)
        report = run_bench(bundle, backend="onnxruntime", provider="cpu", runs=args.runs, warmup=args.warmup, batch=1,
                           steps=1, prior_steps=50, vae="full", baseline_weights=weights, progress=True,
                           threads=args.threads)
    report["command"] = command
    print_report(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{NAME}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_report(report, args.out / f"{NAME}.png")
    update_results_readme(args.out / "README.md", NAME, section(report, command))
    print(f"wrote {args.out / NAME}.json, .png and its README.md section")
    return report


if __name__ == "__main__":
    main()
