"""Images out of the decoder: PNG files and grids (the uint8 conversion is :mod:`..core.images`)."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OptionError

RESULT_NAME = "result.json"
GRID_NAME = "grid.png"
_OWNED = re.compile(r"image_\d{3,}\.png|grid\.png|result\.json")  # what an infer/reference run writes


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


class ImageWriter:
    """The output folder of one ``infer``/``reference`` run, written as a whole.

    Created before any work, it refuses a folder holding an earlier run's files unless ``overwrite``.
    :meth:`write` puts every file in a staging folder first, then removes the earlier run's files
    (only those: ``image_NNN.png``, ``grid.png``, ``result.json``) and moves the new ones in, with
    ``result.json`` last, so no stale image from a longer earlier run stays beside the new ones.
    """

    def __init__(self, out_dir: str | Path, *, overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise OptionError(f"--out {self.out_dir} is a file, not a folder")
        old = self.earlier_files()
        if old and not overwrite:
            raise OptionError(
                f"--out {self.out_dir} holds the output of an earlier run ({len(old)} file(s): {', '.join(p.name for p in old[:3])}"
                f"{', ...' if len(old) > 3 else ''}): pass --overwrite to replace it, or another --out"
            )

    def earlier_files(self) -> list[Path]:
        if not self.out_dir.is_dir():
            return []
        return sorted(p for p in self.out_dir.iterdir() if p.is_file() and _OWNED.fullmatch(p.name))

    def write(self, result: Any, meta: dict[str, Any]) -> list[Path]:
        """Write ``result.images`` (and a grid for a batch) and ``result.json`` (meta + embeddings + names)."""
        from PIL import Image

        from ..fileio import staging_dir

        images = result.images
        names = [f"image_{i:03d}.png" for i in range(len(images))] + ([GRID_NAME] if len(images) > 1 else [])
        data = {**meta, "eeg_embeds": np.asarray(result.eeg_embeds).tolist(),
                "image_embeds": np.asarray(result.image_embeds).tolist(), "images": names}
        try:
            text = json.dumps(data, indent=2, allow_nan=False) + "\n"  # never the invalid bare NaN
        except ValueError as e:
            raise OptionError(f"result.json would hold a non-finite number ({e}): nothing written to {self.out_dir}") from e
        with staging_dir(self.out_dir) as staging:
            arrays = list(images) + ([grid(images)] if len(images) > 1 else [])
            for name, arr in zip(names, arrays):
                Image.fromarray(arr).save(staging / name, format="PNG")
            (staging / RESULT_NAME).write_text(text, encoding="utf-8")
            for old in self.earlier_files():
                old.unlink()
            for name in [*names, RESULT_NAME]:
                os.replace(staging / name, self.out_dir / name)
        return [self.out_dir / n for n in names]

    def summary(self, n_images: int) -> str:
        """What :meth:`write` wrote, for the command's last line (the grid is not one of the images)."""
        return f"wrote {n_images} image(s){', a grid' if n_images > 1 else ''} and {RESULT_NAME} to {self.out_dir}"
