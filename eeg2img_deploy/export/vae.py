"""Export specs of the decoders: the SDXL VAE (fp32 only) and the optional tiny autoencoder (TAESDXL).

Both take the UNet's latents as they come out of the scheduler and return images in [-1, 1]; the
SDXL VAE's 1/scaling_factor is inside the graph.
"""

from __future__ import annotations

import numpy as np

from ..manifest import TensorSpec
from .spec import StageExport


def _decoder_wrapper(vae, scale: float):
    import torch

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vae = vae

        def forward(self, latents):
            return self.vae.decode(latents / scale, return_dict=False)[0]

    return Decoder().eval()


def _latent_inputs(channels: int, side: int):
    def make_inputs(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        # UNet latents at SDXL's scale: roughly unit variance after the scheduler
        return {"latents": rng.standard_normal((batch, channels, side, side), dtype=np.float32)}

    return make_inputs


def vae_stage(vae, image_size: int) -> StageExport:
    side = image_size // 8
    ch = vae.config.latent_channels
    return StageExport(
        name="vae_decoder",
        module=_decoder_wrapper(vae, float(vae.config.scaling_factor)),
        inputs=(TensorSpec("latents", "float32", ("batch", ch, side, side)),),
        outputs=(TensorSpec("image", "float32", ("batch", 3, image_size, image_size)),),
        make_inputs=_latent_inputs(ch, side),
        # The SDXL VAE's activations overflow fp16 (diffusers sets force_upcast): fp32 graph only.
        fp32_only=True,
    )


def taesd_stage(taesd, image_size: int) -> StageExport:
    side = image_size // 8
    ch = taesd.config.latent_channels
    return StageExport(
        name="taesd_decoder",
        module=_decoder_wrapper(taesd, 1.0),  # TAESD works on the scaled latents directly
        inputs=(TensorSpec("latents", "float32", ("batch", ch, side, side)),),
        outputs=(TensorSpec("image", "float32", ("batch", 3, image_size, image_size)),),
        make_inputs=_latent_inputs(ch, side),
    )
