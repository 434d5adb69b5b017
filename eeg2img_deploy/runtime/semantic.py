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
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..core.options import RunOptions
from ..errors import ManifestError, SettingsError
from ..manifest import Manifest
from ..names import CAPTION_STAGES, Stage
from .captioner import Captioner
from .prompts import PromptEncoder

TEXT_STAGE = Stage.TEXT_ENCODERS


class _Pipeline(Protocol):
    """What the semantic level uses of its :class:`~.pipeline.Pipeline` (which imports this module)."""

    manifest: Manifest
    folder: Path
    constants: dict[str, np.ndarray]

    def open_stage(self, stage: str) -> None: ...

    def run_stage(self, stage: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def prior(self, eeg_embeds: Any, seed: int | np.ndarray, first: int | np.ndarray, *, steps: int, guidance: float,
              sampler: str, purpose: str = "prior", graph: str | None = None, keep: bool = False) -> Any: ...


class Semantic:
    """Bound to a :class:`~.pipeline.Pipeline`; its sessions live in the pipeline's (and close with it)."""

    def __init__(self, pipeline: _Pipeline):
        self.pipe = pipeline
        self._captioner: Captioner | None = None
        self._prompts: PromptEncoder | None = None

    @property
    def captioner(self) -> Captioner:
        if self._captioner is None:
            raise SettingsError("the caption stages are not open: Semantic.prepare(options asking for captions) first")
        return self._captioner

    @property
    def prompts(self) -> PromptEncoder:
        if self._prompts is None:
            raise SettingsError("the text encoders are not open: Semantic.prepare(options with a prompt) first")
        return self._prompts

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

    def run(self, req: RunOptions, eeg_embeds: np.ndarray, seeds: np.ndarray, indices: np.ndarray,
            timings: dict[str, float]) -> tuple[list[list[int]] | None, tuple[np.ndarray, np.ndarray] | None]:
        """One chunk: (caption token ids, (prompt_embeds, pooled)), None for what ``req`` does not ask."""
        ids: list[list[int]] | None = None
        text = None
        if req.needs_caption:
            t0 = time.perf_counter()
            embeds = self.pipe.prior(eeg_embeds, seeds, indices, steps=req.caption_prior_steps,
                                     guidance=req.resolved().guidance, sampler="ddpm", purpose="caption_prior")
            ids = self.captioner.token_ids(embeds)
            timings["caption"] = timings.get("caption", 0.0) + (time.perf_counter() - t0) * 1e3
        if req.needs_text:
            t0 = time.perf_counter()
            if req.prompt is not None:
                prompts = [req.prompt] * len(eeg_embeds)
            else:  # --prompt-from-caption asks for captions: the ids are made above
                assert ids is not None
                prompts = self.decode(ids)
            text = self.prompts(prompts)
            timings["text_encoder"] = timings.get("text_encoder", 0.0) + (time.perf_counter() - t0) * 1e3
        return ids, text

    def decode(self, ids: list[list[int]]) -> list[str]:
        return self.captioner.decode(ids)
