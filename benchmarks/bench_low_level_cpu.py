"""The low-level path on the CPU: image mode (the paper's round trip) vs latent mode, time and image difference.

    python benchmarks/bench_low_level_cpu.py [--work DIR] [--runs 10] [--warmup 2]
    python benchmarks/bench_low_level_cpu.py --smoke --weights W --bundle B --out DIR   (the test suite's run)

512x512, batch 1, 4 SDXL-Turbo steps at strength 0.5 (2 run), 50 prior steps, full VAE, fp32, the
onnxruntime runtime through :func:`eeg2img_deploy.bench.run_bench` (``bench --low-level``). Then the
images of both modes for the tiny set's trials, same seed, and the PSNR between them: what skipping
the decode / CLIP-normalise / encode round trip changes. The tiny weights are random, so that PSNR
measures the plumbing on this model set, not what a trained encoder's images would show.

Writes ``bench_low_level_cpu.json`` under ``--out`` and its own section of ``README.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

NAME = "bench_low_level_cpu"
IMAGE_SIZE = 512
STEPS = 4
STRENGTH = 0.5
SEED = 0


def prepare_bundle(work: Path) -> tuple[Path, Path]:
    """Tiny weights whose low-level encoder fits 512x512, and their fp32 bundle (a no-op export when up to date)."""
    from eeg2img_deploy.export.bundle import ExportSettings, export_bundle
    from eeg2img_deploy.manifest import Precision
    from eeg2img_deploy.tiny import init_tiny
    from eeg2img_deploy.weights import resolve_weights

    weights = work / "tiny-512"
    if not (weights / "eeg").is_dir():
        init_tiny(weights, seed=0, image_size=IMAGE_SIZE)
    bundle = work / f"bundle-{IMAGE_SIZE}"
    settings = ExportSettings(image_size=IMAGE_SIZE, precisions=(Precision.FP32,), steps=(STEPS,))
    export_bundle(resolve_weights(weights), bundle, settings, progress=False)
    return weights, bundle


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def image_difference(bundle: Path, eeg: np.ndarray, prior_steps: int, steps: int) -> dict:
    """Per-trial PSNR between image and latent mode (and each against the plain path), same seed."""
    from eeg2img_deploy.runtime.pipeline import Pipeline

    pipe = Pipeline.from_bundle(bundle, low_level=True)
    try:
        kw = {"steps": steps, "prior_steps": prior_steps}
        images = {mode: pipe(eeg, 1, SEED, low_level=True, strength=STRENGTH, low_level_mode=mode, **kw).images
                  for mode in ("image", "latent")}
        plain = pipe(eeg, 1, SEED, **kw).images
    finally:
        pipe.close()
    per_trial = [psnr(a, b) for a, b in zip(images["image"], images["latent"])]
    return {
        "trials": len(eeg), "seed": SEED, "strength": STRENGTH, "steps": steps, "prior_steps": prior_steps,
        "psnr_image_vs_latent_db": per_trial,
        "psnr_image_vs_latent_mean_db": float(np.mean(per_trial)),
        "psnr_image_mode_vs_plain_mean_db": float(np.mean([psnr(a, b) for a, b in zip(images["image"], plain)])),
        "psnr_latent_mode_vs_plain_mean_db": float(np.mean([psnr(a, b) for a, b in zip(images["latent"], plain)])),
    }


def section(result: dict, command: str) -> str:
    from eeg2img_deploy.bench import report_markdown, setup_line

    img, lat, diff = result["image"], result["latent"], result["difference"]
    m, s = img["machine"], img["settings"]
    return "\n".join([
        "## Low-level path, image vs latent mode, CPU (`bench_low_level_cpu.py`)",
        "",
        setup_line(command, m, img["versions"], load_at_start=m.get("load_average_1m_at_start")),
        "",
        (f"Tiny set, batch {s['batch']}, {s['image_size']}x{s['image_size']}, {s['steps']} UNet steps at strength "
         f"{STRENGTH} ({int(s['steps'] * STRENGTH)} run), {s['prior_steps']} prior steps, full VAE, fp32, onnxruntime; "
         f"{s['runs']} runs after {s['warmup']} warm-up. Milliseconds."),
        "",
        "Image mode (decode -> CLIP-normalise -> VAE encode, the paper's `low_level_image`):",
        "",
        report_markdown(img),
        "",
        "Latent mode (`--low-level-mode latent`, the paper's `low_level_latent`):",
        "",
        report_markdown(lat),
        "",
        (f"- Image difference between the modes, {diff['trials']} tiny-set trials, seed {diff['seed']}: PSNR "
         f"{', '.join(f'{d:.1f}' for d in diff['psnr_image_vs_latent_db'])} dB (mean "
         f"{diff['psnr_image_vs_latent_mean_db']:.1f} dB). Against the plain path (no low-level start): image mode "
         f"{diff['psnr_image_mode_vs_plain_mean_db']:.1f} dB, latent mode {diff['psnr_latent_mode_vs_plain_mean_db']:.1f} dB."),
        f"- Raw report in [{NAME}.json]({NAME}.json).",
    ])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, help="folder for the tiny weights and bundle (default: a temporary folder)")
    ap.add_argument("--weights", type=Path, help="with --bundle: use these instead of preparing the 512 px tiny set")
    ap.add_argument("--bundle", type=Path)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="1 run, 2 prior steps: checks the script, measures nothing")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("diffusers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    from eeg2img_deploy.bench import print_report, run_bench, update_results_readme

    runs, warmup, prior_steps = (1, 0, 2) if args.smoke else (args.runs, args.warmup, 50)
    command = shlex.join(["python", "benchmarks/bench_low_level_cpu.py", *(sys.argv[1:] if argv is None else argv)])
    with tempfile.TemporaryDirectory(prefix="bench-low-level-") as tmp:
        work = args.work or Path(tmp)
        weights, bundle = (args.weights, args.bundle) if args.bundle else prepare_bundle(work)
        result = {mode: run_bench(bundle, runs=runs, warmup=warmup, steps=STEPS, prior_steps=prior_steps, vae="full",
                                  low_level=True, strength=STRENGTH, low_level_mode=mode, progress=not args.smoke)
                  for mode in ("image", "latent")}
        eeg = np.load(weights / "eeg" / "synthetic_eeg.npy")
        result["difference"] = image_difference(bundle, eeg, prior_steps, STEPS)
    for mode in ("image", "latent"):
        result[mode]["command"] = command
        print_report(result[mode])
    print(f"PSNR image vs latent mode: {result['difference']['psnr_image_vs_latent_mean_db']:.1f} dB (mean)")
    args.out.mkdir(parents=True, exist_ok=True)
    # the results name no machine paths: the work folder is shown as a placeholder
    text = json.dumps(result, indent=2).replace(str(work), "<work>")
    (args.out / f"{NAME}.json").write_text(text + "\n")
    result = json.loads(text)
    update_results_readme(args.out / "README.md", NAME, section(result, command))
    print(f"wrote {args.out / NAME}.json and its README.md section")
    return result


if __name__ == "__main__":
    main()
