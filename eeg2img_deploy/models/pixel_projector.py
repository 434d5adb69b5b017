"""The paper's ``PixelProjector`` (``Generation/image_adapter.ipynb``): one CLIP image embedding -> 257 GIT tokens.

``(B, 1, 1024)`` -> swap the last two axes -> ``Linear(1, 257)`` (each of the 1024 features becomes a
257-long row) -> ``LayerNorm(257)`` -> swap back -> ``Linear(1024, 1024)`` -> ``LayerNorm(1024)``:
``(B, 257, 1024)``, what GIT's ViT-L image encoder would have produced for the image. The paper builds
it as an ``nn.Sequential`` with einops ``Rearrange`` at positions 0 and 3, so its state dict has the
keys ``1.*, 2.*, 4.*, 5.*``; the parameter-free swaps here keep those positions.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from .checkpoints import check_state_dict, load_state_dict_file

VISUAL_TOKENS = 257  # GIT-large's ViT-L/14 at 224 px: 16 x 16 patches + the class token
CLIP_DIM = 1024


class _SwapLastAxes(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class PixelProjector(nn.Sequential):
    def __init__(self, tokens: int = VISUAL_TOKENS, dim: int = CLIP_DIM):
        super().__init__(_SwapLastAxes(), nn.Linear(1, tokens), nn.LayerNorm(tokens), _SwapLastAxes(),
                         nn.Linear(dim, dim), nn.LayerNorm(dim))
        self.tokens = tokens


def load_projector(path: str | Path) -> PixelProjector:
    """Strict: the state dict must be exactly the paper's (``1.*, 2.*, 4.*, 5.*``), any token count."""
    path = Path(path)
    state = load_state_dict_file(path)
    if "1.weight" not in state or tuple(state["1.weight"].shape[1:]) != (1,):
        raise CheckpointError(
            f"{path.name} has no '1.weight' of shape [tokens, 1]: it is not a PixelProjector state dict "
            "(PixelProjector_best.bin from the paper's image_adapter notebook); check --projector"
        )
    model = PixelProjector(tokens=int(state["1.weight"].shape[0]))
    check_state_dict(model, {k: v.float() for k, v in state.items()}, f"PixelProjector checkpoint {path.name}")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)  # the paper saved bfloat16
    return model.eval()
