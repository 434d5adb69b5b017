"""The semantic level's command-line options (``reference`` and ``infer``), and what they write.

``--caption`` writes ``captions.txt`` (one line per trial) and a ``captions`` list in result.json;
``--prompt TEXT`` / ``--prompt-from-caption`` give Stage II a text prompt instead of the empty one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .cli_options import option_group

CAPTIONS_FILE = "captions.txt"


def semantic_options(f):
    opts = [
        click.option("--caption", is_flag=True, help="Caption each trial with GIT (the paper's semantic level): captions.txt."),
        click.option("--prompt", default=None, help="Text prompt for Stage II, for every trial [default: the empty prompt]."),
        click.option("--prompt-from-caption", is_flag=True, help="Use each trial's caption as its Stage II prompt."),
        click.option("--caption-prior-steps", default=4, show_default=True,
                     help="Prior steps of the caption's own prior sample (the paper's caption notebook: 4)."),
    ]
    return option_group(*opts)(f)


def git_weights_options(f):
    opts = [
        click.option("--git", type=click.Path(file_okay=False, path_type=Path),
                     help="microsoft/git-large-coco folder (captions) [default: weights/git-large-coco or the HF cache]."),
        click.option("--projector", type=click.Path(path_type=Path),
                     help="PixelProjector_best.bin (captions) [default: weights/pixel-projector/]."),
    ]
    return option_group(*opts)(f)


def pop_semantic(kw: dict) -> dict[str, Any]:
    """The four options as keyword arguments of the pipelines; both prompt kinds at once is a usage error."""
    d = {k: kw.pop(k) for k in ("caption", "prompt", "prompt_from_caption", "caption_prior_steps")}
    if d["prompt"] is not None and d["prompt_from_caption"]:
        raise click.UsageError("--prompt and --prompt-from-caption exclude each other: give one")
    if d["caption_prior_steps"] < 1:
        raise click.BadParameter(f"must be >= 1, got {d['caption_prior_steps']}", param_hint="--caption-prior-steps")
    return d


def write_captions(out: Path, captions: list[str] | None) -> dict[str, Any]:
    """Write captions.txt (if any) and return the result.json entries."""
    if captions is None:
        return {}
    from .fileio import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / CAPTIONS_FILE, "".join(c.replace("\n", " ") + "\n" for c in captions))
    return {"captions": captions}
