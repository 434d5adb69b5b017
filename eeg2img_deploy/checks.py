"""The check between stages: no NaN or infinity goes on to the next stage (the options are checked by
:class:`~.core.options.RunOptions`); and the warnings about what was asked but is questionable, said once."""

from __future__ import annotations

import logging

import numpy as np

from .errors import NonFiniteError

log = logging.getLogger(__name__)
_said: set[str] = set()


def warn_once(message: str) -> None:
    """A warning about what was asked, said once per process (a stream or server asks the same again and again)."""
    if message not in _said:
        _said.add(message)
        log.warning(message)


def note_prompt_cut(prompt: str, limit: int) -> None:
    """Say that a prompt was longer than the text encoders take and was cut (as diffusers cuts it)."""
    short = prompt if len(prompt) <= 60 else prompt[:57] + "..."
    warn_once(f"the prompt {short!r} is longer than the {limit} tokens SDXL's CLIP text encoders take (start and end "
              f"tokens included): only its first {limit - 2} tokens are used")


def check_finite(stage: str, array: np.ndarray) -> None:
    """Refuse to go on from a stage whose output holds NaN or infinity (it would make black images)."""
    if not np.isfinite(array).all():
        bad = int(np.size(array) - np.isfinite(array).sum())
        raise NonFiniteError(
            f"the {stage} stage produced {bad} non-finite value(s) (NaN/inf) out of {np.size(array)}: no image is "
            "written from them; check --guidance, --ip-scale and the EEG input (an fp16 engine may overflow: try "
            "--precision fp32)"
        )
