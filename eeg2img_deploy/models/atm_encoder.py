"""The paper's ATM-S EEG encoder: (B, 63, 250) EEG + subject ids -> (B, 1024) CLIP-space embedding.

Module and attribute names mirror the paper's ``ATMS`` so that ``state_dict`` keys match its
checkpoints one to one (``encoder.enc_embedding.*``, ``enc_eeg.0.tsconv.*``, ...). Parts that
the forward never uses (the positional/temporal tables, mask tokens, ``subject_wise_linear``,
``logit_scale``) are kept because every checkpoint holds them and loading is strict.

Forward path: each channel is a token (its 250 time samples are the features), a subject token is
prepended, one post-norm transformer layer mixes the 64 tokens, 63 of them are kept, and a
ShallowNet-style conv head plus an MLP project them to 1024 dims.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..names import EncoderVariant  # noqa: F401 (re-exported: the encoder's settings)
from .blocks import PostNormLayer, SelfAttention, ShallowPatches, projection_head, sinusoidal_table

NUM_CHANNELS = 63
NUM_SAMPLES = 250
D_MODEL = 250
N_HEADS = 4  # head size 250 // 4 = 62: the paper floors, so q/k/v project to 248, not 250
D_FF = 256
EMBED_DIM = 1024
PE_MAX_LEN = 5000

class _PositionTable(nn.Module):
    pe: torch.Tensor  # a buffer: saved with the weights, not trained

    def __init__(self):
        super().__init__()
        self.register_buffer("pe", sinusoidal_table(PE_MAX_LEN, D_MODEL))


class _TimeFeatures(nn.Module):
    """Never called (no time marks are passed); holds ``embed.weight`` [250, 4] for strict loading."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, D_MODEL, bias=False)


class _SubjectTokens(nn.Module):
    """One learned token per subject id, plus a shared token for ids outside the table."""

    def __init__(self, num_subjects: int):
        super().__init__()
        self.subject_embedding = nn.Embedding(num_subjects, D_MODEL)
        self.shared_embedding = nn.Parameter(torch.randn(1, D_MODEL))
        self.mask_embedding = nn.Parameter(torch.randn(1, D_MODEL))  # unused in forward

    def forward(self, subject_ids: torch.Tensor) -> torch.Tensor:
        # Per sample, with no branch on tensor values, so it traces and exports with a dynamic
        # batch. (The original switches the whole batch to the shared token if any id is out of
        # range; both agree whenever a batch does not mix known and unknown ids.)
        num_subjects = self.subject_embedding.num_embeddings
        known = (subject_ids >= 0) & (subject_ids < num_subjects)
        rows = self.subject_embedding(subject_ids.clamp(0, num_subjects - 1))
        tokens = torch.where(known.unsqueeze(-1), rows, self.shared_embedding)
        return tokens.unsqueeze(1)  # (B, 1, 250)


class _TokenEmbedding(nn.Module):
    def __init__(self, num_subjects: int, variant: EncoderVariant):
        super().__init__()
        self.variant = variant
        self.value_embedding = nn.Linear(NUM_SAMPLES, D_MODEL)
        self.position_embedding = _PositionTable()
        self.temporal_embedding = _TimeFeatures()
        self.subject_embedding = _SubjectTokens(num_subjects)
        self.mask_token = nn.Parameter(torch.randn(1, D_MODEL))  # unused in forward
        self.dropout = nn.Dropout(0.25)

    def forward(self, eeg: torch.Tensor, subject_ids: torch.Tensor) -> torch.Tensor:
        x = self.value_embedding(eeg)  # (B, 63, 250): one token per channel
        if self.variant.positional_embedding:
            x = x + self.position_embedding.pe[:, : x.shape[1]]
        x = torch.cat([self.subject_embedding(subject_ids), x], dim=1)  # (B, 64, 250)
        return self.dropout(x)


class _EncoderStack(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn_layers = nn.ModuleList([PostNormLayer(SelfAttention(D_MODEL, N_HEADS), D_MODEL, D_FF)])
        self.norm = nn.LayerNorm(D_MODEL)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.attn_layers:
            x = layer(x)
        return self.norm(x)


class _ChannelTransformer(nn.Module):
    """The paper's ``iTransformer``: (B, 63, 250) -> all 64 tokens (B, 64, 250), subject first."""

    def __init__(self, num_subjects: int, variant: EncoderVariant):
        super().__init__()
        self.enc_embedding = _TokenEmbedding(num_subjects, variant)
        self.encoder = _EncoderStack()

    def forward(self, eeg: torch.Tensor, subject_ids: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.enc_embedding(eeg, subject_ids))


class ATMEncoder(nn.Module):
    """ATM-S: ``forward(eeg (B, 63, 250) float32, subject_ids (B,) int64) -> (B, 1024)``.

    ``num_subjects`` is 10 for paper-era checkpoints and 2 for refactor ones; ``num_subject_linears``
    is 1 (notebooks) or 2 (scripts, refactor). Ids index the subject table directly (sub-08 -> row
    8); ids outside ``[0, num_subjects)`` get the shared token. The output is not L2-normalised.
    """

    def __init__(
        self,
        num_subjects: int = 10,
        num_subject_linears: int = 2,
        config: EncoderVariant = EncoderVariant(),
    ):
        super().__init__()
        if num_subjects < 1 or num_subject_linears < 1:
            raise ValueError(
                f"num_subjects and num_subject_linears must be >= 1, got {num_subjects}, {num_subject_linears}"
            )
        self.config = config
        self.num_subjects = num_subjects
        self.encoder = _ChannelTransformer(num_subjects, config)
        self.subject_wise_linear = nn.ModuleList(
            [nn.Linear(D_MODEL, NUM_SAMPLES) for _ in range(num_subject_linears)]
        )
        self.enc_eeg = nn.Sequential(ShallowPatches(NUM_CHANNELS))
        self.proj_eeg = projection_head(ShallowPatches.patches(D_MODEL) * 40, EMBED_DIM)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def kept_tokens(self, eeg: torch.Tensor, subject_ids: torch.Tensor) -> torch.Tensor:
        """The 63 transformer tokens the conv head sees, per ``config.token_slice``."""
        tokens = self.encoder(eeg, subject_ids)  # (B, 64, 250), subject token first
        if self.config.token_slice == "paper":
            return tokens[:, :NUM_CHANNELS]
        return tokens[:, 1:]

    def forward(self, eeg: torch.Tensor, subject_ids: torch.Tensor) -> torch.Tensor:
        features = self.enc_eeg(self.kept_tokens(eeg, subject_ids)).flatten(1)  # (B, 1440)
        return self.proj_eeg(features)
