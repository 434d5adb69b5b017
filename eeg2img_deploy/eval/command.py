"""``eeg2img-deploy eval``: the paper's metrics, retrieval, and the sweep of speed knobs (click and stdlib at the top)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import click

from ..cli_options import (POSITIVE_INT, RuntimeOptions, bundle_spec, eeg_options, read_eeg, run_options, runtime_options,
                           torch_device_option)
from ..core.options import RunOptions
from ..errors import OptionError

WAYS = "2,4,10,50,100,200"
DIR = click.Path(file_okay=False, path_type=Path)
FILE = click.Path(dir_okay=False, path_type=Path)
OUTPUTS = ("metrics.json", "metrics.md", "sweep.json", "sweep.md", "sweep.png")  # what an eval run writes
MODES = {  # mode -> options it needs; any other mode's own option is refused
    "metrics": ("images", "truth", "weights"),
    "retrieval": ("bundle", "eeg_path", "subject"),
    "sweep": ("bundle", "eeg_path", "subject", "truth", "weights"),
}
_MODE_NAME = {"metrics": "the reconstruction metrics", "retrieval": "--retrieval", "sweep": "--sweep"}
OWN = {"images": "metrics", "labels": "retrieval", "ways": "retrieval", "runs": "sweep", "settings": "sweep",
       "images_dir": "retrieval"}


def _flag(name: str) -> str:
    return "--" + {"eeg_path": "eeg"}.get(name, name).replace("_", "-")


def _check_mode(mode: str) -> None:
    """The mode's required options are there, and no option of another mode was given."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = {p.name for p in ctx.command.params
             if ctx.get_parameter_source(p.name) not in (None, ParameterSource.DEFAULT)}
    missing = [_flag(n) for n in MODES[mode] if n not in given]
    if missing:
        verb = "need" if mode == "metrics" else "needs"
        raise click.UsageError(f"{_MODE_NAME[mode]} {verb} {', '.join(missing)}")
    foreign = [_flag(n) for n, m in OWN.items() if m != mode and n in given]
    if mode == "metrics":
        foreign += [_flag(n) for n in ("bundle", "eeg_path") if n in given]
    if foreign:
        raise click.UsageError(f"{', '.join(foreign)} belongs to another mode of eval, not to {_MODE_NAME[mode]}")


def _parse_ways(text: str) -> tuple[int, ...]:
    try:
        ways = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a list like {WAYS}", param_hint="--ways") from None
    if any(k < 2 for k in ways):
        raise click.BadParameter(f"every k must be >= 2, got {text}", param_hint="--ways")
    return ways


def _out_dir(out: Path, overwrite: bool) -> Path:
    """Refuse a folder holding an earlier eval's results unless --overwrite; they are replaced file by file."""
    if out.exists() and not out.is_dir():
        raise OptionError(f"--out {out} is a file, not a folder")
    old = [n for n in OUTPUTS if (out / n).exists()]
    if old and not overwrite:
        raise OptionError(f"--out {out} holds an earlier eval's results ({', '.join(old)}): pass --overwrite, or another --out")
    return out


def _write(out: Path, files: dict[str, str | bytes]) -> None:
    """Each file atomically; the JSON last, so a folder with it is complete."""
    from ..fileio import atomic_write_bytes

    out.mkdir(parents=True, exist_ok=True)
    for name, data in sorted(files.items(), key=lambda kv: kv[0].endswith(".json")):
        atomic_write_bytes(out / name, data.encode("utf-8") if isinstance(data, str) else data)
    for name in OUTPUTS:  # an earlier run's other results would no longer match
        if name not in files and (out / name).exists():
            (out / name).unlink()


def _json(data: dict) -> str:
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


@click.command("eval")
@click.option("--images", type=DIR, default=None,
              help="Reconstructions (an infer/reference --out folder, or any folder of images).")
@click.option("--truth", type=DIR, default=None,
              help="The images the trials showed, one per reconstruction (sorted by file name; THINGS test_images as is).")
@click.option("--weights", type=DIR, default=None,
              help="Folder of the metric networks' weights (see README, 'Evaluating'); never downloaded.")
@click.option("--out", required=True, type=DIR, help="Output folder.")
@click.option("--overwrite", is_flag=True, help="Replace the results of an earlier eval in --out.")
@torch_device_option("torch device of the metric networks: cpu, cuda, cuda:1.")
@click.option("--retrieval", is_flag=True, help="Zero-shot retrieval of the deployed encoder instead (needs --bundle --eeg --subject).")
@click.option("--sweep", is_flag=True, help="Every speed knob's quality cost and latency (needs --bundle --eeg --subject --truth --weights).")
@click.option("--bundle", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Export bundle or engine folder (--retrieval, --sweep).")
@functools.partial(eeg_options, required=False)
@click.option("--image-features", type=FILE, default=None,
              help="The test images' CLIP ViT-H-14 features: (images, 1024) .npy, or the paper's ViT-H-14_features_test.pt.")
@click.option("--images-dir", type=DIR, default=None,
              help="--retrieval: compute the features from these images (sorted) with the IP-Adapter's image encoder.")
@click.option("--image-encoder", type=DIR, default=None,
              help="h94/IP-Adapter's models/image_encoder folder [default: the Hugging Face cache].")
@click.option("--labels", type=FILE, default=None,
              help="--retrieval: which image each trial showed (.npy or text, one integer per trial) [default: trial i -> image i].")
@click.option("--ways", default=WAYS, show_default=True, help="--retrieval: k of the k-way accuracies.")
@click.option("--runs", default=5, type=POSITIVE_INT, show_default=True, help="--sweep: timed batch-1 runs per setting.")
@click.option("--settings", default=None, help="--sweep: which rows, comma-separated (the paper's row always runs) "
              "[default: all: paper, fused-prior, prior-25, prior-10, dpmpp-10, steps-1, taesd, fp16, fastest].")
@run_options("seed", "shared_subject_token")  # --seed also draws --retrieval's k-way distractors
@runtime_options
def eval_cmd(images: Path | None, truth: Path | None, weights: Path | None, out: Path, overwrite: bool, torch_device: str,
             retrieval: bool, sweep: bool, bundle: Path | None, image_features: Path | None, images_dir: Path | None,
             image_encoder: Path | None, labels: Path | None, ways: str, runs: int, settings: str | None,
             run: RunOptions, runtime: RuntimeOptions, **kw) -> None:
    """Score reconstructions with the paper's eight metrics; or the encoder's retrieval (--retrieval); or what
    each speed knob costs in quality beside its latency (--sweep). --seed is the reconstructions' noise (--sweep)
    and the k-way distractor draws (--retrieval)."""
    if retrieval and sweep:
        raise click.UsageError("--retrieval and --sweep are two modes: choose one")
    mode = "retrieval" if retrieval else "sweep" if sweep else "metrics"
    _check_mode(mode)
    _out_dir(out, overwrite)
    if mode == "metrics":
        assert images and truth and weights  # _check_mode: given
        _metrics(images, truth, weights, out, torch_device)
    elif mode == "retrieval":
        _retrieval(bundle, out, runtime, kw, image_features, images_dir, image_encoder, labels, _parse_ways(ways), run,
                   torch_device)
    else:
        _sweep(bundle, out, runtime, kw, truth, weights, image_features, image_encoder, run, runs, settings,
               torch_device)


def _metrics(images: Path, truth: Path, weights: Path, out: Path, torch_device: str) -> None:
    from .images import read_pairs
    from .metrics import Truth, reconstruction_metrics
    from .networks import MetricNetworks
    from .protocol import protocol_summary
    from .report import metrics_markdown

    recons, gt, pairing = read_pairs(images, truth)
    networks = MetricNetworks.load(weights, device=torch_device)
    values = reconstruction_metrics(recons, Truth.of(gt, networks), networks)
    result = {**values, "n": pairing["n"], "pairing": pairing, "images": str(images), "truth": str(truth),
              "protocol": protocol_summary(), "weights_sha256": networks.hashes, "torch_device": torch_device}
    md = metrics_markdown(result)
    _write(out, {"metrics.md": md, "metrics.json": _json(result)})
    click.echo(md.rstrip())
    click.echo(f"wrote metrics.json and metrics.md to {out}")


def _features(image_features: Path | None, images_dir: Path | None, image_encoder: Path | None, truth: Path | None,
              torch_device: str):
    """The test images' features: the file, or computed from --images-dir (--retrieval) / --truth (--sweep)."""
    from .retrieval import find_image_encoder, image_features_from_images, read_image_features

    if image_features is not None:
        if images_dir is not None:
            raise click.UsageError("--image-features and --images-dir are two sources of the same features: choose one")
        return read_image_features(image_features), str(image_features)
    folder = images_dir or truth
    if folder is None:
        raise click.UsageError("--retrieval needs the test images' features: --image-features F.npy, or --images-dir DIR")
    from .images import list_images, read_set

    option = "--images-dir" if images_dir is not None else "--truth"
    files, _ = list_images(folder, option)
    encoder = find_image_encoder(image_encoder)
    return image_features_from_images(read_set(files, option), encoder, device=torch_device), f"{option} {folder} ({encoder})"


def _retrieval(bundle, out, runtime, kw, image_features, images_dir, image_encoder, labels, ways, run: RunOptions,
               torch_device) -> None:
    from .report import retrieval_markdown
    from .retrieval import read_labels, retrieval_metrics

    eeg, ids = read_eeg(kw, bundle_spec(bundle))  # the bundle's encoder input (its channels and samples)
    feats, source = _features(image_features, images_dir, image_encoder, None, torch_device)
    trial_labels = read_labels(labels, len(eeg), len(feats))
    pipe = runtime.open(bundle, whitening=kw.pop("whitening"))
    try:
        emb = pipe.embed(eeg, ids, shared_subject_token=run.shared_subject_token)
    finally:
        pipe.close()
    result = {**retrieval_metrics(emb, feats, trial_labels, ways=ways, seed=run.seed), "bundle": str(bundle),
              "image_features": source, "labels": str(labels) if labels else "trial i -> image i",
              "subject_ids": sorted({int(i) for i in ids}), **runtime.to_dict()}
    md = retrieval_markdown(result)
    _write(out, {"metrics.md": md, "metrics.json": _json(result)})
    click.echo(md.rstrip())
    click.echo(f"wrote metrics.json and metrics.md to {out}")


def _sweep(bundle, out, runtime, kw, truth, weights, image_features, image_encoder, run: RunOptions, runs, settings,
           torch_device) -> None:
    from ..bench.machine import library_versions, machine_info
    from .images import list_images, read_set
    from .metrics import Truth
    from .networks import MetricNetworks
    from .report import plot_sweep, sweep_markdown
    from .retrieval import read_labels
    from .sweep import run_sweep, select

    grid = select(settings)
    eeg, ids = read_eeg(kw, bundle_spec(bundle))  # the bundle's encoder input (its channels and samples)
    files, order = list_images(truth, "--truth")
    if len(files) != len(eeg):
        raise OptionError(f"--truth has {len(files)} image(s) ({order}), --eeg {len(eeg)} trial(s): trial i is scored "
                          "against truth image i")
    gt = read_set(files, "--truth")
    feats, source = _features(image_features, None, image_encoder, truth, torch_device)
    trial_labels = read_labels(None, len(eeg), len(feats))
    networks = MetricNetworks.load(weights, device=torch_device)
    rows = run_sweep(bundle, eeg, ids, truth=Truth.of(gt, networks), networks=networks, image_features=feats,
                     labels=trial_labels, runtime=runtime, whitening=kw.pop("whitening"), grid=grid, base=run, runs=runs)
    machine = machine_info()
    header = (f"{len(eeg)} trials of {kw.get('eeg_path') or 'the EEG file'}, {runtime.backend}/{runtime.provider}, "
              f"seed {run.seed}; latency: batch 1, median of {runs} runs; {machine['cpu']}, load {machine.get('load_average_1m')}")
    result = {"rows": rows, "bundle": str(bundle), "truth": str(truth), "image_features": source, "seed": run.seed,
              "runs": runs, "n": len(eeg), **runtime.to_dict(), "weights_sha256": networks.hashes,
              "machine": machine, "versions": library_versions()}
    md = sweep_markdown(rows, header)
    png = plot_sweep(rows, title=f"quality vs latency ({len(eeg)} trials, {runtime.backend}/{runtime.provider})")
    _write(out, {"sweep.md": md, "sweep.png": png, "sweep.json": _json(result)})
    click.echo(md.rstrip())
    click.echo(f"wrote sweep.json, sweep.md and sweep.png to {out}")

