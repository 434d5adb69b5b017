"""Images out of the decoder: uint8 conversion (as diffusers rounds it), PNG files and grids."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8, rounded as diffusers' image processor does."""
    x = np.asarray(image, dtype=np.float32) * 0.5 + 0.5  # one temporary, then in place
    np.clip(x, 0.0, 1.0, out=x)
    x *= 255.0
    np.rint(x, out=x)
    return np.ascontiguousarray(x.astype(np.uint8).transpose(0, 2, 3, 1))


def grid(images: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) -> one near-square mosaic."""
    b, h, w, c = images.shape
    cols = math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    out = np.zeros((rows * h, cols * w, c), dtype=images.dtype)
    for i, img in enumerate(images):
        r, k = divmod(i, cols)
        out[r * h : (r + 1) * h, k * w : (k + 1) * w] = img
    return out


def save_images(images: np.ndarray, out_dir: str | Path, prefix: str = "image") -> list[Path]:
    """Write one PNG per image (and ``grid.png`` for a batch) atomically; returns the paths."""
    from PIL import Image

    from ..fileio import atomic_path

    out_dir = Path(out_dir)
    paths = [out_dir / f"{prefix}_{i:03d}.png" for i in range(len(images))]
    if len(images) > 1:
        paths.append(out_dir / "grid.png")
    arrays = list(images) + ([grid(images)] if len(images) > 1 else [])
    for path, arr in zip(paths, arrays):
        with atomic_path(path) as tmp:
            Image.fromarray(arr).save(tmp, format="PNG")
    return paths
