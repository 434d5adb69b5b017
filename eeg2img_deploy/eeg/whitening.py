"""Multivariate noise whitening (the paper's per-session sigma^-1/2): the one implementation.

Whitening is applied in one place: the runtime's :class:`~eeg2img_deploy.runtime.pipeline.Pipeline`
(a matrix shipped in the bundle, or one given to ``infer --whitening`` when the bundle has none; both at
once is refused), and ``reference --whitening`` for the PyTorch pipeline. The readers never whiten.
numpy only: the torch-free runtime imports this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eeg2img_deploy.eeg.spec import DEFAULT_SPEC, EEGSpec
from eeg2img_deploy.errors import EEGInputError

PathLike = str | Path


def load_whitening(path: PathLike, spec: EEGSpec = DEFAULT_SPEC) -> np.ndarray:
    """Read a whitening matrix (sigma^-1/2, (63, 63)) from a ``.npy`` file, as float64."""
    path = Path(path)
    if not path.is_file():
        raise EEGInputError(f"whitening file {path} does not exist (check --whitening)")
    if path.suffix.lower() != ".npy":
        raise EEGInputError(
            f"whitening file {path.name} must be a .npy array of shape {spec.n_channels}x{spec.n_channels}"
        )
    try:
        w = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise EEGInputError(
            f"whitening file {path.name} could not be read as a numeric array: {e}"
        ) from None
    return check_whitening(w, spec, what=f"whitening matrix in {path.name}")


def check_whitening(
    w: Any, spec: EEGSpec = DEFAULT_SPEC, *, what: str = "whitening matrix"
) -> np.ndarray:
    w = np.asarray(w)
    c = spec.n_channels
    if w.dtype.kind not in "iuf":
        raise EEGInputError(f"{what} has dtype {w.dtype}; expected a float ({c}, {c}) matrix")
    if w.shape != (c, c):
        raise EEGInputError(
            f"{what} has shape {w.shape}; expected ({c}, {c}) (sigma^-1/2 over the spec's channels)"
        )
    if not np.all(np.isfinite(w)):
        raise EEGInputError(
            f"{what} has {int((~np.isfinite(w)).sum())} non-finite values; expected finite"
        )
    return w.astype(np.float64)


def apply_whitening(
    data: np.ndarray, whitening: np.ndarray | PathLike, spec: EEGSpec = DEFAULT_SPEC
) -> np.ndarray:
    """``W @ x`` for each trial x (C, T), computed in float64; returns float32."""
    if isinstance(whitening, (str, Path)):
        w = load_whitening(whitening, spec)
    else:
        w = check_whitening(whitening, spec)
    return np.matmul(w, np.asarray(data, dtype=np.float64)).astype(np.float32)
