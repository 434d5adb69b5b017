"""The paper's Stage I sampler: 50-step DDPM with classifier-free guidance (``Pipe.generate``).

diffusers' ``DDPMScheduler()`` with no arguments is exactly what the paper uses: 1000 train steps,
linear betas 1e-4..0.02, epsilon prediction, fixed_small variance, clip_sample=True, leading spacing.
Per step one conditional and one unconditional call (condition terms exactly zero), then
``eps = eps_u + g * (eps_c - eps_u)``. Noise: x_T then one variance draw per step but the last.
"""

from __future__ import annotations

from ..core.noise import NoiseSource
from ..core.options import fallback
from .noise_patch import shared_noise


def sample_prior(prior, cond, seed: int, *, steps: int = fallback("prior_steps"), guidance: float = fallback("guidance"),
                 purpose: str = "prior"):
    """EEG embeddings ``cond (B, 1024)`` -> CLIP image embeddings ``(B, 1024)``, every element in [-1, 1].

    ``purpose`` names the noise stream ("caption_prior" for the caption's own 4-step run).
    """
    import torch
    from diffusers.schedulers import scheduling_ddpm
    # the class itself: diffusers' top-level name is a lazy alias that mypy reads as its torch-less dummy
    from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

    scheduler = DDPMScheduler()
    scheduler.set_timesteps(steps)
    batch = cond.shape[0]
    noise = NoiseSource(seed, batch, purpose)
    x = torch.from_numpy(noise.normal((cond.shape[1],))).to(cond.device, cond.dtype)
    with torch.no_grad(), shared_noise(scheduling_ddpm, noise):
        for t in scheduler.timesteps:
            tt = torch.full((batch,), float(t), device=cond.device, dtype=cond.dtype)
            eps_c = prior(x, tt, cond)
            eps_u = prior(x, tt, None)
            eps = eps_u + guidance * (eps_c - eps_u)
            x = scheduler.step(eps, t, x).prev_sample
    return x
