"""Export specs of the captioner: the PixelProjector, and GIT's text decoder split for a KV cache.

GIT's visual tokens attend only to each other (the text never changes them), so their keys and
values in every layer are fixed once the image is known: ``caption_prefill`` computes them once
(``visual_projection`` and the decoder layers over the visual tokens). ``caption_decoder`` then runs
one text token per call against the cache and returns its next-token logits and the cache grown by
that token, so the 257 visual tokens go through the decoder once, not once per generated token.

The graphs are written against transformers' GIT modules (their Linear and LayerNorm weights, in
GIT's post-norm order) as plain tensor code, so torch.onnx traces them without transformers' Cache
objects; ``tests/export/test_caption_export.py`` holds them to ``GitForCausalLM``'s own logits.
Optimum's ONNX exporter has no GIT support, hence torch.onnx directly.

Cache layout: one tensor ``(2 * layers, B, heads, P, head_dim)``, keys of layer i at ``2i``, values
at ``2i + 1``; ``P`` = visual tokens + text tokens so far.
"""

from __future__ import annotations

import math

import numpy as np

from ..manifest import AxisRange, TensorSpec
from .spec import StageExport

# Cache lengths exported and validated: the visual tokens plus up to this many text tokens (BOS + 25 new).
MAX_TEXT_TOKENS = 32


def git_parts(git_model):
    import torch

    class GitParts(torch.nn.Module):
        """Holds GIT's modules (shared, not copied) and runs its layers on plain tensors."""

        def __init__(self):
            super().__init__()
            self.git = git_model.git
            self.lm_head = git_model.output
            cfg = git_model.config
            self.heads = cfg.num_attention_heads
            self.head_dim = cfg.hidden_size // cfg.num_attention_heads

        def split(self, x):  # (B, T, H*D) -> (B, H, T, D)
            return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

        def layer(self, layer, x, past_k=None, past_v=None, mask=None):
            """One GIT layer; ``mask`` (additive, over keys) only for full-sequence use (benchmarks/caption_kv_cache.py)."""
            attn = layer.attention.self
            q, k, v = self.split(attn.query(x)), self.split(attn.key(x)), self.split(attn.value(x))
            if past_k is not None:
                k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            if mask is not None:
                scores = scores + mask
            ctx = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(x.shape)
            a = layer.attention.output(ctx, x)  # dense, residual, LayerNorm
            return layer.output(layer.intermediate(a), a), k, v

    return GitParts()


def _prefill_module(git_model):
    import torch

    parts = git_parts(git_model)

    class CaptionPrefill(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.parts = parts

        def forward(self, visual_tokens):
            x = self.parts.git.visual_projection(visual_tokens)
            cache = []
            for layer in self.parts.git.encoder.layer:  # visual tokens attend to each other only: no mask
                x, k, v = self.parts.layer(layer, x)
                cache += [k, v]
            return torch.stack(cache)

    return CaptionPrefill().eval()


def _decoder_module(git_model):
    import torch

    parts = git_parts(git_model)

    class CaptionDecoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.parts = parts

        def forward(self, input_ids, position_ids, past_kv):
            emb = self.parts.git.embeddings
            x = emb.LayerNorm(emb.word_embeddings(input_ids) + emb.position_embeddings(position_ids))
            cache = []
            for i, layer in enumerate(self.parts.git.encoder.layer):  # the newest token sees everything before it
                x, k, v = self.parts.layer(layer, x, past_kv[2 * i], past_kv[2 * i + 1])
                cache += [k, v]
            return self.parts.lm_head(x[:, -1]), torch.stack(cache)

    return CaptionDecoder().eval()


def git_shapes(git_model) -> dict[str, int]:
    cfg = git_model.config
    return {
        "layers2": 2 * cfg.num_hidden_layers,
        "heads": cfg.num_attention_heads,
        "head_dim": cfg.hidden_size // cfg.num_attention_heads,
        "vocab": cfg.vocab_size,
        "visual_dim": cfg.vision_config.hidden_size,
    }


def projector_stage(projector) -> StageExport:
    import torch

    class FromImageEmbeds(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.projector = projector

        def forward(self, image_embeds):
            return self.projector(image_embeds[:, None, :])

    return StageExport(
        name="projector",
        module=FromImageEmbeds().eval(),
        inputs=(TensorSpec("image_embeds", "float32", ("batch", 1024)),),
        outputs=(TensorSpec("visual_tokens", "float32", ("batch", projector.tokens, 1024)),),
        # the prior's outputs lie in [-1, 1] (clip_sample)
        make_inputs=lambda batch, rng: {"image_embeds": rng.uniform(-1, 1, size=(batch, 1024)).astype(np.float32)},
    )


def caption_prefill_stage(git_model, visual_tokens: int) -> StageExport:
    s = git_shapes(git_model)
    return StageExport(
        name="caption_prefill",
        module=_prefill_module(git_model),
        inputs=(TensorSpec("visual_tokens", "float32", ("batch", visual_tokens, s["visual_dim"])),),
        outputs=(TensorSpec("visual_kv", "float32", (s["layers2"], "batch", s["heads"], visual_tokens, s["head_dim"])),),
        make_inputs=lambda batch, rng: {
            "visual_tokens": rng.standard_normal((batch, visual_tokens, s["visual_dim"]), dtype=np.float32)
        },
    )


def caption_decoder_stage(git_model, visual_tokens: int) -> StageExport:
    s = git_shapes(git_model)

    def make_inputs(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        text = int(rng.integers(0, MAX_TEXT_TOKENS))
        return {
            "input_ids": rng.integers(0, s["vocab"], size=(batch, 1)).astype(np.int64),
            "position_ids": np.full((batch, 1), text, np.int64),
            "past_kv": rng.standard_normal((s["layers2"], batch, s["heads"], visual_tokens + text, s["head_dim"]),
                                           dtype=np.float32),
        }

    return StageExport(
        name="caption_decoder",
        module=_decoder_module(git_model),
        inputs=(
            TensorSpec("input_ids", "int64", ("batch", 1)),
            TensorSpec("position_ids", "int64", ("batch", 1)),
            TensorSpec("past_kv", "float32", (s["layers2"], "batch", s["heads"], "past", s["head_dim"])),
        ),
        outputs=(
            TensorSpec("logits", "float32", ("batch", s["vocab"])),
            TensorSpec("present_kv", "float32", (s["layers2"], "batch", s["heads"], "present", s["head_dim"])),
        ),
        make_inputs=make_inputs,
    )


def caption_axes(visual_tokens: int) -> dict[str, AxisRange]:
    """The cache-length axis's range, for engines' shape profiles."""
    return {"past": AxisRange(visual_tokens, visual_tokens + 12, visual_tokens + MAX_TEXT_TOKENS)}
