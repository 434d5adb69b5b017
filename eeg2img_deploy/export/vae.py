"""Export specs of the decoders: the SDXL VAE (fp32 only) and the optional tiny autoencoder (TAESDXL).

Both take the UNet's latents as they come out of the scheduler and return the finished images:
``(B, H, W, 3)`` uint8, NHWC. The SDXL VAE's 1/scaling_factor and the uint8 conversion are inside
the graph, so a GPU backend downloads one byte per pixel channel and no float image ever reaches the host.
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
            image = self.vae.decode(latents / scale, return_dict=False)[0]
            # core.images.to_uint8 op for op, in fp32 (an fp16 graph's image is upcast first), so the
            # bytes equal the ones the runtime computed from the float image. Round is half-to-even in
            # both ONNX and numpy (np.rint); the Cast sees exact integers in [0, 255] (TensorRT truncates).
            # The Cast is the graph's last node: TensorRT's parser refuses uint8 intermediate tensors
            # (uint8 only at network inputs and outputs), so the transpose to NHWC comes before it.
            x = image.float() * 0.5 + 0.5
            x = torch.clamp(x, 0.0, 1.0) * 255.0
            return torch.round(x).permute(0, 2, 3, 1).to(torch.uint8)

    return Decoder().eval()


def _latent_inputs(channels: int, side: int):
    def make_inputs(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        # UNet latents at SDXL's scale: roughly unit variance after the scheduler
        return {"latents": rng.standard_normal((batch, channels, side, side), dtype=np.float32)}

    return make_inputs


def _decoder_stage(name: str, module, channels: int, image_size: int, **kw) -> StageExport:
    side = image_size // 8
    return StageExport(
        name=name,
        module=module,
        inputs=(TensorSpec("latents", "float32", ("batch", channels, side, side)),),
        outputs=(TensorSpec("images", "uint8", ("batch", image_size, image_size, 3)),),
        make_inputs=_latent_inputs(channels, side),
        **kw,
    )


def vae_stage(vae, image_size: int) -> StageExport:
    return _decoder_stage(
        "vae_decoder", _decoder_wrapper(vae, float(vae.config.scaling_factor)), vae.config.latent_channels, image_size,
        # The SDXL VAE's activations overflow fp16 (diffusers sets force_upcast): fp32 graph only.
        fp32_only=True,
    )


def taesd_stage(taesd, image_size: int) -> StageExport:
    # TAESD works on the scaled latents directly
    return _decoder_stage("taesd_decoder", _decoder_wrapper(taesd, 1.0), taesd.config.latent_channels, image_size)
