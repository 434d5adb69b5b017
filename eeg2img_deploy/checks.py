"""Checks of the numbers a caller passes to the pipelines (library and CLI alike).

Each message names the CLI option, so the CLI can show it as is; the library raises the same.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import NonFiniteError, OptionError


def check_call_options(*, seed: int, prior_steps: int, guidance: float, ip_scale: float | None = None,
                       image_size: int | None = None) -> None:
    """Refuse a negative seed, fewer than one prior step, non-finite guidance/IP scale, a bad image size."""
    seeds = np.asarray(seed)  # one seed, or one per trial
    if seeds.dtype.kind not in "iu" or (seeds < 0).any():
        raise OptionError(f"--seed must be an integer >= 0, got {seed!r}")
    if not isinstance(prior_steps, (int, np.integer)) or prior_steps < 1:
        raise OptionError(f"--prior-steps must be an integer >= 1, got {prior_steps!r}")
    for option, x in (("--guidance", guidance), ("--ip-scale", ip_scale)):
        if x is not None and not math.isfinite(float(x)):
            raise OptionError(f"{option} must be a finite number, got {x!r}")
    if image_size is not None and (image_size < 64 or image_size % 64):
        raise OptionError(f"--image-size must be a positive multiple of 64, got {image_size}")


def check_finite(stage: str, array: np.ndarray) -> None:
    """Refuse to go on from a stage whose output holds NaN or infinity (it would make black images)."""
    if not np.isfinite(array).all():
        bad = int(np.size(array) - np.isfinite(array).sum())
        raise NonFiniteError(
            f"the {stage} stage produced {bad} non-finite value(s) (NaN/inf) out of {np.size(array)}: no image is "
            "written from them; check --guidance, --ip-scale and the EEG input (an fp16 engine may overflow: try "
            "--precision fp32)"
        )
