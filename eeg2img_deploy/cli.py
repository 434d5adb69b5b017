"""``eeg2img-deploy``: a thin command line over the library. Each command parses, calls, prints."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from . import __version__
from .cli_options import (
    ENCODER_WEIGHTS,
    LOW_LEVEL,
    NON_NEGATIVE_INT,
    OUT_FILE,
    OUT_FOLDER,
    POSITIVE_INT,
    SAMPLING,
    SEMANTIC,
    WEIGHT_OPTIONS,
    Range,
    RunOptions,
    RuntimeOptions,
    TorchDevice,
    bundle_spec,
    eeg_options,
    encoder_variant,
    image_size_option,
    number,
    option_group,
    read_eeg,
    resolve_layout,
    run_options,
    runtime_options,
    setup_logging,
    torch_device_option,
    verbose_option,
    verify_option,
    weights_options,
    whiten_if_asked,
)
from .cli_semantic import git_weights_options, write_captions
from .errors import Eeg2ImgError
from .names import RUNTIME_BACKENDS, Decoder, Provider
from .terminal import Status

log = logging.getLogger("eeg2img_deploy")

DEFAULT_EXPORT_ROOT = Path("export")


def parse_step_counts(ctx, param, text: str) -> tuple[int, ...]:
    """'50,10' -> (50, 10); 'none' or '' -> ()."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        counts = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of step counts like '50,10' (or 'none')") from None
    if any(not 1 <= n <= 1000 for n in counts):
        raise click.BadParameter(f"step counts must be in 1..1000 (the prior's schedule), got {text}")
    return tuple(dict.fromkeys(counts))


def write_json(path: Path, data: dict) -> None:
    """Write strict JSON: a NaN or infinity raises instead of writing the invalid bare ``NaN``."""
    from .fileio import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def print_timings(title: str, timings: dict[str, float]) -> None:
    """The stage timings: a result, so on stdout."""
    from rich.table import Table

    from .terminal import console

    table = Table(title=title)
    table.add_column("stage")
    table.add_column("ms", justify="right")
    for k, v in timings.items():
        table.add_row(k, f"{v:.1f}")
    console().print(table)


def _precisions(pipe) -> dict:
    """What ran: one precision, or "mixed" (fp32-only stages in an fp16 run), and each stage's."""
    per_stage = pipe.precisions
    kinds = set(per_stage.values())
    return {"precision": kinds.pop() if len(kinds) == 1 else "mixed", "stage_precisions": per_stage}


class _Group(click.Group):
    """Every command also takes ``-v`` after its name."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not any(p.name == "verbose" for p in cmd.params):
            cmd.params.append(verbose_option())
        super().add_command(cmd, name)


# ---- commands -------------------------------------------------------------------------------------
@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__)
@click.option("-v", "--verbose", count=True, help="Log progress to stderr (-vv: debug).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Deploy the EEG-to-image models of Li et al. (NeurIPS 2024).

    init-tiny -> reference -> export -> build-engines -> infer -> bench -> eval
    """
    ctx.meta["eeg2img_deploy.verbose"] = verbose
    setup_logging(verbose)


@cli.command("init-tiny")
@click.option("--out", "out_dir", required=True, type=OUT_FOLDER, help="Weights folder to write (new or empty).")
@click.option("--seed", default=0, type=NON_NEGATIVE_INT, show_default=True, help="Seed of every tiny weight.")
@image_size_option("Image size the tiny low-level encoder's latents fit.")
@click.option("--overwrite", is_flag=True, help="Write over a folder that is not empty (its tiny-set files are replaced).")
def init_tiny_cmd(out_dir: Path, seed: int, image_size: int, overwrite: bool) -> None:
    """Write a complete tiny model set (random weights, real formats) to --out."""
    from .tiny import init_tiny

    layout = init_tiny(out_dir, seed=seed, image_size=image_size, overwrite=overwrite)
    click.echo(f"tiny model set written to {out_dir}")
    for k, v in layout.describe().items():
        click.echo(f"  {k:<11} {v}")
    click.echo(f"  {'eval':<11} {out_dir / 'eval'} (truth images, metric networks, image features)")


@cli.command()
@weights_options
@git_weights_options
@eeg_options(whitening="weights")
@click.option("--out", required=True, type=OUT_FOLDER, help="Output folder.")
@click.option("--overwrite", is_flag=True, help="Replace the images and result.json of an earlier run in --out.")
@run_options("seed", "steps", "prior_steps", "guidance", "low_level", *LOW_LEVEL, *SEMANTIC,
             defaults_from="the encoder's recommended settings, else {fallback:g}")
@image_size_option("Image size in pixels.")
@click.option("--vae", type=click.Choice([d.value for d in Decoder]), default="full", show_default=True,
              help="Latent decoder: SDXL's VAE (full) or TAESDXL (tiny).")
@torch_device_option()
def reference(out: Path, overwrite: bool, run: RunOptions, image_size: int, vae: str, torch_device: str, **kw) -> None:
    """Run the PyTorch/diffusers pipeline (the ground truth) and write PNGs + result.json."""
    import dataclasses

    from .eeg.spec import encoder_spec
    from .reference.pipeline import ReferencePipeline
    from .runtime.images import ImageWriter

    writer = ImageWriter(out, overwrite=overwrite)  # refuses a used folder before any work
    convention = kw.pop("latent_convention")
    layout = resolve_layout(kw)
    if not run.low_level:
        layout = dataclasses.replace(layout, low_level=None)  # not loaded unless asked for
    variant = encoder_variant(kw)
    spec = encoder_spec(layout.encoder_channels)
    eeg, ids = read_eeg(kw, spec)
    eeg = whiten_if_asked(eeg, kw, spec)
    with Status() as status:
        status.step("loading the weights")
        pipe = ReferencePipeline.from_weights(layout, variant=variant, device=torch_device, latent_convention=convention)
        status.step(f"reconstructing {len(eeg)} trial(s) with PyTorch")
        res = pipe(eeg, ids, options=run, image_size=image_size, vae=vae)
    writer.write(res, {**write_captions(out, res.captions), "command": "reference", **pipe.options(run).record(),
                       "image_size": image_size, "vae": vae, "torch_device": torch_device, "subject_ids": ids.tolist(),
                       "timings_ms": res.timings_ms, "sources": pipe.sources})
    print_timings(f"reference ({len(eeg)} trial(s), {torch_device})", res.timings_ms)
    click.echo(writer.summary(len(eeg)))


@cli.command()
@weights_options
@git_weights_options
@click.option("--out", type=OUT_FOLDER, default=None,
              help="Bundle folder [default: export/<name of the weights folder>].")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), multiple=True, default=("fp32", "fp16"),
              show_default=True, help="A precision to export; repeat it for several (fp32-only stages stay fp32).")
@click.option("--steps", type=click.Choice(["1", "4"]), multiple=True, default=("1", "4"), show_default=True,
              help="An SDXL-Turbo step count whose scheduler tables go into the bundle; repeat it for several.")
@image_size_option("Image size the UNet and VAE graphs are exported for.")
@click.option("--max-batch", default=4, type=POSITIVE_INT, show_default=True, help="Upper bound of the dynamic batch axis.")
@click.option("--whitening", type=click.Path(dir_okay=False, path_type=Path), help="(63,63) whitening matrix .npy to ship.")
@click.option("--fused-prior-steps", default="50,10", show_default=True, callback=parse_step_counts,
              help="DDPM step counts exported as fused prior graphs (the whole sampler in one graph), or 'none'.")
@click.option("--validate/--no-validate", default=True, show_default=True, help="Check every graph against PyTorch.")
@click.option("--force", is_flag=True, help="Export even when the bundle is up to date.")
def export(out: Path | None, precision: tuple[str, ...], steps: tuple[str, ...], image_size: int, max_batch: int,
           whitening: Path | None, fused_prior_steps: tuple[int, ...], validate: bool, force: bool, **kw) -> None:
    """Export every stage to validated ONNX (fp32 + fp16), constants and a manifest."""
    from .eeg.spec import encoder_spec
    from .eeg.whitening import load_whitening
    from .export.bundle import ExportSettings, export_bundle
    from .manifest import Precision

    weights_dir = kw.get("weights")
    convention = kw.pop("latent_convention")
    layout = resolve_layout(kw)
    variant = encoder_variant(kw)
    precisions = tuple(p for p in Precision if p.value in precision)  # fp32 first, as the bundle lists them
    settings = ExportSettings(
        precisions=precisions, image_size=image_size, max_batch=max_batch,
        steps=tuple(sorted({int(s) for s in steps})), fused_prior_steps=fused_prior_steps,
        validate=validate, variant=variant,
        latent_convention=convention,
    )
    out = out or DEFAULT_EXPORT_ROOT / (Path(weights_dir).name if weights_dir else "bundle")
    w = load_whitening(whitening, encoder_spec(layout.encoder_channels)) if whitening else None
    manifest, exported = export_bundle(layout, out, settings, whitening=w, force=force)
    if not exported:
        click.echo(f"{out} is up to date: nothing to do (use --force to export again)")
        return
    from rich.table import Table

    from .terminal import console

    table = Table(title=f"bundle {out}")
    for col in ("stage", "precision", "MB", "max rel. error", "tolerance", "export s"):
        table.add_column(col, justify="right" if col not in ("stage", "precision") else "left")
    for a in manifest.artifacts:
        v, err = a.validation, a.validation.worst()
        table.add_row(a.stage if a.steps is None else f"{a.stage} ({a.steps} steps)", a.precision.value, f"{a.size_bytes / 1e6:.1f}", "-" if err is None else f"{err:.2e}",
                      "-" if v.tolerance is None else str(v.tolerance), "-" if v.export_seconds is None else str(v.export_seconds))
    console().print(table)


def _tensorrt_version(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from .engines.trt_rules import parse_version

    if value is not None:
        try:
            parse_version(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    return value


@cli.command("build-engines")
@click.option("--bundle", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="Export bundle.")
@click.option("--out", type=OUT_FOLDER, default=None,
              help="Engine folder [default: engines/<bundle name>].")
@click.option("--backend", type=click.Choice([b.value for b in RUNTIME_BACKENDS]), default="tensorrt", show_default=True,
              help="What to build: TensorRT engines for this GPU (the default: the deployment target; needs "
                   "TensorRT and a GPU) or onnxruntime-optimized models (any machine).")
@click.option("--preset", type=click.Choice(["workstation", "jetson-orin"]), default="workstation", show_default=True,
              help="TensorRT shape profiles and builder settings: a workstation/server GPU or a Jetson Orin.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default=None,
              help="Default: fp16 for TensorRT where the bundle has it, else fp32.")
@click.option("--max-batch", type=POSITIVE_INT, default=None, help="Override the preset's largest batch.")
@click.option("--opt-level", type=click.IntRange(0, 5), default=None, help="TensorRT builder optimization level.")
@number("--workspace-gb", rule=Range(0), default=None, help="TensorRT workspace cap.")
@click.option("--timing-cache", type=OUT_FOLDER, default=None,
              help="Folder of TensorRT timing caches, one per (TensorRT version, GPU) [default: the engine folder].")
@click.option("--provider", type=click.Choice([p.value for p in Provider]), default=None,
              help="--backend onnxruntime: the execution provider to optimize for [default: cuda if available, else cpu].")
@verify_option()
@click.option("--check", "check_only", is_flag=True,
              help="Build nothing: check every graph a TensorRT build would use against TensorRT's ONNX parser rules "
                   "and the preset's shape profile (no TensorRT needed); one line per finding, exit 2 if any.")
@click.option("--tensorrt-version", metavar="X.Y", default=None, callback=_tensorrt_version,
              help="--check: the TensorRT whose parser rules to apply (10.3 on JetPack 6, 10.13 on JetPack 7, 10.15, "
                   "...) [default: the preset's target (jetson-orin: 10.3), else the installed TensorRT, else 10.3, "
                   "the strictest]. A build checks for the TensorRT it builds with.")
def build_engines_cmd(bundle: Path, out: Path | None, backend: str, preset: str, precision: str | None,
                      max_batch: int | None, opt_level: int | None, workspace_gb: float | None,
                      timing_cache: Path | None, provider: str | None, verify: bool, check_only: bool,
                      tensorrt_version: str | None) -> None:
    """Build TensorRT engines (the default) or onnxruntime-optimized models from an export bundle."""
    from .engines.build import build_engines, check_for_tensorrt, default_engine_dir, tensorrt_version_to_check
    from .engines.trt_rules import version_text
    from .errors import BackendUnavailableError

    if tensorrt_version and not check_only:
        raise click.UsageError("--tensorrt-version names the TensorRT --check checks for; a build checks for the "
                               "TensorRT it builds with: add --check or leave out --tensorrt-version")  # fmt: skip
    if check_only:
        if backend != "tensorrt":
            raise click.UsageError("--check checks TensorRT's rules: leave out --backend onnxruntime")
        version = tensorrt_version_to_check(preset, tensorrt_version)
        found = check_for_tensorrt(bundle, preset=preset, precision=precision, max_batch=max_batch, version=version)
        for v in found:
            click.echo(v.line())
        if found:
            graphs = len({v.graph.split(" ")[0] for v in found})
            click.echo(f"error: {len(found)} finding(s) in {graphs} graph(s) for TensorRT {version_text(version)}, one "
                       "per line above", err=True)  # fmt: skip
            sys.exit(2)
        click.echo(f"every graph a TensorRT build of {bundle} uses passes TensorRT {version_text(version)}'s parser "
                   f"rules and the {preset} profile")  # fmt: skip
        return
    out = out or default_engine_dir(bundle)
    reused: list = []
    try:
        manifest = build_engines(
            bundle, out, backend=backend, preset=preset, precision=precision, max_batch=max_batch, opt_level=opt_level,
            workspace_gb=workspace_gb, timing_cache=timing_cache, ort_provider=provider, verify=verify, reused=reused,
        )
    except BackendUnavailableError as e:
        if click.get_current_context().get_parameter_source("backend") is not click.core.ParameterSource.DEFAULT:
            raise
        raise BackendUnavailableError(f"build-engines builds TensorRT engines unless told otherwise, and {e}; "
                                      "on a machine without them: --backend onnxruntime") from e
    for a in manifest.artifacts:
        done = "up to date" if a in reused else f"built in {a.engine.build_seconds if a.engine else 0.0:.1f} s"
        click.echo(f"  {a.session_key:<17} {a.precision.value}  {a.file}  {a.size_bytes / 1e6:.1f} MB  {done}")
    click.echo(f"engines in {out} are up to date: nothing to build" if len(reused) == len(manifest.artifacts)
               else f"engines in {out}")


@cli.command()
@click.option("--bundle", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Export bundle or engine folder.")
@eeg_options
@click.option("--out", required=True, type=OUT_FOLDER, help="Output folder.")
@click.option("--overwrite", is_flag=True, help="Replace the images and result.json of an earlier run in --out.")
@runtime_options
@run_options(*SAMPLING, "shared_subject_token", "low_level", *LOW_LEVEL, *SEMANTIC)
def infer(bundle: Path, out: Path, overwrite: bool, runtime: RuntimeOptions, run: RunOptions, **kw) -> None:
    """Reconstruct images from EEG with the lean runtime (no torch): PNGs + result.json."""
    from .runtime.images import ImageWriter

    writer = ImageWriter(out, overwrite=overwrite)  # refuses a used folder before any work
    eeg, ids = read_eeg(kw, bundle_spec(bundle))  # the bundle's encoder input (channels, samples)
    with Status() as status:
        status.step(f"opening {bundle}")
        pipe = runtime.open(bundle, low_level=run.low_level, whitening=kw.pop("whitening"))
        status.step(f"reconstructing {len(eeg)} trial(s)")
        res = pipe(eeg, ids, options=run)
    writer.write(res, {**write_captions(out, res.captions), "command": "infer", "bundle": str(bundle),
                       **runtime.to_dict(), **_precisions(pipe), **res.options.record(), "prior_graph": res.prior_graph,
                       "subject_ids": ids.tolist(), "timings_ms": res.timings_ms, "backend_ms": res.backend_ms})
    print_timings(f"infer ({len(eeg)} trial(s), {runtime.backend}/{runtime.provider})", res.timings_ms)
    click.echo(writer.summary(len(eeg)))


@cli.command()
@click.option("--bundle", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Export bundle or engine folder.")
@runtime_options
@click.option("--runs", default=20, type=POSITIVE_INT, show_default=True, help="Timed runs (percentiles over them).")
@click.option("--warmup", default=3, type=NON_NEGATIVE_INT, show_default=True, help="Untimed runs first.")
@click.option("--batch", default=1, type=POSITIVE_INT, show_default=True, help="Trials per run.")
@run_options(*SAMPLING, "low_level", *LOW_LEVEL, *SEMANTIC,
             helps={"low_level": "Time the low-level path (img2img from the low-level encoder).",
                    "caption": "Also run and time GIT captioning (the paper's semantic level)."})
@click.option("--json", "json_path", type=OUT_FILE, help="Write the report here.")
@click.option("--plot", "plot_path", type=OUT_FILE, help="Write a PNG stage breakdown.")
@click.option("--baseline", type=click.Choice(["none", "torch"]), default="none", show_default=True,
              help="Time the PyTorch reference pipeline in the same run (needs --weights).")
@option_group(*(WEIGHT_OPTIONS[n] for n in ENCODER_WEIGHTS))  # the baseline's weights: those of the export
@click.option("--torch-device", type=TorchDevice(), default=None,
              help="torch device of the baseline [default: cuda for a GPU backend or provider, else cpu].")
def bench(bundle: Path, runtime: RuntimeOptions, runs: int, warmup: int, batch: int, run: RunOptions,
          json_path: Path | None, plot_path: Path | None, baseline: str, torch_device: str | None, **kw) -> None:
    """Latency per stage and end to end (p50/p90/p99), cold start, memory; optionally against PyTorch. The report
    also times the prior both ways (fused and stepwise) wherever the bundle has the fused graph."""
    from .bench import plot_report, print_report, run_bench

    layout = None
    if baseline == "torch":
        if kw["weights"] is None:
            raise click.BadParameter("--baseline torch needs --weights DIR (the weights the bundle was exported from)")
        layout = resolve_layout(kw)  # --encoder, --encoder-factory, --encoder-channels, --prior: as for export
    report = run_bench(bundle, run, **runtime.to_dict(), runs=runs, warmup=warmup, batch=batch,
                       baseline_weights=layout, torch_device=torch_device, progress=True)
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

from .eval.command import eval_cmd  # noqa: E402  (click and stdlib only at its top)

cli.add_command(eval_cmd)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as e:  # a bare group: its help, as click prints it
        e.show()
        sys.exit(e.exit_code)
    except click.ClickException as e:  # one line, naming the option
        hint = f" (see '{e.ctx.command_path} -h')" if isinstance(e, click.UsageError) and e.ctx is not None else ""
        click.echo(f"error: {e.format_message()}{hint}", err=True)
        sys.exit(e.exit_code)
    except Eeg2ImgError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
