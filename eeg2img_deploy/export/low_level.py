"""Export specs of the low-level path: the low-level encoder and the SDXL VAE's encoder.

``low_level_encoder``: ``eeg (B, 63, 250) -> latents (B, 4, S, S)``, the regressed (by default unscaled)
VAE latent. ``vae_encoder``: ``image (B, 3, H, W)`` (CLIP-normalised, as the paper feeds it) and
``noise (B, 4, H/8, W/8)`` -> ``(mean + std * noise) * scaling_factor``: ``latent_dist.sample()`` with
its random draw as an input, so the runtime feeds the shared noise source's draw.
"""

from __future__ import annotations

import numpy as np

from ..manifest import TensorSpec
from .spec import StageExport


def low_level_encoder_stage(encoder) -> StageExport:
    side = encoder.arch.latent_side

    def make_inputs(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"eeg": rng.standard_normal((batch, 63, 250), dtype=np.float32)}

    return StageExport(
        name="low_level_encoder",
        module=encoder.eval(),
        inputs=(TensorSpec("eeg", "float32", ("batch", 63, 250)),),
        outputs=(TensorSpec("latents", "float32", ("batch", 4, side, side)),),
        make_inputs=make_inputs,
    )


def _sampling_encoder(vae):
    import torch

    class SamplingEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vae = vae

        def forward(self, image, noise):
            posterior = self.vae.encode(image).latent_dist  # mean and the clamped log-variance's std
            return (posterior.mean + posterior.std * noise) * self.vae.config.scaling_factor

    return SamplingEncoder().eval()


def vae_encoder_stage(vae, image_size: int) -> StageExport:
    side = image_size // 8
    ch = vae.config.latent_channels

    def make_inputs(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        # CLIP-normalised pixels span about [-1.8, 2.1]
        return {"image": rng.uniform(-1.8, 2.1, (batch, 3, image_size, image_size)).astype(np.float32),
                "noise": rng.standard_normal((batch, ch, side, side), dtype=np.float32)}

    return StageExport(
        name="vae_encoder",
        module=_sampling_encoder(vae),
        inputs=(TensorSpec("image", "float32", ("batch", 3, image_size, image_size)),
                TensorSpec("noise", "float32", ("batch", ch, side, side))),
        outputs=(TensorSpec("latents", "float32", ("batch", ch, side, side)),),
        make_inputs=make_inputs,
        # The SDXL VAE's activations overflow fp16 in the encoder as in the decoder: fp32 graph only.
        fp32_only=True,
    )
