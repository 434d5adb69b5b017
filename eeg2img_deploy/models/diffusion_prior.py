"""The paper's diffusion prior: an MLP U-Net predicting the noise on a 1024-d CLIP image embedding.

Names mirror the paper's ``DiffusionPriorUNet`` so ``state_dict`` keys match its checkpoints (86
entries, 9,675,648 parameters, no buffers). The time projection has no weights and is computed
here with plain torch ops so the module traces to ONNX.
"""

from __future__ import annotations

import math

import torch
from torch import nn

EMBED_DIM = 1024
HIDDEN_DIMS = (1024, 512, 256, 128, 64)
TIME_PROJ_DIM = 512


def timestep_features(t: torch.Tensor, dim: int = TIME_PROJ_DIM) -> torch.Tensor:
    """Sinusoidal features as diffusers' ``Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)``.

    Same op order as ``diffusers.models.embeddings.get_timestep_embedding`` so the values agree
    to float32 rounding; cos comes first because of ``flip_sin_to_cos``.
    """
    half = dim // 2
    exponent = -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    angles = t.float()[:, None] * torch.exp(exponent)[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class _TimeEmbedding(nn.Module):
    """diffusers' ``TimestepEmbedding`` layout: linear_1, SiLU, linear_2."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, out_dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


def _block(in_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim), nn.SiLU(), nn.Dropout(dropout))


class DiffusionPriorUNet(nn.Module):
    """``forward(x (B,1024), t (B,), c (B,1024) | None, cond_mask (B,) | None) -> eps (B,1024)``.

    ``cond_dim=1024, dropout=0.1`` are what the paper trained (its class defaults, 42 and 0.0,
    were never used). Dropout only matters in train mode.
    """

    def __init__(self, cond_dim: int = 1024, dropout: float = 0.1):
        super().__init__()
        self.cond_dim = cond_dim
        dims = HIDDEN_DIMS
        down = range(len(dims) - 1)  # 1024 -> 512 -> 256 -> 128 -> 64
        up = range(len(dims) - 1, 0, -1)  # 64 -> 128 -> 256 -> 512 -> 1024
        self.input_layer = nn.Sequential(nn.Linear(EMBED_DIM, dims[0]), nn.LayerNorm(dims[0]), nn.SiLU())
        self.encode_time_embedding = nn.ModuleList([_TimeEmbedding(TIME_PROJ_DIM, dims[i]) for i in down])
        self.encode_cond_embedding = nn.ModuleList([nn.Linear(cond_dim, dims[i]) for i in down])
        self.encode_layers = nn.ModuleList([_block(dims[i], dims[i + 1], dropout) for i in down])
        self.decode_time_embedding = nn.ModuleList([_TimeEmbedding(TIME_PROJ_DIM, dims[i]) for i in up])
        self.decode_cond_embedding = nn.ModuleList([nn.Linear(cond_dim, dims[i]) for i in up])
        self.decode_layers = nn.ModuleList([_block(dims[i], dims[i - 1], dropout) for i in up])
        self.output_layer = nn.Linear(dims[0], EMBED_DIM)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        c: torch.Tensor | None = None,
        cond_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.denoise(x, self.level_terms(self.time_terms(t, x.dtype), self.cond_terms(c, cond_mask)))

    # The parts of forward, separate so that a fused sampler can compute the time terms of its fixed timesteps
    # ahead, the condition terms once per sample, and their sums for all steps at once, not once per step.
    def time_terms(self, t: torch.Tensor, dtype: torch.dtype) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """What each encode/decode level adds for timestep ``t`` (B,) or (1,) (broadcast over the rows)."""
        # The sinusoid stays fp32 (t reaches 999: fp16 angles would lose the phase); the rest runs in dtype.
        time = timestep_features(t).to(dtype)
        return [emb(time) for emb in self.encode_time_embedding], [emb(time) for emb in self.decode_time_embedding]

    def cond_terms(
        self, c: torch.Tensor | None, cond_mask: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
        """What each level adds for condition ``c``; None for the paper's unconditional pass (``c=None``)."""
        if c is None:
            return None
        # Unconditional rows must get exact zero condition terms, as the paper samples: a zero
        # vector through the cond Linears would add their biases (~0.05 off). The mask multiplies
        # each cond Linear's output, so cond and uncond rows can share one batched call.
        mask = None if cond_mask is None else cond_mask.to(c.dtype)[:, None]

        def term(linear: nn.Module) -> torch.Tensor:
            out = linear(c)
            return out if mask is None else out * mask

        return [term(lin) for lin in self.encode_cond_embedding], [term(lin) for lin in self.decode_cond_embedding]

    @staticmethod
    def level_terms(time_terms, cond_terms) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """What each level adds to its input: its time term plus its condition term (None: the time term).

        Summed before they meet ``x`` (``x + (time + cond)``; the paper adds them to ``x`` one after the other,
        which rounds differently by a float32 ulp): a fused sampler then sums them for all its steps in one op
        and adds one tensor per level in each step, not two.
        """
        if cond_terms is None:
            return time_terms
        (enc_time, dec_time), (enc_cond, dec_cond) = time_terms, cond_terms
        return [t + c for t, c in zip(enc_time, enc_cond)], [t + c for t, c in zip(dec_time, dec_cond)]

    def denoise(self, x: torch.Tensor, level_terms) -> torch.Tensor:
        """The U-Net proper, given what each level adds (:meth:`level_terms`)."""
        enc_terms, dec_terms = level_terms
        x = self.input_layer(x)
        skips = []
        for term, layer in zip(enc_terms, self.encode_layers):
            skips.append(x)
            x = layer(x + term)
        for term, layer in zip(dec_terms, self.decode_layers):
            x = layer(x + term) + skips.pop()
        return self.output_layer(x)
