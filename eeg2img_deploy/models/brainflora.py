"""BrainFLORA's reconstruction encoder: the ``UnifiedEncoder``'s EEG tower and its shared MoE projection.

BrainFLORA (ACM MM 2025, ``ncclab-sustech/BrainFLORA``) trains one ``UnifiedEncoder`` with an EEG, a MEG
and an fMRI tower (``model/medformer_encoders.py``) feeding one soft-routed mixture-of-experts projection
(``model/unified_encoder_multi_tower.py``); its output is the (unnormalised) open_clip ViT-H-14 image
embedding that the paper's diffusion prior reads. Reconstructing from EEG runs the EEG tower and
``moe_projection`` only. Module names mirror the original, so the keys are the checkpoint's own:
``encoder.eeg.*``, ``moe_projection.*``, ``logit_scale``.

The EEG tower (``eeg_encoder``) is a Medformer: three patchings of the (B, 63, 250) trial (patch
lengths 2, 4, 8, each a Conv2d over all channels after padding the end by one stride with copies of the
last sample) give 126 + 63 + 32 tokens of width 250; per patching, self-attention, and across patchings,
attention among each patching's last token (its "router"); one post-norm layer, a LayerNorm over the 221
tokens, GELU; then the ShallowNet conv head and the ATM projection head. It ignores subject ids.

Only the evaluation path is written here: the original's per-patch augmentation (picked with Python's
``random.randint`` on every call) is the identity in eval mode, and dropout is off. Unused parts kept for
strict loading: Medformer's classification head ``encoder.projection``, ``subject_wise_linear``, both
``logit_scale``. The attention heads (4) are not in the keys: BrainFLORA's ``MedformerConfig`` fixes them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .blocks import PostNormBlock, SelfAttention, ShallowPatches, projection_head, sinusoidal_table

PE_MAX_LEN = 5000
TOWER = "eeg"  # the UnifiedEncoder tower this module runs (its towers: eeg, meg, fmri)
# BrainFLORA's reconstruction settings (eval/FLORA_inference_reconst.py's defaults): 10 prior steps, the prior's
# guidance 2.0 (the script passes --image-guidance-scale to the prior's CFG), 4 SDXL-Turbo steps. Its IP-Adapter
# scale 1 and empty prompt are the toolkit's defaults already. Bundles record them; runs take them unless given.
RECONSTRUCTION = {"prior_steps": 10, "guidance": 2.0, "steps": 4, "source": "BrainFLORA eval/FLORA_inference_reconst.py"}


@dataclass(frozen=True)
class BrainFloraArchitecture:
    """The sizes of one Medformer tower plus the MoE projection; defaults: the published EEG model."""

    channels: int = 63  # enc_in: the patch convs span all channels
    samples: int = 250  # seq_len: not in the keys (250 and 251 give the same shapes): the EEG spec's
    d_model: int = 250
    d_ff: int = 256
    n_heads: int = 4  # not in the keys: MedformerConfig's
    layers: int = 1  # e_layers
    patch_lens: tuple[int, ...] = (2, 4, 8)  # each patching's length and stride
    num_class: int = 250  # Medformer's classification head (unused: the tower returns features)
    num_subject_linears: int = 10  # subject_wise_linear entries (unused in forward)
    emb_size: int = 40  # the conv head's output channels
    embed_dim: int = 1024  # proj_eeg's output = the MoE's input and output
    num_experts: int = 5

    @property
    def patch_counts(self) -> tuple[int, ...]:
        """Tokens per patching: the end is padded by one stride, so floor(T / p) + 1."""
        return tuple(self.samples // p + 1 for p in self.patch_lens)

    @property
    def tokens(self) -> int:
        return sum(self.patch_counts)

    @property
    def head_features(self) -> int:
        """proj_eeg's input: the conv head runs along d_model (250 -> 36 patches x 40)."""
        return ShallowPatches.patches(self.d_model) * self.emb_size

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "patch_lens": list(self.patch_lens)}


class _PatchEmbedding(nn.Module):
    """(B, C, T) -> one (B, T // p + 1, d_model) token sequence per patch length p."""

    def __init__(self, arch: BrainFloraArchitecture):
        super().__init__()
        self.strides = arch.patch_lens
        self.value_embeddings = nn.ModuleList(_TokenConv(arch.channels, p, arch.d_model) for p in arch.patch_lens)
        self.position_embedding = _PositionTable(arch.d_model)
        self.learnable_embeddings = nn.ParameterList(nn.Parameter(torch.randn(1, arch.d_model)) for _ in arch.patch_lens)

    def forward(self, eeg: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for stride, conv, learned in zip(self.strides, self.value_embeddings, self.learnable_embeddings):
            # ReplicationPad1d((0, stride)) as a Tile of the last sample: Slice/Tile/Concat export anywhere
            padded = torch.cat([eeg, eeg[..., -1:].repeat(1, 1, stride)], dim=-1)
            x = conv(padded.unsqueeze(1)).squeeze(2).transpose(1, 2)  # (B, patches, d_model)
            out.append(x + learned + self.position_embedding.pe[:, : x.shape[1]])
        return out


class _TokenConv(nn.Module):
    def __init__(self, channels: int, patch: int, d_model: int):
        super().__init__()
        self.tokenConv = nn.Conv2d(1, d_model, (channels, patch), stride=(1, patch), bias=False)
        nn.init.kaiming_normal_(self.tokenConv.weight, mode="fan_in", nonlinearity="leaky_relu")  # as the original

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokenConv(x)


class _PositionTable(nn.Module):
    pe: torch.Tensor  # a buffer: saved with the weights, not trained

    def __init__(self, d_model: int):
        super().__init__()
        self.register_buffer("pe", sinusoidal_table(PE_MAX_LEN, d_model))


class _MultiScaleAttention(nn.Module):
    """Medformer's attention: within each patching, then among the patchings' last tokens."""

    def __init__(self, arch: BrainFloraArchitecture):
        super().__init__()
        n = len(arch.patch_lens)
        self.intra_attentions = nn.ModuleList(SelfAttention(arch.d_model, arch.n_heads) for _ in range(n))
        self.inter_attention = SelfAttention(arch.d_model, arch.n_heads) if n > 1 else None

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        intra = [attention(x) for attention, x in zip(self.intra_attentions, xs)]
        if self.inter_attention is None:
            return intra
        routers = self.inter_attention(torch.cat([x[:, -1:] for x in intra], dim=1))  # (B, patchings, d_model)
        return [torch.cat([x[:, :-1], routers[:, i : i + 1]], dim=1) for i, x in enumerate(intra)]


class _MedformerLayer(PostNormBlock):
    """The post-norm layer over every patching's tokens at once (its attention mixes them)."""

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.block(x, a) for x, a in zip(xs, self.attention(xs))]


class _MedformerStack(nn.Module):
    def __init__(self, arch: BrainFloraArchitecture):
        super().__init__()
        self.attn_layers = nn.ModuleList(
            _MedformerLayer(_MultiScaleAttention(arch), arch.d_model, arch.d_ff) for _ in range(arch.layers)
        )
        self.norm = nn.LayerNorm(arch.d_model)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        for layer in self.attn_layers:
            xs = layer(xs)
        return self.norm(torch.cat(xs, dim=1))  # (B, tokens, d_model)


class _Medformer(nn.Module):
    def __init__(self, arch: BrainFloraArchitecture):
        super().__init__()
        self.enc_embedding = _PatchEmbedding(arch)
        self.encoder = _MedformerStack(arch)
        self.projection = nn.Linear(arch.d_model * arch.tokens, arch.num_class)  # unused: kept for strict loading

    def forward(self, eeg: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.encoder(self.enc_embedding(eeg)))


class MedformerTower(nn.Module):
    """One ``UnifiedEncoder`` tower: (B, C, T) -> (B, embed_dim); keys as ``encoder.<tower>.*`` without the prefix."""

    def __init__(self, arch: BrainFloraArchitecture):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # unused in forward
        self.encoder = _Medformer(arch)
        self.subject_wise_linear = nn.ModuleList(nn.Linear(arch.d_model, 250) for _ in range(arch.num_subject_linears))
        self.enc_eeg = nn.Sequential(ShallowPatches(arch.tokens, arch.emb_size))
        self.proj_eeg = projection_head(arch.head_features, arch.embed_dim)

    def forward(self, eeg: torch.Tensor) -> torch.Tensor:
        return self.proj_eeg(self.enc_eeg(self.encoder(eeg)).flatten(1))


class SoftMoEProjection(nn.Module):
    """``MoEProjection``: each expert's output weighted by its router sigmoid, the weights summing to one."""

    def __init__(self, dim: int, num_experts: int):
        super().__init__()
        self.num_experts = num_experts
        self.experts = nn.Linear(dim, dim * num_experts)
        self.router = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, num_experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.router(x).sigmoid()
        experts = self.experts(x).unflatten(-1, (self.num_experts, -1))  # (B, experts, dim)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        return (experts * weights.unsqueeze(-1)).sum(dim=1)


class BrainFloraEncoder(nn.Module):
    """``forward(eeg (B, 63, 250) float32, subject_ids (B,) int64, ignored) -> (B, 1024)``, not normalised."""

    def __init__(self, arch: BrainFloraArchitecture = BrainFloraArchitecture()):
        super().__init__()
        self.arch = arch
        self.moe_projection = SoftMoEProjection(arch.embed_dim, arch.num_experts)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # unused in forward
        self.encoder = nn.ModuleDict({TOWER: MedformerTower(arch)})

    def forward(self, eeg: torch.Tensor, subject_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.moe_projection(self.encoder[TOWER](eeg))
