"""The check between stages: no NaN or infinity goes on to the next stage (the options are checked by
:class:`~.core.options.RunOptions`)."""

from __future__ import annotations

import numpy as np

from .errors import NonFiniteError


def check_finite(stage: str, array: np.ndarray) -> None:
    """Refuse to go on from a stage whose output holds NaN or infinity (it would make black images)."""
    if not np.isfinite(array).all():
        bad = int(np.size(array) - np.isfinite(array).sum())
        raise NonFiniteError(
            f"the {stage} stage produced {bad} non-finite value(s) (NaN/inf) out of {np.size(array)}: no image is "
            "written from them; check --guidance, --ip-scale and the EEG input (an fp16 engine may overflow: try "
            "--precision fp32)"
        )
