"""The paper's low-level EEG encoder: (B, 63, 250) EEG -> an SDXL VAE latent (B, 4, 64, 64).

A Linear over time (250 -> 128 per channel) gives 63 x 128 = 8064 features, viewed as an 8064-channel
1x1 image; six ConvTranspose2d(k=4, s=2, p=1) with BatchNorm + ReLU double it to 64x64
(8064 -> 1024 -> 512 -> 256 -> 128 -> 64 -> 32), then 1x1 ConvTranspose2d layers map 32 channels to 4.

Two checkpoint generations, with different keys (both load strictly):

- paper era (``Generation/train_vae_latent_512_low_level_no_average.py``, ``{epoch}.pth``):
  ``subject_wise_linear.N.*``, a 32 -> 16 (BN, ReLU) -> 4 head: ``upsampler.0..21``;
- 2025 refactor (``train_lowlevel.py``, ``best_encoder.pth``): ``subject_linear.N.*``, a direct
  32 -> 4 head: ``upsampler.0..18``; a Dropout(0.5) after the Linear (identity in eval). Its class keeps
  the first 250 samples of a longer trial (``x[..., :250]``), so this one does too; the paper-era class
  takes exactly 250.

Both have ``logit_scale`` (unused) and only ever run ``[0]`` of their subject Linears. The widths are
read from the checkpoint, so a smaller model of the same shape (the tiny set's) loads the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

NUM_CHANNELS = 63
NUM_SAMPLES = 250
LATENT_CHANNELS = 4
LINEAR_PREFIX = {"paper": "subject_wise_linear", "refactor": "subject_linear"}

# What regressed latents mean (a recorded setting, not in the weights). Both generations train on the
# *unscaled* VAE latents (``latent_dist.mean``, no scaling factor): the paper decodes with ``vae.decode(z)``.
# "scaled" is for encoders trained on latents multiplied by the VAE's scaling factor.
LATENT_CONVENTIONS = ("unscaled", "scaled")


@dataclass(frozen=True)
class LowLevelArchitecture:
    """The shape of a low-level encoder, as read from its checkpoint."""

    generation: str = "paper"  # "paper" or "refactor": key names and head
    num_linears: int = 1  # subject Linears in the file (only [0] runs)
    linear_features: int = 128  # per-channel features: 63 * 128 = 8064 input channels
    widths: tuple[int, ...] = (1024, 512, 256, 128, 64, 32)  # the stride-2 ConvTranspose outputs
    head: tuple[int, ...] = (16,)  # 1x1 ConvTranspose widths before the final one to 4 channels
    logit_scale: bool = True

    def __post_init__(self):
        if self.generation not in LINEAR_PREFIX:
            raise ValueError(f"generation must be one of {sorted(LINEAR_PREFIX)}, got {self.generation!r}")

    @property
    def latent_side(self) -> int:
        return 2 ** len(self.widths)  # each stride-2 ConvTranspose doubles the 1x1 start

    def to_dict(self) -> dict:
        return {"generation": self.generation, "num_linears": self.num_linears, "linear_features": self.linear_features,
                "widths": list(self.widths), "head": list(self.head), "logit_scale": self.logit_scale,
                "latent_side": self.latent_side}


PAPER = LowLevelArchitecture()
REFACTOR = LowLevelArchitecture(generation="refactor", head=())


def _upsampler(in_channels: int, arch: LowLevelArchitecture) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in arch.widths:
        layers += [nn.ConvTranspose2d(in_channels, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU()]
        in_channels = width
    for width in arch.head:
        layers += [nn.ConvTranspose2d(in_channels, width, 1, 1, 0), nn.BatchNorm2d(width), nn.ReLU()]
        in_channels = width
    layers.append(nn.ConvTranspose2d(in_channels, LATENT_CHANNELS, 1, 1, 0))
    return nn.Sequential(*layers)


class LowLevelEncoder(nn.Module):
    """``forward(eeg (B, 63, 250) float32) -> latents (B, 4, S, S)``, S = 64 for the paper's widths.

    No subject input: both generations run ``[0]`` of their subject Linears whatever the subject.
    """

    def __init__(self, arch: LowLevelArchitecture = PAPER):
        super().__init__()
        self.arch = arch
        if arch.logit_scale:
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        linears = nn.ModuleList([nn.Linear(NUM_SAMPLES, arch.linear_features) for _ in range(arch.num_linears)])
        setattr(self, LINEAR_PREFIX[arch.generation], linears)
        self.upsampler = _upsampler(NUM_CHANNELS * arch.linear_features, arch)

    def forward(self, eeg: torch.Tensor) -> torch.Tensor:
        n = eeg.shape[-1]
        if n != NUM_SAMPLES:
            if self.arch.generation == "refactor" and n > NUM_SAMPLES:
                eeg = eeg[..., :NUM_SAMPLES]  # as the refactor's class does: its first 250 samples (0..1 s)
            else:  # the paper-era class takes exactly 250 (a shorter trial has no 1 s window to cut)
                raise ValueError(f"the {self.arch.generation} low-level encoder takes (B, {NUM_CHANNELS}, "
                                 f"{NUM_SAMPLES}) EEG (1 s at 250 Hz); got {tuple(eeg.shape)}")
        x = getattr(self, LINEAR_PREFIX[self.arch.generation])[0](eeg)  # (B, 63, F)
        return self.upsampler(x.reshape(x.shape[0], -1, 1, 1))  # (B, 63*F, 1, 1) -> (B, 4, S, S)
