"""The decoder's image as bytes: ``[-1, 1]`` floats -> uint8, rounded as diffusers rounds them.

The reference, the runtime and the decoder graphs' exported tail (``export/vae.py``) all do it this way.
"""

from __future__ import annotations

import numpy as np


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8, rounded as diffusers' image processor does."""
    x = np.asarray(image, dtype=np.float32) * 0.5 + 0.5  # one temporary, then in place
    np.clip(x, 0.0, 1.0, out=x)
    x *= 255.0
    np.rint(x, out=x)
    return np.ascontiguousarray(x.astype(np.uint8).transpose(0, 2, 3, 1))
