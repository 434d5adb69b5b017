"""Layers the ATM and BrainFLORA encoders share; attribute names follow the originals' state-dict keys.

Both come from the same lineage (Time-Series-Library transformers, a ShallowNet-style conv head, the
ATM projection head), so these blocks carry the keys of both: ``{query,key,value,out}_projection``,
``conv1/conv2/norm1/norm2``, ``tsconv.{0,2,4,5}``, ``projection.0``, ``0 / 1.fn.1 / 2``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """The classic Transformer table (sin on even, cos on odd features), shape (1, length, dim)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)
    return table.unsqueeze(0)


class Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fn(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention as plain MatMul + Softmax (the originals use einsum: same numbers, and
    MatMul is what every ONNX consumer fuses). The head size floors: d_model 250 and 4 heads project to 248."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.25):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        inner = n_heads * self.head_dim
        self.query_projection = nn.Linear(d_model, inner)
        self.key_projection = nn.Linear(d_model, inner)
        self.value_projection = nn.Linear(d_model, inner)
        self.out_projection = nn.Linear(inner, d_model)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.n_heads, self.head_dim)).transpose(1, 2)  # (B, H, L, E)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self._heads(self.query_projection(x))
        k = self._heads(self.key_projection(x))
        v = self._heads(self.value_projection(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        weights = self.dropout(torch.softmax(scores, dim=-1))
        out = torch.matmul(weights, v).transpose(1, 2).flatten(2)  # (B, L, H*E)
        return self.out_projection(out)


class PostNormBlock(nn.Module):
    """The weights and the arithmetic of a post-norm layer (:meth:`block`); subclasses say what ``forward`` takes."""

    def __init__(self, attention: nn.Module, d_model: int, d_ff: int, dropout: float = 0.25):
        super().__init__()
        self.attention = attention
        self.conv1 = nn.Conv1d(d_model, d_ff, kernel_size=1)
        self.conv2 = nn.Conv1d(d_ff, d_model, kernel_size=1)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def block(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """The layer after its attention: ``attended`` is the attention's output for ``x``."""
        x = self.norm1(x + self.dropout(attended))
        y = self.dropout(F.gelu(self.conv1(x.transpose(1, 2))))
        y = self.dropout(self.conv2(y)).transpose(1, 2)
        return self.norm2(x + y)


class PostNormLayer(PostNormBlock):
    """x = norm1(x + attention(x)); x = norm2(x + ffn(x)), the FFN as 1x1 convs with GELU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x, self.attention(x))


class ShallowPatches(nn.Module):
    """ShallowNet-style temporal then spatial convs over (B, tokens, features) -> (B, patches, 40).

    The spatial conv spans all ``spatial_kernel`` tokens; the temporal conv (25) and pooling (51, stride 5)
    run along the features: 250 features give 36 patches.
    """

    def __init__(self, spatial_kernel: int, emb_size: int = 40):
        super().__init__()
        self.tsconv = nn.Sequential(
            nn.Conv2d(1, 40, (1, 25)),
            nn.AvgPool2d((1, 51), (1, 5)),
            nn.BatchNorm2d(40),
            nn.ELU(),
            nn.Conv2d(40, 40, (spatial_kernel, 1)),
            nn.BatchNorm2d(40),
            nn.ELU(),
            nn.Dropout(0.5),
        )
        self.projection = nn.Sequential(nn.Conv2d(40, emb_size, (1, 1)))

    @staticmethod
    def patches(features: int) -> int:
        return (features - 25 + 1 - 51) // 5 + 1

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.projection(self.tsconv(tokens.unsqueeze(1)))  # (B, emb, 1, patches)
        return x.flatten(2).transpose(1, 2)  # 'b e h w -> b (h w) e'


def projection_head(in_features: int, out_features: int = 1024) -> nn.Sequential:
    """Linear, a GELU-Linear residual, LayerNorm: keys ``0``, ``1.fn.1``, ``2``."""
    return nn.Sequential(
        nn.Linear(in_features, out_features),
        Residual(nn.Sequential(nn.GELU(), nn.Linear(out_features, out_features), nn.Dropout(0.5))),
        nn.LayerNorm(out_features),
    )
