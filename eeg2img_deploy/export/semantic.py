"""What the semantic level adds to a bundle: its stages, its tokenizers and ids, its cache axis.

Stages: ``text_encoders`` always (any prompt, encoded at run time); ``projector``, ``caption_prefill``
and ``caption_decoder`` when the weights have GIT and the PixelProjector. The tokenizers travel in
``constants.safetensors`` as the UTF-8 bytes of the tokenizer.json that transformers' fast
tokenizers write, so they are hashed and copied with the constants, and the runtime reads them with
the ``tokenizers`` package alone. Empty-prompt runs never touch any of this.
"""

from __future__ import annotations

import copy

import numpy as np

from ..manifest import AxisRange
from ..models.git_caption import MAX_NEW_TOKENS
from ..models.load import LoadedModels
from .spec import StageExport


def _json_bytes(tokenizer) -> np.ndarray:
    return np.frombuffer(tokenizer.backend_tokenizer.to_str().encode("utf-8"), np.uint8).copy()


def semantic_stages(models: LoadedModels) -> list[StageExport]:
    from .text_encoders import text_encoders_stage

    stages = [text_encoders_stage(models.sdxl)]
    if models.captioner is not None:
        from .caption import caption_decoder_stage, caption_prefill_stage, projector_stage

        n = models.projector.tokens
        git = models.captioner.model
        # Each stage gets its own copy of GIT: export halves a stage's module for its fp16 graph and casts it
        # back, which would leave the next stage sharing the modules with fp16-rounded weights.
        stages += [projector_stage(models.projector), caption_prefill_stage(copy.deepcopy(git), n),
                   caption_decoder_stage(copy.deepcopy(git), n)]
    return stages


def semantic_constants(models: LoadedModels) -> dict[str, np.ndarray]:
    pipe = models.sdxl
    out = {
        "tokenizer_clip_json": _json_bytes(pipe.tokenizer),
        "tokenizer_clip_2_json": _json_bytes(pipe.tokenizer_2),
        # per tokenizer: max length, pad id (CLIP-L pads with its EOS, bigG with "!")
        "text_token_settings": np.array([[pipe.tokenizer.model_max_length, pipe.tokenizer.pad_token_id],
                                         [pipe.tokenizer_2.model_max_length, pipe.tokenizer_2.pad_token_id]], np.int64),
    }
    if models.captioner is not None:
        cfg = models.captioner.config
        out["tokenizer_git_json"] = _json_bytes(models.captioner.tokenizer)
        # BOS, EOS, PAD, visual tokens, max new tokens (the paper's 25)
        out["caption_settings"] = np.array([cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id, models.projector.tokens,
                                            MAX_NEW_TOKENS],
                                           np.int64)
    return out


def semantic_axes(models: LoadedModels) -> dict[str, AxisRange]:
    if models.captioner is None:
        return {}
    from .caption import caption_axes

    return caption_axes(models.projector.tokens)
