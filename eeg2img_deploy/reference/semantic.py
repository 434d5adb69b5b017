"""The paper's semantic level in PyTorch: a caption from the EEG, and a text prompt for Stage II.

``Generation/GIT_caption_batch.ipynb``: per sample, the prior is sampled again with 4 steps and
guidance 5 (``pipe.generate(c_embeds=..., num_inference_steps=4, guidance_scale=5.0)``), the
PixelProjector turns that embedding into 257 GIT tokens, and GIT generates at most 25 new tokens with
its default (greedy) decoding. The caption can then be Stage II's prompt (the notebook does that by hand).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.options import RunOptions, fallback
from ..errors import WeightsNotFoundError
from .prior_sampler import sample_prior


@dataclass
class Captions:
    ids: list[list[int]]  # per sample: generated ids, BOS excluded, up to and including EOS
    texts: list[str]
    image_embeds: object  # (B, 1024) the caption's own prior sample


def require_captioner(captioner, projector) -> None:
    if captioner is None or projector is None:
        missing = " and ".join(n for n, x in (("GIT (--git)", captioner), ("PixelProjector (--projector)", projector)) if x is None)
        raise WeightsNotFoundError(
            f"captions need {missing}: put microsoft/git-large-coco in weights/git-large-coco and "
            "PixelProjector_best.bin in weights/pixel-projector (or pass --git / --projector)"
        )


def caption(prior, projector, captioner, eeg_embeds, seed: int, *, steps: int = RunOptions.caption_prior_steps,
            guidance: float = fallback("guidance"), max_new_tokens: int = 25) -> Captions:
    import torch

    embeds = sample_prior(prior, eeg_embeds, seed, steps=steps, guidance=guidance, purpose="caption_prior")
    with torch.no_grad():
        tokens = projector(embeds[:, None, :].float())
    ids = captioner.generate_ids(tokens, max_new_tokens=max_new_tokens)
    return Captions(ids, captioner.decode(ids), embeds)
