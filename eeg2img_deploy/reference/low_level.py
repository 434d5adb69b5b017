"""The paper's low-level path with diffusers: EEG -> VAE latent -> blurry image -> img2img Stage II.

As ``Generation/custom_pipeline_low_level.py`` and its notebook do it, quirks included:

1. the low-level encoder regresses an *unscaled* SDXL VAE latent; ``vae.decode(z)`` (no scaling
   factor) gives the start image, saved as 8-bit (the notebook reads it back from PNG);
2. that image is preprocessed by ``CLIPImageProcessor`` at the image size (CLIP mean/std, *not* the
   VAE's [-1, 1]; at 512 its resize and crop are identities), then
   ``vae.encode(image).latent_dist.sample() * scaling_factor``;
3. plain unit noise is added, ``latents + noise`` (not ``scheduler.add_noise``, not scaled by sigma);
4. the timesteps are cut: ``init = min(int(steps * strength), steps)``, ``timesteps[steps - init:]``
   (see :func:`~eeg2img_deploy.core.options.img2img_cut`);
5. IP-Adapter scale 1, guidance 0, empty prompt; the UNet and scheduler are diffusers' own.

The second entry (``low_level_latent=``, ``latent`` mode here) skips 1-2: it adds the noise to
``z * scaling_factor`` directly. The paper does not cut the timesteps there, which is this mode at
strength 1.0; here both modes cut alike, so they differ only by the decode/encode round trip.

Noise: one :class:`NoiseSource` stream per sample with purpose ``low_level``, drawn in this order: the
VAE posterior sample (drawn in both modes, so both share the next draws), the added noise, then one
ancestral draw per Euler step.
"""

from __future__ import annotations

import numpy as np

from ..models.sdxl import EmptyPrompt, clip_normalisation, time_ids  # noqa: F401  (clip_normalisation: re-exported)
from ..core.images import to_uint8
from ..core.noise import NoiseSource
from ..core.options import img2img_cut
from .noise_patch import shared_noise


def decode_start_image(vae, z, latent_convention: str) -> np.ndarray:
    """Regressed latents -> uint8 images (B, H, W, 3), as the notebook saves them."""
    import torch

    scale = vae.config.scaling_factor if latent_convention == "scaled" else 1.0
    with torch.no_grad():
        image = vae.decode(z.to(vae.dtype) / scale).sample
    return to_uint8(image.float().cpu().numpy())


def clip_preprocess(images: np.ndarray, size: int):
    """``CLIPImageProcessor`` with size and crop at the image size, as the paper's notebook builds it."""
    from PIL import Image
    from transformers import CLIPImageProcessorPil  # the PIL backend: the paper's (transformers 4) processor

    processor = CLIPImageProcessorPil(size={"height": size, "width": size}, crop_size={"height": size, "width": size})
    return processor([Image.fromarray(im) for im in images], return_tensors="pt").pixel_values


def start_latents(vae, z, noise: NoiseSource, *, mode: str, latent_convention: str, image_size: int):
    """Stage II's start: ``encode(clip_preprocess(decode(z))).sample() * sf + noise`` (image mode)."""
    import torch
    from diffusers.models.autoencoders import vae as vae_module

    sf = vae.config.scaling_factor
    with torch.no_grad(), shared_noise(vae_module, noise):
        if mode == "image":
            pixels = clip_preprocess(decode_start_image(vae, z, latent_convention), image_size)
            latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.sample() * sf
        else:
            noise.normal(z.shape[1:])  # the posterior draw, unused: both modes then share the noise below
            latents = z * sf if latent_convention == "unscaled" else z
    return latents + torch.from_numpy(noise.normal(z.shape[1:])).to(latents.device, latents.dtype)


def img2img_denoise(pipe, prompt: EmptyPrompt, image_embeds, latents, noise: NoiseSource, *, steps: int,
                    strength: float, image_size: int):
    """The paper's denoising loop from ``latents`` over the cut Euler-ancestral schedule (guidance 0)."""
    import torch
    from diffusers import EulerAncestralDiscreteScheduler
    from diffusers.schedulers import scheduling_euler_ancestral_discrete as euler_module

    scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps[img2img_cut(steps, strength):]
    b, dtype, device = latents.shape[0], pipe.unet.dtype, pipe.device
    added = {
        "text_embeds": prompt.pooled.expand(b, -1).to(device, dtype),
        "time_ids": torch.tensor([time_ids(image_size)], device=device, dtype=dtype).expand(b, -1),
        "image_embeds": [image_embeds[:, None, :].to(device, dtype)],
    }
    hidden = prompt.prompt_embeds.expand(b, -1, -1).to(device, dtype)
    x = latents.to(device, dtype)
    with torch.no_grad(), shared_noise(euler_module, noise):
        for t in timesteps:
            eps = pipe.unet(scheduler.scale_model_input(x, t), t, encoder_hidden_states=hidden,
                            added_cond_kwargs=added).sample
            x = scheduler.step(eps, t, x).prev_sample
    return x
