"""``eval --sweep``: what each speed knob costs in decoding quality, beside what it saves in latency.

The same test set runs through each setting of :data:`GRID`; each row gets the eight metrics (against
the truth), retrieval (its EEG embeddings against the image features) and its latency measured with
``bench``'s timing loop (batch 1, per-stage and end-to-end medians). The first row is the paper's
settings, the reference every other row changes one knob of (plus the toolkit's fastest combination).
A setting the folder cannot run (no fp16 graphs, no TAESDXL, no fused graph for its step count) is
reported as skipped with the reason; the rest still run.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.options import RunOptions
from ..errors import ManifestError, OptionError, SettingsError

if TYPE_CHECKING:
    from ..cli_options import RuntimeOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepSetting:
    """One row: how the pipeline is opened (precision, vae) and the :class:`RunOptions` it is called with
    (the command's seed and shared-subject choice are put in at run time)."""

    name: str
    run: RunOptions
    precision: str = "fp32"
    vae: str = "full"

    def knobs(self) -> dict[str, Any]:
        """What a row records of its setting: the options the sweep varies."""
        return {**{k: getattr(self.run, k) for k in VARIED}, "vae": self.vae, "precision": self.precision}


VARIED = ("prior_steps", "prior_sampler", "prior_graph", "steps", "guidance")  # the RunOptions a row may change
# The paper's settings: DDPM 50 steps, guidance 5, its stepwise loop (the fused graph is bit-identical on onnxruntime's
# CPU provider), SDXL-Turbo 4 steps, SDXL's VAE, fp32.
PAPER = SweepSetting("paper", RunOptions(prior_steps=50, prior_sampler="ddpm", prior_graph="stepwise", steps=4, guidance=5.0))


def _row(name: str, precision: str = "fp32", vae: str = "full", **run: Any) -> SweepSetting:
    return SweepSetting(name, PAPER.run.replace(**run), precision, vae)


GRID = (
    PAPER,
    _row("fused-prior", prior_graph="fused"),
    _row("prior-25", prior_steps=25),
    _row("prior-10", prior_steps=10),
    _row("dpmpp-10", prior_sampler="dpmpp", prior_steps=10),
    _row("steps-1", steps=1),
    _row("taesd", vae="tiny"),
    _row("fp16", precision="fp16"),
    _row("fastest", "fp16", "tiny", prior_steps=10, prior_graph="fused", steps=1),
)
GRID_NAMES = tuple(s.name for s in GRID)


def select(names: str | None) -> tuple[SweepSetting, ...]:
    """``--settings a,b``: those rows of :data:`GRID` (the paper's first, always, as the reference)."""
    if names is None:
        return GRID
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in GRID_NAMES]
    if unknown:
        raise OptionError(f"--settings: unknown setting(s) {', '.join(unknown)}; choose from {', '.join(GRID_NAMES)}")
    return tuple(s for s in GRID if s.name == PAPER.name or s.name in wanted)


def _latency(pipe, eeg, ids, run: RunOptions, name: str, *, runs: int, warmup: int) -> dict[str, float]:
    """Per-stage and end-to-end medians (ms) of batch-1 calls, with ``bench``'s timing loop."""
    from ..bench.stats import STAGES, stats_table, time_calls

    def call():
        return pipe(eeg[:1], ids[:1], options=run).timings_ms, {}

    samples = time_calls(call, runs, warmup, (*STAGES, "total"), None, name)
    return {k: v["p50"] for k, v in stats_table(samples).items()}


def run_sweep(bundle, eeg: np.ndarray, ids: np.ndarray, *, truth, networks, image_features: np.ndarray,
              labels: np.ndarray, runtime: RuntimeOptions, whitening: Path | None = None,
              grid: tuple[SweepSetting, ...] = GRID, base: RunOptions | None = None, runs: int = 5, warmup: int = 1,
              progress=None) -> list[dict[str, Any]]:
    """One row per setting: knobs, metrics, retrieval (full set), latency; or ``skipped`` with the reason.

    ``truth``: a :class:`~.metrics.Truth` of the test images; ``runtime``: the runtime options (backend, provider,
    threads; each row sets its own precision and vae); ``whitening``: the one whitening matrix, for a folder that
    ships none; ``base``: the command's seed and shared-subject choice, which every row keeps.
    """
    from .metrics import reconstruction_metrics
    from .retrieval import cosine_scores, full_set

    base = base or RunOptions()
    rows, pipes = [], {}
    reference: dict[str, Any] | None = None  # the paper's row (first in every grid) and its images
    try:
        for setting in grid:
            row: dict[str, Any] = {"name": setting.name, **setting.knobs()}
            key = (setting.precision, setting.vae)
            run = setting.run.replace(seed=base.seed, shared_subject_token=base.shared_subject_token)
            try:
                if key not in pipes:
                    opened = dataclasses.replace(runtime, precision=setting.precision, vae=setting.vae)
                    pipes[key] = opened.open(bundle, whitening=whitening)
                pipe = pipes[key]
                result = pipe(eeg, ids, options=run)
            except (ManifestError, SettingsError) as e:  # this folder cannot run the setting: say why, run the others
                row["skipped"] = str(e).splitlines()[0]
                log.warning("sweep: %s skipped: %s", setting.name, row["skipped"])
                rows.append(row)
                continue
            row["metrics"] = reconstruction_metrics(result.images, truth, networks)
            row["retrieval"] = full_set(cosine_scores(result.eeg_embeds, image_features), labels)
            row["latency_ms"] = _latency(pipe, eeg, ids, run, setting.name, runs=runs, warmup=warmup)
            if setting.name == PAPER.name:
                reference = {"images": result.images, "total": row["latency_ms"]["total"]}
            if reference is not None:
                row["psnr_vs_paper_db"] = _psnr(result.images, reference["images"])
                row["speedup_vs_paper"] = reference["total"] / row["latency_ms"]["total"]
            rows.append(row)
            if progress:
                progress(setting.name)
    finally:
        for p in pipes.values():
            p.close()
    return rows


def _psnr(a: np.ndarray, b: np.ndarray) -> float | None:
    """Mean PSNR (dB) of two uint8 image sets; None (JSON null) where they are identical."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(axis=1)
    if (mse == 0).all():
        return None
    return float(np.mean(10 * np.log10(255.0**2 / np.maximum(mse, 1e-12))))
