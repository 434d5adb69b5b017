"""The semantic level in the runtime: captions from the EEG and text prompts for Stage II.

Its stages (``text_encoders``; ``projector``, ``caption_prefill``, ``caption_decoder``) are opened on
first use, so a run with the empty prompt (the paper's image path) opens, checks and runs none of
them: it uses the bundle's constant empty-prompt embeddings exactly as before.

The caption comes from its own prior sample, as in the paper's caption notebook: the runtime's prior
with 4 steps and the image prior's guidance, from the "caption_prior" noise stream, so asking for a
caption never changes the image made with the empty prompt.
"""

from __future__ import annotations

import time

import numpy as np

from ..core.options import RunOptions
from ..errors import ManifestError
from ..names import CAPTION_STAGES, Stage
from .captioner import Captioner
from .prompts import PromptEncoder

TEXT_STAGE = Stage.TEXT_ENCODERS


class Semantic:
    """Bound to a :class:`~.pipeline.Pipeline`; its sessions live in the pipeline's (and close with it)."""

    def __init__(self, pipeline):
        self.pipe = pipeline
        self._captioner: Captioner | None = None
        self._prompts: PromptEncoder | None = None

    def _run(self, stage: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.pipe.run_stage(stage, feeds)

    def prepare(self, req: RunOptions) -> None:
        """Open what ``req`` needs (once), or fail before any work with the export command that adds it."""
        have = set(self.pipe.manifest.stages())
        if req.needs_caption and self._captioner is None:
            missing = [s for s in CAPTION_STAGES if s not in have]
            if missing:
                raise ManifestError(
                    f"{self.pipe.folder} has no caption stages ({', '.join(missing)}): export it from weights with "
                    "git-large-coco/ and pixel-projector/ (or --git / --projector) to use --caption / --prompt-from-caption"
                )
            for s in CAPTION_STAGES:
                self.pipe.open_stage(s)
            self._captioner = Captioner(self.pipe.constants, self._run)
        if req.needs_text and self._prompts is None:
            if TEXT_STAGE not in have:
                raise ManifestError(f"{self.pipe.folder} has no {TEXT_STAGE} stage: export the bundle again to use prompts")
            self.pipe.open_stage(TEXT_STAGE)
            self._prompts = PromptEncoder(self.pipe.constants, lambda feeds: self._run(TEXT_STAGE, feeds))

    def run(self, req: RunOptions, eeg_embeds: np.ndarray, seeds, indices,
            timings: dict[str, float]) -> tuple[list[list[int]] | None, tuple[np.ndarray, np.ndarray] | None]:
        """One chunk: (caption token ids, (prompt_embeds, pooled)), None for what ``req`` does not ask."""
        ids = text = None
        if req.needs_caption:
            t0 = time.perf_counter()
            embeds = self.pipe.prior(eeg_embeds, seeds, indices, steps=req.caption_prior_steps, guidance=req.guidance,
                                     sampler="ddpm", purpose="caption_prior")
            ids = self._captioner.token_ids(embeds)
            timings["caption"] = timings.get("caption", 0.0) + (time.perf_counter() - t0) * 1e3
        if req.needs_text:
            t0 = time.perf_counter()
            text = self._prompts(self.decode(ids) if req.prompt_from_caption else [req.prompt] * len(eeg_embeds))
            timings["text_encoder"] = timings.get("text_encoder", 0.0) + (time.perf_counter() - t0) * 1e3
        return ids, text

    def decode(self, ids: list[list[int]]) -> list[str]:
        return self._captioner.decode(ids)
