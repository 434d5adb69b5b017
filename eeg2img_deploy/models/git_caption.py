"""GIT (``microsoft/git-large-coco``) fed the projector's 257 tokens instead of an image: the paper's captioner.

The paper subclasses GIT so that ``forward`` takes the ``(B, 257, 1024)`` tokens as the image
encoder's output (``Generation/modeling_git.py``): GIT's own ViT never runs, its ``visual_projection``
(Linear 1024 -> 768 + LayerNorm) and text decoder do. Here the image encoder is swapped for a
pass-through, so transformers' own ``generate`` (the model's default decoding: greedy) is the reference.
Loading never touches the network (``local_files_only``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import WeightsNotFoundError

if TYPE_CHECKING:
    from transformers import GitForCausalLM, PreTrainedTokenizerBase

MAX_NEW_TOKENS = 25  # the paper's generate(..., max_new_tokens=25)


class _TokensAsImageFeatures(nn.Module):
    """Stands in for GIT's image encoder: its input already is the visual features, ``(B, 1, N, 1024)``.

    GIT only accepts a 4-D or 5-D ``pixel_values``, so the tokens travel with a singleton axis.
    """

    @dataclass
    class Output:
        last_hidden_state: torch.Tensor

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False):
        return self.Output(pixel_values[:, 0])


@dataclass
class GitCaptioner:
    model: GitForCausalLM  # with a pass-through image encoder
    tokenizer: PreTrainedTokenizerBase  # the folder's BERT tokenizer (transformers, tokenizers-backed)

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> GitCaptioner:
        from transformers import AutoTokenizer, GitForCausalLM

        from ..quiet import quiet

        try:
            with quiet(bars=True):
                model = GitForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as e:
            raise WeightsNotFoundError(f"cannot load GIT (microsoft/git-large-coco) from {folder}: {e} (check --git)") from e
        # GIT's image encoder swapped for the pass-through (not a GitVisionModel: set, not assigned), never run:
        # frees ViT-L's 300 M parameters
        setattr(model.git, "image_encoder", _TokensAsImageFeatures())
        # transformers wraps PreTrainedModel.to in functools.wraps(nn.Module.to): typeshed's _Wrapped drops `self`
        return cls(model.to(device).eval(), tokenizer)  # type: ignore[arg-type]

    @property
    def config(self):
        return self.model.config

    def generate_ids(self, visual_tokens: torch.Tensor, max_new_tokens: int = MAX_NEW_TOKENS) -> list[list[int]]:
        """Greedy token ids per sample, BOS excluded, up to and including EOS: one ``generate`` per sample, as the paper."""
        out = []
        eos = self.config.eos_token_id
        with torch.no_grad():
            for i in range(visual_tokens.shape[0]):
                # transformers types generate's self as its GenerativePreTrainedModel protocol, which its own
                # GitForCausalLM does not satisfy for mypy
                ids = self.model.generate(pixel_values=visual_tokens[i : i + 1, None].float(),  # type: ignore[misc]
                                          max_new_tokens=max_new_tokens)
                seq = ids[0, 1:].tolist()
                out.append(seq[: seq.index(eos) + 1] if eos in seq else seq)
        return out

    def decode(self, ids: list[list[int]]) -> list[str]:
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)
