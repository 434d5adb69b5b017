"""``eeg2img-deploy``: a thin command line over the library. Each command parses, calls, prints."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click
import numpy as np

from . import __version__
from .cli_semantic import git_weights_options, pop_semantic, semantic_options, write_captions
from .errors import Eeg2ImgError

log = logging.getLogger("eeg2img_deploy")

DEFAULT_EXPORT_ROOT = Path("export")


# ---- shared options -------------------------------------------------------------------------------
def weights_options(f):
    """--weights DIR plus per-component overrides, for real installs."""
    opts = [
        click.option("--weights", type=click.Path(file_okay=False, path_type=Path), help="Weights folder (see README)."),
        click.option("--encoder", type=click.Path(path_type=Path), help="ATM encoder checkpoint (.pth/.pt/.safetensors)."),
        click.option("--prior", type=click.Path(path_type=Path), help="Diffusion prior checkpoint."),
        click.option("--sdxl", type=click.Path(file_okay=False, path_type=Path), help="SDXL-Turbo diffusers folder."),
        click.option("--ip-adapter", type=click.Path(path_type=Path), help="IP-Adapter folder or file (h94 layout)."),
        click.option("--taesd", type=click.Path(file_okay=False, path_type=Path), help="TAESDXL folder (fast VAE)."),
        click.option("--low-level", is_flag=False, flag_value="", default=None, metavar="[PATH]",
                     help="Low-level encoder checkpoint [default: weights/low-level/]; `reference --low-level` runs its path."),
        click.option("--latent-convention", type=click.Choice(["unscaled", "scaled"]), default="unscaled", show_default=True,
                     help="What the low-level encoder regresses: unscaled VAE latents (the paper) or scaled ones."),
        click.option("--token-slice", type=click.Choice(["paper", "refactor"]), default="paper", show_default=True,
                     help="Encoder token slice: paper-era [:, :63] or the 2025 refactor's [:, 1:]."),
        click.option("--positional-embedding/--no-positional-embedding", default=False, show_default=True,
                     help="Add the positional embedding (repository fix of December 2025)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def resolve_layout(kw: dict):
    from .weights import resolve_weights

    low_level = kw.pop("low_level")
    return resolve_weights(
        kw.pop("weights"), encoder=kw.pop("encoder"), prior=kw.pop("prior"), sdxl=kw.pop("sdxl"),
        ip_adapter=kw.pop("ip_adapter"), taesd=kw.pop("taesd"), low_level=low_level or None,
        git=kw.pop("git", None), projector=kw.pop("projector", None),
    )


def encoder_variant(kw: dict):
    from .models.atm_encoder import EncoderVariant

    return EncoderVariant(token_slice=kw.pop("token_slice"), positional_embedding=kw.pop("positional_embedding"))


def eeg_options(f):
    opts = [
        click.option("--eeg", "eeg_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
                     help="EEG trials: .npy (63,250)/(N,63,250), .npz, THINGS-EEG2 file, or raw (.fif/.edf/.bdf/.vhdr)."),
        click.option("--subject", required=True, type=int, help="Subject id (sub-08 -> 8)."),
        click.option("--trials", default=None, help="Which trials, as a Python slice: '0', '0:4', '::10'."),
        click.option("--trusted-pickle", is_flag=True, help="Allow THINGS-EEG2 preprocessed files (pickles): trusted files only."),
        click.option("--whitening", type=click.Path(dir_okay=False, path_type=Path),
                     help="(63,63) whitening matrix .npy, for bundles that ship none."),
        click.option("--events", "events_path", type=click.Path(dir_okay=False, path_type=Path),
                     help="Raw recordings: stimulus events (n,3) .npy or mne events file, when no stim channel/annotations."),
        click.option("--event-id", default=None, help="Raw recordings: which events, as JSON: 3, [1, 2] or {\"stim\": 1}."),
        click.option("--rename-channels", type=click.Path(dir_okay=False, path_type=Path),
                     help="Raw recordings: JSON {\"name in file\": \"encoder channel name\"}."),
        click.option("--allow-resample", is_flag=True, help="Raw recordings: upsample rates below 250 Hz instead of refusing."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def low_level_options(f):
    """--strength and --low-level-mode of the low-level path (reference, infer)."""
    opts = [
        click.option("--strength", default=0.5, show_default=True, type=float,
                     help="Low-level img2img strength: the last int(steps * strength) steps run (paper demo: 0.5)."),
        click.option("--low-level-mode", type=click.Choice(["image", "latent"]), default="image", show_default=True,
                     help="image: the paper's decode/CLIP-normalise/encode round trip; latent: skip it (faster)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def parse_event_id(text: str | None):
    """``--event-id`` JSON: a code, a list of codes or {description: code}."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise click.BadParameter(f"--event-id {text!r} is not JSON: give 3, [1, 2] or '{{\"stim\": 1}}'") from None
    ok = (isinstance(value, int) or (isinstance(value, list) and all(isinstance(v, int) for v in value))
          or (isinstance(value, dict) and all(isinstance(v, int) for v in value.values())))
    if not ok or isinstance(value, bool):
        raise click.BadParameter(f"--event-id {text!r}: expected an integer code, a list of codes or an object of codes")
    return value


def low_level_settings(enabled: bool, strength: float, mode: str, steps: int):
    """The low-level options, checked before anything is loaded (a strength that runs no step fails here)."""
    if not enabled:
        return None
    from .runtime.low_level import LowLevelOptions
    from .runtime.schedulers import img2img_cut

    options = LowLevelOptions(strength=strength, mode=mode)
    img2img_cut(steps, strength)
    return options


def read_eeg(kw: dict) -> tuple[np.ndarray, np.ndarray]:
    """The EEG options' trials and subject ids (the --whitening option stays in kw: the runtime applies it)."""
    from .eeg.readers import load_eeg
    from .eeg.spec import validate_subject_ids

    trials = load_eeg(kw.pop("eeg_path"), trusted_pickle=kw.pop("trusted_pickle"), events=kw.pop("events_path", None),
                      event_id=parse_event_id(kw.pop("event_id", None)), allow_resample=kw.pop("allow_resample", False),
                      rename_channels=kw.pop("rename_channels", None))
    data = trials.data[parse_slice(kw.pop("trials"), len(trials))]
    return data, validate_subject_ids(kw.pop("subject"), len(data))


def whiten_if_asked(eeg: np.ndarray, kw: dict) -> np.ndarray:
    """--whitening for commands without a bundle (reference, client): the runtime's one implementation."""
    path = kw.pop("whitening", None)
    if not path:
        return eeg
    from .eeg.whitening import apply_whitening

    return apply_whitening(eeg, path)


def parse_slice(text: str | None, n: int) -> slice:
    if text is None:
        return slice(None)
    try:
        parts = [int(p) if p.strip() else None for p in text.split(":")]
    except ValueError:
        raise click.BadParameter(f"--trials {text!r} is not a slice like '0', '0:4' or '::10'") from None
    if len(parts) == 1:
        i = parts[0]
        if i is None or not -n <= i < n:
            raise click.BadParameter(f"--trials {text} is out of range for {n} trials")
        return slice(i, i + 1 if i != -1 else None)
    sl = slice(*parts)
    if not range(n)[sl]:
        raise click.BadParameter(f"--trials {text} selects no trial of {n}")
    return sl


def write_json(path: Path, data: dict) -> None:
    from .fileio import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def print_timings(title: str, timings: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("stage")
    table.add_column("ms", justify="right")
    for k, v in timings.items():
        table.add_row(k, f"{v:.1f}")
    Console(stderr=True).print(table)


# ---- commands -------------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Deploy the EEG-to-image models of Li et al. (NeurIPS 2024).

    init-tiny -> reference -> export -> build-engines -> infer -> bench
    """
    from rich.logging import RichHandler

    level = logging.WARNING - 10 * min(verbose + 1, 2)
    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(show_path=False)], force=True)


@cli.command("init-tiny")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=0, show_default=True, help="Seed of every tiny weight.")
@click.option("--image-size", default=512, show_default=True, help="Image size the tiny low-level encoder's latents fit.")
def init_tiny_cmd(out_dir: Path, seed: int, image_size: int) -> None:
    """Write a complete tiny model set (random weights, real formats) to OUT_DIR."""
    from .tiny import init_tiny

    layout = init_tiny(out_dir, seed=seed, image_size=image_size)
    click.echo(f"tiny model set written to {out_dir}")
    for k, v in layout.describe().items():
        click.echo(f"  {k:<11} {v}")


@cli.command()
@weights_options
@git_weights_options
@eeg_options
@semantic_options
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--seed", default=0, show_default=True)
@click.option("--steps", type=click.Choice(["1", "4"]), default="1", show_default=True, help="SDXL-Turbo steps (paper: 4).")
@click.option("--prior-steps", default=50, show_default=True)
@click.option("--guidance", default=5.0, show_default=True, help="Prior classifier-free guidance.")
@click.option("--image-size", default=512, show_default=True)
@click.option("--vae", type=click.Choice(["full", "tiny"]), default="full", show_default=True)
@click.option("--device", default="cpu", show_default=True, help="torch device: cpu, cuda, cuda:1.")
@low_level_options
def reference(out: Path, seed: int, steps: str, prior_steps: int, guidance: float, image_size: int, vae: str,
              device: str, strength: float, low_level_mode: str, **kw) -> None:
    """Run the PyTorch/diffusers pipeline (the ground truth) and write PNGs + result.json."""
    import dataclasses

    from .reference.pipeline import ReferencePipeline
    from .runtime.images import save_images

    run_low_level = kw["low_level"] is not None
    options = low_level_settings(run_low_level, strength, low_level_mode, int(steps))
    convention = kw.pop("latent_convention")
    semantic = pop_semantic(kw)
    layout = resolve_layout(kw)
    if not run_low_level:
        layout = dataclasses.replace(layout, low_level=None)  # not loaded unless asked for
    variant = encoder_variant(kw)
    eeg, ids = read_eeg(kw)
    eeg = whiten_if_asked(eeg, kw)
    pipe = ReferencePipeline.from_weights(layout, variant=variant, device=device, latent_convention=convention)
    res = pipe(eeg, ids, seed, steps=int(steps), prior_steps=prior_steps, guidance=guidance, image_size=image_size, vae=vae,
               low_level=options, **semantic)
    paths = save_images(res.images, out)
    write_json(out / "result.json", {**write_captions(out, res.captions), "prompt": semantic["prompt"],
                                     "prompt_from_caption": semantic["prompt_from_caption"],
        "command": "reference", "seed": seed, "steps": int(steps), "prior_steps": prior_steps, "guidance": guidance,
        "image_size": image_size, "vae": vae, "subject_ids": ids.tolist(), "timings_ms": res.timings_ms,
        "eeg_embeds": res.eeg_embeds.tolist(), "image_embeds": res.image_embeds.tolist(),
        "low_level": dataclasses.asdict(options) if options else None,
        "images": [p.name for p in paths], "sources": pipe.sources,
    })
    print_timings(f"reference ({len(eeg)} trial(s), {device})", res.timings_ms)
    click.echo(f"wrote {len(paths)} image(s) and result.json to {out}")


@cli.command()
@weights_options
@git_weights_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Bundle folder [default: export/<name of the weights folder>].")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "both"]), default="both", show_default=True)
@click.option("--steps", type=click.Choice(["1", "4", "both"]), default="both", show_default=True,
              help="SDXL-Turbo step counts whose scheduler tables go into the bundle.")
@click.option("--image-size", default=512, show_default=True)
@click.option("--max-batch", default=4, show_default=True, help="Upper bound of the dynamic batch axis.")
@click.option("--whitening", type=click.Path(dir_okay=False, path_type=Path), help="(63,63) whitening matrix .npy to ship.")
@click.option("--validate/--no-validate", default=True, show_default=True, help="Check every graph against PyTorch.")
@click.option("--force", is_flag=True, help="Export even when the bundle is up to date.")
def export(out: Path | None, precision: str, steps: str, image_size: int, max_batch: int, whitening: Path | None,
           validate: bool, force: bool, **kw) -> None:
    """Export every stage to validated ONNX (fp32 + fp16), constants and a manifest."""
    from .eeg.whitening import load_whitening
    from .export.bundle import ExportSettings, export_bundle
    from .manifest import Precision

    weights_dir = kw.get("weights")
    convention = kw.pop("latent_convention")
    layout = resolve_layout(kw)
    variant = encoder_variant(kw)
    precisions = (Precision.FP32, Precision.FP16) if precision == "both" else (Precision(precision),)
    settings = ExportSettings(
        precisions=precisions, image_size=image_size, max_batch=max_batch,
        steps=(1, 4) if steps == "both" else (int(steps),), validate=validate,
        variant={"token_slice": variant.token_slice, "positional_embedding": variant.positional_embedding},
        latent_convention=convention,
    )
    out = out or DEFAULT_EXPORT_ROOT / (Path(weights_dir).name if weights_dir else "bundle")
    w = load_whitening(whitening) if whitening else None
    manifest, exported = export_bundle(layout, out, settings, whitening=w, force=force)
    if not exported:
        click.echo(f"{out} is up to date: nothing to do (use --force to export again)")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"bundle {out}")
    for col in ("stage", "precision", "MB", "max rel. error", "tolerance", "export s"):
        table.add_column(col, justify="right" if col not in ("stage", "precision") else "left")
    for a in manifest.artifacts:
        v = a.validation
        err = max(v["max_rel_error"].values()) if "max_rel_error" in v else None
        table.add_row(a.stage, a.precision.value, f"{a.size_bytes / 1e6:.1f}", "-" if err is None else f"{err:.2e}",
                      str(v.get("tolerance", "-")), str(v.get("export_seconds", "-")))
    Console().print(table)


@cli.command("build-engines")
@click.option("--bundle", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="Export bundle.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Engine folder [default: engines/<bundle name>].")
@click.option("--backend", type=click.Choice(["tensorrt", "onnxruntime"]), default="tensorrt", show_default=True)
@click.option("--preset", type=click.Choice(["workstation", "jetson-orin"]), default="workstation", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default=None,
              help="Default: fp16 for TensorRT where the bundle has it, else fp32.")
@click.option("--max-batch", type=int, default=None, help="Override the preset's largest batch.")
@click.option("--opt-level", type=click.IntRange(0, 5), default=None, help="TensorRT builder optimization level.")
@click.option("--workspace-gb", type=float, default=None, help="TensorRT workspace cap.")
@click.option("--timing-cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of TensorRT timing caches, one per (TensorRT version, GPU) [default: the engine folder].")
@click.option("--ort-provider", type=click.Choice(["cpu", "cuda", "tensorrt"]), default=None,
              help="onnxruntime backend: the provider to optimize for [default: cuda if available, else cpu].")
def build_engines_cmd(bundle: Path, out: Path | None, backend: str, preset: str, precision: str | None,
                      max_batch: int | None, opt_level: int | None, workspace_gb: float | None,
                      timing_cache: Path | None, ort_provider: str | None) -> None:
    """Build TensorRT engines (or onnxruntime-optimized models) from an export bundle."""
    from .engines.build import build_engines, default_engine_dir

    out = out or default_engine_dir(bundle)
    manifest = build_engines(
        bundle, out, backend=backend, preset=preset, precision=precision, max_batch=max_batch, opt_level=opt_level,
        workspace_gb=workspace_gb, timing_cache=timing_cache, ort_provider=ort_provider,
    )
    for a in manifest.artifacts:
        seconds = a.engine.build_seconds if a.engine else 0.0
        click.echo(f"  {a.stage:<14} {a.precision.value}  {a.file}  {a.size_bytes / 1e6:.1f} MB  {seconds:.1f} s")
    click.echo(f"engines in {out}")


@cli.command()
@click.option("--bundle", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Export bundle or engine folder.")
@eeg_options
@semantic_options
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--backend", type=click.Choice(["onnxruntime", "tensorrt"]), default="onnxruntime", show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda", "tensorrt"]), default="cpu", show_default=True,
              help="onnxruntime execution provider.")
@click.option("--allow-cpu-fallback", is_flag=True, help="Warn instead of failing when a GPU provider is missing.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default=None,
              help="Default: fp32 on the CPU, fp16 on a GPU.")
@click.option("--seed", default=0, show_default=True)
@click.option("--steps", type=click.Choice(["1", "4"]), default="1", show_default=True, help="SDXL-Turbo steps (paper: 4).")
@click.option("--prior-steps", default=50, show_default=True)
@click.option("--prior-sampler", type=click.Choice(["ddpm", "ddim", "dpmpp"]), default="ddpm", show_default=True,
              help="ddpm is the paper's; see the README for the fast samplers' measured fidelity.")
@click.option("--guidance", default=5.0, show_default=True, help="Prior classifier-free guidance.")
@click.option("--ip-scale", type=float, default=None, help="IP-Adapter scale [default: the bundle's, 1.0].")
@click.option("--vae", type=click.Choice(["full", "tiny"]), default="full", show_default=True)
@click.option("--shared-subject-token", is_flag=True, help="Allow subject ids outside the encoder's table (shared token).")
@click.option("--threads", type=int, default=None, help="onnxruntime CPU threads per session [default: all cores].")
@click.option("--low-level", "low_level", is_flag=True, help="Start Stage II from the low-level encoder's image (img2img).")
@low_level_options
def infer(bundle: Path, out: Path, backend: str, device: str, allow_cpu_fallback: bool, precision: str | None, seed: int,
          steps: str, prior_steps: int, prior_sampler: str, guidance: float, ip_scale: float | None, vae: str,
          shared_subject_token: bool, threads: int | None, low_level: bool, strength: float, low_level_mode: str,
          **kw) -> None:
    """Reconstruct images from EEG with the lean runtime (no torch): PNGs + result.json."""
    import dataclasses

    from .runtime.images import save_images
    from .runtime.pipeline import Pipeline
    from .runtime.semantic import SemanticRequest

    options = low_level_settings(low_level, strength, low_level_mode, int(steps))
    semantic = pop_semantic(kw)
    eeg, ids = read_eeg(kw)
    pipe = Pipeline.from_bundle(bundle, backend=backend, precision=precision, provider=device, vae=vae,
                                allow_cpu_fallback=allow_cpu_fallback, threads=threads, low_level=low_level,
                                whitening=kw.pop("whitening"))
    res = pipe(eeg, ids, seed, steps=int(steps), prior_steps=prior_steps, guidance=guidance, prior_sampler=prior_sampler,
               ip_scale=ip_scale, shared_subject_token=shared_subject_token, low_level=options,
               semantic=SemanticRequest(**semantic))
    paths = save_images(res.images, out)
    write_json(out / "result.json", {**write_captions(out, res.captions), "prompt": semantic["prompt"],
                                     "prompt_from_caption": semantic["prompt_from_caption"],
        "command": "infer", "bundle": str(bundle), "backend": backend, "device": device, "seed": seed,
        "steps": int(steps), "prior_steps": prior_steps, "prior_sampler": prior_sampler, "guidance": guidance,
        "vae": vae, "subject_ids": ids.tolist(), "timings_ms": res.timings_ms, "backend_ms": res.backend_ms,
        "low_level": dataclasses.asdict(options) if options else None,
        "eeg_embeds": res.eeg_embeds.tolist(), "image_embeds": res.image_embeds.tolist(),
        "images": [p.name for p in paths],
    })
    print_timings(f"infer ({len(eeg)} trial(s), {backend}/{device})", res.timings_ms)
    click.echo(f"wrote {len(paths)} image(s) and result.json to {out}")


@cli.command()
@click.option("--bundle", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Export bundle or engine folder.")
@click.option("--backend", type=click.Choice(["onnxruntime", "tensorrt"]), default="onnxruntime", show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda", "tensorrt"]), default="cpu", show_default=True,
              help="onnxruntime execution provider.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default=None)
@click.option("--runs", default=20, show_default=True)
@click.option("--warmup", default=3, show_default=True)
@click.option("--batch", default=1, show_default=True)
@click.option("--steps", type=click.Choice(["1", "4"]), default="1", show_default=True)
@click.option("--prior-steps", default=50, show_default=True)
@click.option("--vae", type=click.Choice(["full", "tiny"]), default="full", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the report here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), help="Write a PNG stage breakdown.")
@click.option("--baseline", type=click.Choice(["none", "torch"]), default="none", show_default=True,
              help="Time the PyTorch reference pipeline in the same run (needs --weights).")
@click.option("--weights", type=click.Path(file_okay=False, path_type=Path), help="Weights folder for the baseline.")
@click.option("--threads", type=int, default=None, help="CPU threads for onnxruntime sessions and torch [default: all cores].")
@click.option("--low-level", "low_level", is_flag=True, help="Time the low-level path (img2img from the low-level encoder).")
@low_level_options
def bench(bundle: Path, backend: str, device: str, precision: str | None, runs: int, warmup: int, batch: int,
          steps: str, prior_steps: int, vae: str, json_path: Path | None, plot_path: Path | None, baseline: str,
          weights: Path | None, threads: int | None, low_level: bool, strength: float, low_level_mode: str) -> None:
    """Latency per stage and end to end (p50/p90/p99), cold start, memory; optionally against PyTorch."""
    from .bench import plot_report, print_report, run_bench

    if baseline == "torch" and weights is None:
        raise click.BadParameter("--baseline torch needs --weights DIR (the weights the bundle was exported from)")
    options = low_level_settings(low_level, strength, low_level_mode, int(steps))
    report = run_bench(bundle, backend=backend, device=device, precision=precision, runs=runs, warmup=warmup,
                       batch=batch, steps=int(steps), prior_steps=prior_steps, vae=vae,
                       baseline_weights=weights if baseline == "torch" else None, progress=True, threads=threads,
                       low_level=options)
    print_report(report)
    if json_path:
        write_json(json_path, report)
        click.echo(f"report: {json_path}")
    if plot_path:
        click.echo(f"plot: {plot_report(report, plot_path)}")


from .serve.command import client as client_cmd, serve as serve_cmd, triton_repo as triton_repo_cmd  # noqa: E402

cli.add_command(serve_cmd)
cli.add_command(client_cmd)
cli.add_command(triton_repo_cmd)

from .stream.command import stream_cmd  # noqa: E402  (click and stdlib only at its top)

cli.add_command(stream_cmd)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except Eeg2ImgError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
