"""The semantic level's weights options (``reference``, ``export``) and what ``--caption`` writes.

``--caption`` writes ``captions.txt`` (one line per trial) and a ``captions`` list in result.json;
``--prompt TEXT`` / ``--prompt-from-caption`` give Stage II a text prompt instead of the empty one
(those options are :class:`~.core.options.RunOptions` fields).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .cli_options import option_group

CAPTIONS_FILE = "captions.txt"


def git_weights_options(f):
    opts = [
        click.option("--git", type=click.Path(file_okay=False, path_type=Path),
                     help="microsoft/git-large-coco folder (captions) [default: weights/git-large-coco or the HF cache]."),
        click.option("--projector", type=click.Path(path_type=Path),
                     help="PixelProjector_best.bin (captions) [default: weights/pixel-projector/]."),
    ]
    return option_group(*opts)(f)


def write_captions(out: Path, captions: list[str] | None) -> dict[str, Any]:
    """Write captions.txt (if any) and return the result.json entries."""
    if captions is None:
        return {}
    from .fileio import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / CAPTIONS_FILE, "".join(c.replace("\n", " ") + "\n" for c in captions))
    return {"captions": captions}
