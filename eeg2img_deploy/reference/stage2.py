"""Stage II with diffusers: SDXL-Turbo + IP-Adapter from image embeddings, as the paper calls it.

Empty prompt (its embeddings computed once and reused), guidance 0, SDXL-Turbo's Euler-ancestral
scheduler, 1 step by default (the paper: 4), the IP-Adapter fed the prior's output directly (the
CLIP image encoder never runs), VAE decode in fp32. Nothing is ever downloaded.
"""

from __future__ import annotations

import numpy as np

# Loading and conditioning live in models/sdxl.py (export uses them too); re-exported as Stage II's API.
from ..models.sdxl import (  # noqa: F401
    EmptyPrompt,
    check_ip_adapter,
    encode_prompts,
    load_sdxl_pipeline,
    time_ids,
)
from ..core.images import to_uint8
from ..core.noise import NoiseSource
from ..core.options import fallback
from .noise_patch import shared_noise

VAE_SCALE = 8  # SDXL's VAE downsamples by 8: 512x512 images <-> 4x64x64 latents


def denoise(pipe, prompt: EmptyPrompt, image_embeds, seed: int, *, steps: int = fallback("steps"), image_size: int = 512):
    """Image embeddings ``(B, 1024)`` -> final latents ``(B, 4, S/8, S/8)`` with diffusers' pipeline.

    One sample per pipeline call, as the paper generates: diffusers' SDXL pipeline repeats
    ``ip_adapter_image_embeds`` once per prompt, so a batch of B embeddings would become B*B and every
    image would attend to the others' tokens. Sample i draws from noise stream i, as in the runtime.
    """
    import torch
    from diffusers.schedulers import scheduling_euler_ancestral_discrete as euler_module

    side = image_size // VAE_SCALE
    dtype = pipe.unet.dtype
    out = []
    per_sample = prompt.prompt_embeds.shape[0] > 1  # one prompt per sample (captions), else one for all
    for i in range(image_embeds.shape[0]):
        text = slice(i, i + 1) if per_sample else slice(0, 1)
        noise = NoiseSource(seed, 1, "image", first=i)
        latents = torch.from_numpy(noise.normal((pipe.unet.config.in_channels, side, side))).to(pipe.device, dtype)
        with torch.no_grad(), shared_noise(euler_module, noise):
            result = pipe(
                prompt_embeds=prompt.prompt_embeds[text].to(dtype),
                pooled_prompt_embeds=prompt.pooled[text].to(dtype),
                ip_adapter_image_embeds=[image_embeds[i : i + 1, None, :].to(pipe.device, dtype)],
                num_inference_steps=steps,
                guidance_scale=0.0,
                height=image_size,
                width=image_size,
                latents=latents,
                output_type="latent",
            )
        out.append(result.images)
    return torch.cat(out)


def decode(vae, latents, *, tiny: bool = False) -> np.ndarray:
    """Latents -> uint8 images (B, H, W, 3), in the decoder's dtype (the SDXL VAE is kept fp32 at load)."""
    import torch

    with torch.no_grad():
        if tiny:  # AutoencoderTiny works on the scaled latents directly (its scaling factor is 1)
            image = vae.decode(latents.to(vae.dtype)).sample
        else:
            image = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
    return to_uint8(image.float().cpu().numpy())

