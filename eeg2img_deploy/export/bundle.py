"""``export``: every stage to validated ONNX (fp32 and fp16), constants, and the manifest, written last.

Re-running with unchanged weights and settings is a no-op; anything else re-exports. Weights are
loaded (and checked, key by key) before a single file is written. Every file is made in a staging
folder inside ``out`` and moved in only when all of them (manifest and card included) are made: an
export that fails leaves ``out`` as it was (a folder it created is removed). While the files are
moved in, the old manifest is gone, so even an export killed then never looks complete.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..cards import CARD_NAME, render_card, write_card
from ..errors import ExportError, ManifestError, OptionError, WeightsNotFoundError
from ..fileio import atomic_write_text, sha256_bytes, sha256_file, staging_dir
from ..integrity import verify_files
from ..manifest import (
    MANIFEST_NAME,
    Artifact,
    AxisRange,
    Backend,
    BundleSettings,
    Constants,
    EEGInfo,
    EncoderInfo,
    EncoderVariant,
    LowLevelInfo,
    Manifest,
    RecommendedRun,
    Source,
    Validation,
    Precision,
    library_versions,
    read_manifest,
    write_manifest,
)
from ..models.load import LoadedModels
from ..weights import WeightsLayout
from .onnx_io import EDGES, OPSET, check_onnx, export_onnx, validate
from .prior_sampler import DEFAULT_FUSED_PRIOR_STEPS, ddpm_alphas_cumprod
from .spec import StageExport

log = logging.getLogger(__name__)

CONSTANTS_NAME = "constants.safetensors"
EXPORT_LIBRARIES = ("torch", "diffusers", "transformers", "onnx", "onnxruntime")
SDXL_PARTS = ("model_index.json", "unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")


@dataclass(frozen=True)
class ExportSettings:
    precisions: tuple[Precision, ...] = (Precision.FP32, Precision.FP16)
    image_size: int = 512
    max_batch: int = 4  # the dynamic batch axis's upper bound (engines' profiles read it)
    steps: tuple[int, ...] = (1, 4)  # SDXL-Turbo step counts whose scheduler tables are exported
    fused_prior_steps: tuple[int, ...] = DEFAULT_FUSED_PRIOR_STEPS  # DDPM step counts of the fused prior graphs
    ip_scale: float = 1.0  # the runtime default; the scale is an input of the UNet graph
    validate: bool = True
    variant: EncoderVariant = EncoderVariant()
    latent_convention: str = "unscaled"  # what the low-level encoder's latents are (models/low_level_encoder.py)

    def __post_init__(self):
        if self.image_size < 64 or self.image_size % 64:
            raise OptionError(f"--image-size must be a positive multiple of 64 (the UNet downsamples latents by 8), got {self.image_size}")
        if self.max_batch < 1:
            raise OptionError(f"--max-batch must be >= 1, got {self.max_batch}")
        if not set(self.steps) <= {1, 2, 3, 4}:
            raise OptionError(f"--steps: SDXL-Turbo steps must be among 1..4, got {self.steps}")
        bad = [n for n in self.fused_prior_steps if not 1 <= n <= 1000]
        if bad:
            raise OptionError(f"--fused-prior-steps must be step counts in 1..1000 (the prior's schedule), got {bad}")

    def axes(self) -> dict[str, AxisRange]:
        return {"batch": AxisRange(1, 1, self.max_batch), "batch2": AxisRange(2, 2, 2 * self.max_batch)}


def _hash_tree(folder: Path, parts: tuple[str, ...]) -> str:
    """One sha256 over the files of ``parts`` (relative name + content hash each)."""
    entries = []
    for part in parts:
        p = folder / part
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else []
        entries += [f"{f.relative_to(folder).as_posix()}:{sha256_file(f)}" for f in files]
    return sha256_bytes("\n".join(entries).encode())


def _hash_weights_file(path: Path, what: str) -> str:
    if not Path(path).is_file():  # a bare FileNotFoundError from hashing would not say which component
        raise WeightsNotFoundError(f"{what} weights {path} not found: check the path (--weights, --{what.replace('_', '-')})")
    return sha256_file(path)


def hash_sources(layout: WeightsLayout) -> dict[str, dict[str, str]]:
    src = {
        "encoder": {"path": str(layout.encoder), "sha256": _hash_weights_file(layout.encoder, "encoder")},
        "prior": {"path": str(layout.prior), "sha256": _hash_weights_file(layout.prior, "prior")},
        "sdxl": {"path": str(layout.sdxl), "sha256": _hash_tree(layout.sdxl, SDXL_PARTS)},
        "ip_adapter": {"path": str(layout.ip_adapter.file), "sha256": _hash_weights_file(layout.ip_adapter.file, "ip_adapter")},
    }
    if layout.encoder_factory is not None:  # a user's model: its code is a source too
        from ..models.custom_encoder import factory_source

        code = factory_source(layout.encoder_factory)
        src["encoder_factory"] = {"path": str(code), "sha256": sha256_file(code)}
    if layout.encoder_channels is not None:
        src["encoder_channels"] = {"path": str(layout.encoder_channels),
                                   "sha256": _hash_weights_file(layout.encoder_channels, "encoder_channels")}
    if layout.low_level is not None:
        src["low_level"] = {"path": str(layout.low_level), "sha256": _hash_weights_file(layout.low_level, "low_level")}
    if layout.taesd is not None:
        src["taesd"] = {"path": str(layout.taesd), "sha256": _hash_tree(layout.taesd, ("config.json", "diffusion_pytorch_model.safetensors"))}
    if layout.git is not None and layout.projector is not None:  # captions need both
        src["git"] = {"path": str(layout.git), "sha256": _hash_tree(layout.git, tuple(sorted(p.name for p in layout.git.iterdir())))}
        src["projector"] = {"path": str(layout.projector), "sha256": _hash_weights_file(layout.projector, "projector")}
    return src


def fingerprint(sources: dict, settings: ExportSettings, whitening: np.ndarray | None) -> str:
    payload = {
        "sources": {k: v["sha256"] for k, v in sources.items()},
        "settings": dataclasses.asdict(settings),
        "whitening": None if whitening is None else sha256_bytes(np.ascontiguousarray(whitening, np.float32).tobytes()),
        "toolkit": __version__,
        "opset": OPSET,
        "edges": EDGES,  # bundles with float16 edges (exported before) are exported again
    }
    return sha256_bytes(json.dumps(payload, sort_keys=True, default=str).encode())


def _up_to_date(out_dir: Path, fp: str) -> Manifest | None:
    if not (out_dir / MANIFEST_NAME).is_file():
        return None
    try:
        manifest = read_manifest(out_dir)
        if manifest.bundle.fingerprint != fp:
            return None
        verify_files(out_dir, manifest)
    except ManifestError as e:
        log.warning("existing bundle in %s is not usable (%s): exporting again", out_dir, e)
        return None
    return manifest


def build_stages(models: LoadedModels, settings: ExportSettings) -> list[StageExport]:
    from .encoder import encoder_stage
    from .prior import prior_stage
    from .prior_sampler import prior_sampler_stage
    from .unet import unet_stage
    from .vae import taesd_stage, vae_stage

    alphas = ddpm_alphas_cumprod()
    stages = [
        encoder_stage(models.encoder_info),
        prior_stage(models.prior),
        *(prior_sampler_stage(models.prior, alphas, n) for n in settings.fused_prior_steps),
        unet_stage(models.sdxl.unet, settings.image_size),
        vae_stage(models.sdxl.vae, settings.image_size),
    ]
    if models.taesd is not None:
        stages.append(taesd_stage(models.taesd, settings.image_size))
    if models.low_level is not None:
        from ..core.options import check_low_level_size
        from .low_level import low_level_encoder_stage, vae_encoder_stage

        check_low_level_size(models.low_level.arch.latent_side, settings.image_size)
        stages += [low_level_encoder_stage(models.low_level), vae_encoder_stage(models.sdxl.vae, settings.image_size)]
    from .semantic import semantic_stages

    return stages + semantic_stages(models)


def constants(models: LoadedModels, settings: ExportSettings, whitening: np.ndarray | None) -> dict[str, np.ndarray]:
    """Everything the runtime needs besides the graphs: conditioning, scheduler tables, scales."""
    from diffusers import EulerAncestralDiscreteScheduler

    from ..models.sdxl import clip_normalisation, time_ids

    out = {
        **clip_normalisation(),  # the low-level path's start image is normalised as CLIP images are
        Constants.PROMPT_EMBEDS: models.prompt.prompt_embeds.float().cpu().numpy(),
        Constants.POOLED_PROMPT_EMBEDS: models.prompt.pooled.float().cpu().numpy(),
        Constants.TIME_IDS: np.array([time_ids(settings.image_size)], np.float32),
        Constants.PRIOR_ALPHAS_CUMPROD: ddpm_alphas_cumprod(),
        Constants.VAE_SCALING_FACTOR: np.array([models.sdxl.vae.config.scaling_factor], np.float32),
    }
    euler = EulerAncestralDiscreteScheduler.from_config(models.sdxl.scheduler.config)
    for n in settings.steps:
        euler.set_timesteps(n)
        timesteps, sigmas, init_sigma = Constants.euler(n)
        out[timesteps] = euler.timesteps.numpy().astype(np.float32)
        out[sigmas] = euler.sigmas.numpy().astype(np.float32)
        out[init_sigma] = np.array([float(euler.init_noise_sigma)], np.float32)
    if whitening is not None:
        out[Constants.EEG_WHITENING] = np.ascontiguousarray(whitening, np.float32)
    from .semantic import semantic_constants

    return {**out, **semantic_constants(models)}


def _file_name(stage: StageExport, precision: Precision) -> str:
    return f"{stage.file_stem}.onnx" if precision is Precision.FP32 else f"{stage.file_stem}.{precision.value}.onnx"


def _progress(enabled: bool):
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), disable=not enabled, transient=False,
    )


def export_bundle(
    layout: WeightsLayout,
    out_dir: str | Path,
    settings: ExportSettings = ExportSettings(),
    *,
    whitening: np.ndarray | None = None,
    force: bool = False,
    progress: bool = True,
) -> tuple[Manifest, bool]:
    """Export to ``out_dir``; returns (manifest, exported) where ``exported`` is False when up to date."""
    from ..eeg.spec import EEGSpec
    from ..eeg.whitening import check_whitening
    from ..models.load import load_models

    out_dir = Path(out_dir)
    log.info("hashing the weights")
    sources = hash_sources(layout)
    fp = fingerprint(sources, settings, whitening)
    if not force and (existing := _up_to_date(out_dir, fp)) is not None:
        log.info("bundle %s is up to date (same weights and settings): nothing to do", out_dir)
        write_card(out_dir, existing)
        return existing, False

    # Load and check every weight before writing anything.
    models = load_models(layout, variant=settings.variant,
                      ip_scale=settings.ip_scale, latent_convention=settings.latent_convention)
    encoder = models.encoder_info
    if layout.low_level is not None and models.low_level is not None and encoder.spec.shape != EEGSpec().shape:
        raise ExportError(f"the low-level encoder ({layout.low_level.name}) reads the paper's 63 x 250 EEG, this encoder "
                          f"{encoder.spec.n_channels} x {encoder.spec.n_times} (--encoder-channels): export without it "
                          "(move low-level/ out of --weights)")
    if whitening is not None:
        check_whitening(whitening, encoder.spec, what="--whitening")
    stages = build_stages(models, settings)
    consts = constants(models, settings, whitening)

    created = [p for p in (out_dir, *out_dir.parents) if not p.exists()]  # what to remove if it fails
    try:
        with staging_dir(out_dir) as staging:
            artifacts = _export_stages(stages, settings, staging, progress)
            from safetensors.numpy import save_file

            save_file(consts, str(staging / CONSTANTS_NAME))
            manifest = _bundle_manifest(models, settings, stages, tuple(artifacts), sources, fp, whitening,
                                        constants_sha256=sha256_file(staging / CONSTANTS_NAME))
            card = render_card(out_dir, manifest)  # everything is made: only moves and two small writes remain
            (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # from here on the folder is incomplete
            for f in sorted(staging.iterdir()):
                os.replace(f, out_dir / f.name)
    except BaseException:
        if created:
            shutil.rmtree(created[-1], ignore_errors=True)
        raise
    atomic_write_text(out_dir / CARD_NAME, card)
    write_manifest(out_dir, manifest)  # last: its presence marks the folder complete
    return manifest, True


def _export_stages(stages: list[StageExport], settings: ExportSettings, staging: Path, progress: bool) -> list[Artifact]:
    """Trace, check and validate every stage in every precision into ``staging``."""
    import torch

    rng = np.random.default_rng(0)
    artifacts: list[Artifact] = []
    jobs = sum(1 for s in stages for p in settings.precisions if not (s.fp32_only and p is Precision.FP16))
    with _progress(progress) as bar:
        task = bar.add_task("export", total=jobs)
        for stage in stages:
            # torch fp32 outputs first: the fp16 graph is judged against them, after the module is halved
            cases = []
            if settings.validate:
                for batch in sorted({1, min(2, settings.max_batch)}):
                    feeds = stage.make_inputs(batch, rng)
                    with torch.no_grad():
                        ref_out = stage.module(*[torch.from_numpy(feeds[t.name]) for t in stage.inputs])
                    outs = ref_out if isinstance(ref_out, tuple) else (ref_out,)  # multi-output stages return tuples
                    cases.append((feeds, tuple(o.float().numpy().astype(np.float64) for o in outs)))
            example = stage.make_inputs(2, rng)  # batch >= 2 so exporters keep the batch axis dynamic
            for precision in settings.precisions:
                if stage.fp32_only and precision is Precision.FP16:
                    continue
                bar.update(task, description=f"{stage.file_stem} {precision.value}: tracing")
                if precision is Precision.FP16:
                    stage.module.half()
                path = staging / _file_name(stage, precision)
                seconds = export_onnx(stage, precision, path, example)
                bar.update(task, description=f"{stage.file_stem} {precision.value}: checking")
                check_onnx(path, stage, precision)
                report = Validation(export_seconds=round(seconds, 2))
                if settings.validate:
                    bar.update(task, description=f"{stage.file_stem} {precision.value}: validating")
                    report = dataclasses.replace(report, **validate(path, stage, precision, cases))
                artifacts.append(_artifact(path, stage, precision, report))
                log.info("exported %s %s in %.1f s", stage.file_stem, precision.value, seconds)
                bar.advance(task)
            stage.module.float()
    return artifacts


def manifest_sources(hashed: dict[str, dict[str, str]], loaded: dict) -> dict[str, Source]:
    """The manifest's record of the weights: name and sha256 of each part the layout has, and for the
    checkpoints the loader read (encoder, prior, low-level encoder) what it found in them. Absent
    optional parts are left out, never recorded as null."""
    out = {k: Source(v["sha256"], name=Path(v["path"]).name) for k, v in hashed.items()}
    for key in ("encoder", "prior", "low_level"):
        if isinstance(loaded.get(key), dict):
            out[key] = Source.from_dict(loaded[key])  # with the checkpoint's subject table, linears and variant
    return out


def _bundle_manifest(models: LoadedModels, settings: ExportSettings, stages: list[StageExport],
                     artifacts: tuple[Artifact, ...], sources: dict, fp: str, whitening: np.ndarray | None,
                     *, constants_sha256: str) -> Manifest:
    from .semantic import semantic_axes

    encoder = models.encoder_info
    return Manifest(
        backend=Backend.ONNX,
        artifacts=artifacts,
        constants_file=CONSTANTS_NAME,
        constants_sha256=constants_sha256,
        eeg=EEGInfo.from_spec(encoder.spec, whitening=whitening is not None),
        bundle=BundleSettings(
            fingerprint=fp,
            image_size=settings.image_size,
            latent_channels=int(models.sdxl.unet.config.in_channels),
            max_batch=settings.max_batch,
            axes={**settings.axes(), **semantic_axes(models)},
            opset=OPSET,
            steps=tuple(settings.steps),
            ip_scale=settings.ip_scale,
            encoder_variant=settings.variant,
            num_subjects=encoder.num_subjects,
            encoder=EncoderInfo(kind=encoder.kind, uses_subject_ids=encoder.uses_subject_ids,
                                factory=encoder.provenance.get("factory"),
                                factory_sha256=encoder.provenance.get("factory_sha256")),
            recommended=_recommended(encoder.recommended, settings),
            fp32_only_stages=tuple(s.name for s in stages if s.fp32_only),
            low_level=LowLevelInfo(settings.latent_convention) if models.low_level is not None else None,
        ),
        sources=manifest_sources(sources, models.sources),
        libraries=library_versions(EXPORT_LIBRARIES),
    )


def _recommended(values: dict, settings: ExportSettings) -> RecommendedRun:
    """The encoder's own run settings, less an SDXL-Turbo step count the bundle has no table for."""
    values = dict(values)
    if values.get("steps") is not None and values["steps"] not in settings.steps:
        log.warning("%s reconstructs with %d SDXL-Turbo steps, but this bundle has tables for %s only (--steps): "
                    "not recommended by the bundle", values.get("source", "the encoder"), values["steps"],
                    ", ".join(map(str, settings.steps)))
        values["steps"] = None
    return RecommendedRun(**values)


def _artifact(path: Path, stage: StageExport, precision: Precision, report: Validation) -> Artifact:
    data = path.with_name(path.name + ".data")
    has_data = data.is_file()  # external data (files over 2 GB): one .data file beside the graph
    return Artifact(
        stage=stage.name, precision=precision, file=path.name, sha256=sha256_file(path),
        size_bytes=path.stat().st_size + (data.stat().st_size if has_data else 0),
        inputs=stage.input_specs(precision), outputs=stage.output_specs(precision),
        data_file=data.name if has_data else None, data_sha256=sha256_file(data) if has_data else None,
        validation=report, steps=stage.steps,
    )
