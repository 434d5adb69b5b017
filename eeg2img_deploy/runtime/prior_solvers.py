"""Few-step samplers for the diffusion prior, in numpy: DDIM (eta=0) and DPM-Solver++ 2M.

Both have exactly the signature of :func:`~.schedulers.ddpm_sample`, so the pipeline picks one by
name from :data:`PRIOR_SAMPLERS`. They share its conventions:

- x_T is the first ``noise.normal`` draw, so a seed starts every sampler from the same x_T; after
  that they are deterministic (no further draws).
- One batched cond+uncond denoiser call per step (:func:`~.schedulers.guided_eps`).
- The x0 prediction is clipped to [-1, 1] at every step, as the paper's ``DDPMScheduler()``
  (``clip_sample=True``) does. The prior was only ever sampled that way; with guidance 5 the x0
  estimate at high noise overshoots far past the data range and the clip is what keeps a few-step
  solver stable (DPM-Solver++'s own paper thresholds data predictions for guided sampling, the
  same operation). The last step lands on the clipped x0, so, like DDPM, every output element lies
  in [-1, 1].
- DDIM steps with the eps re-derived from the clipped x0 (diffusers' ``use_clipped_model_output``),
  which makes it the first-order case of DPM-Solver++ and matches how DDPM's posterior uses the
  clipped x0.

Spacing is 'trailing' (999, 899, ..., 99 for 10 steps, then x0): the first step sits at t=999 where
x_T ~ N(0, I) is the right marginal; the paper's 'leading' spacing starts at 900 (10 steps) or 800
(5 steps), where the model expects visible signal that pure noise lacks. See
``benchmarks/results/prior_sampler_study.md`` for the measurement behind the choice.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..core.noise import NoiseSource
from ..core.options import fallback
from ..core.schedulers import PriorDenoiser, ddpm_sample, guided_eps, leading_timesteps
from ..errors import OptionError, SettingsError

SPACINGS = ("trailing", "leading")
DEFAULT_SPACING = "trailing"


def solver_timesteps(steps: int, train_steps: int, spacing: str = DEFAULT_SPACING) -> np.ndarray:
    """'trailing': diffusers' trailing grid (999, 899, ..., 99); 'leading': the paper's (900, ..., 0)."""
    if spacing == "leading":
        return leading_timesteps(steps, train_steps)
    if spacing != "trailing":
        raise SettingsError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    if not 1 <= steps <= train_steps:
        raise OptionError(f"--prior-steps must be in [1, {train_steps}], got {steps}")
    # Written as a product, not diffusers' float arange, which can yield steps+1 entries for e.g. 3.
    return (np.round(train_steps - np.arange(steps) * (train_steps / steps)) - 1).astype(np.int64)


def _x0(x: np.ndarray, eps: np.ndarray, a_t: float, clip: bool) -> np.ndarray:
    x0 = (x - np.float32(np.sqrt(1.0 - a_t)) * eps) / np.float32(np.sqrt(a_t))
    return np.clip(x0, -1.0, 1.0) if clip else x0


def ddim_sample_spaced(
    eps_fn: PriorDenoiser,
    cond: np.ndarray,
    noise: NoiseSource,
    alphas_cumprod: np.ndarray,
    *,
    steps: int,
    guidance: float,
    spacing: str,
    clip_x0: bool = True,
) -> np.ndarray:
    """DDIM, eta=0, on the given spacing; the step after the last timestep goes to alpha=1 (x0).

    ``clip_x0=False`` exists for the benchmark's ablation; the runtime always clips.
    """
    ac = alphas_cumprod.astype(np.float64)
    timesteps = solver_timesteps(steps, len(ac), spacing)
    x = noise.normal(cond.shape[1:])
    for i, t in enumerate(timesteps):
        eps = guided_eps(eps_fn, x, int(t), cond, guidance)
        a_t = float(ac[t])
        a_prev = float(ac[timesteps[i + 1]]) if i + 1 < len(timesteps) else 1.0
        x0 = _x0(x, eps, a_t, clip_x0)
        eps = (x - np.float32(np.sqrt(a_t)) * x0) / np.float32(np.sqrt(1.0 - a_t))
        x = np.float32(np.sqrt(a_prev)) * x0 + np.float32(np.sqrt(1.0 - a_prev)) * eps
    return x.astype(np.float32)


def dpmpp_sample_spaced(
    eps_fn: PriorDenoiser,
    cond: np.ndarray,
    noise: NoiseSource,
    alphas_cumprod: np.ndarray,
    *,
    steps: int,
    guidance: float,
    spacing: str,
    clip_x0: bool = True,
) -> np.ndarray:
    """DPM-Solver++ 2M (midpoint), data prediction; first order on the first and the last step.

    The last step goes to sigma=0, where the update is exactly the clipped x0 (diffusers'
    ``final_sigmas_type="zero"``, which also forces that step to first order). ``clip_x0=False``
    exists for the benchmark's ablation; the runtime always clips.
    """
    ac = alphas_cumprod.astype(np.float64)
    timesteps = solver_timesteps(steps, len(ac), spacing)
    alpha = np.append(np.sqrt(ac[timesteps]), 1.0)
    sigma = np.append(np.sqrt(1.0 - ac[timesteps]), 0.0)
    with np.errstate(divide="ignore"):
        lam = np.log(alpha) - np.log(sigma)  # +inf at the final sigma=0
    x = noise.normal(cond.shape[1:])
    x0_prev = None
    for i, t in enumerate(timesteps):
        eps = guided_eps(eps_fn, x, int(t), cond, guidance)
        x0 = _x0(x, eps, float(ac[t]), clip_x0)
        if i == len(timesteps) - 1:
            x = x0
            break
        h = lam[i + 1] - lam[i]
        coef_x = np.float32(sigma[i + 1] / sigma[i])
        coef_d = np.float32(-alpha[i + 1] * np.expm1(-h))
        if x0_prev is None:
            x = coef_x * x + coef_d * x0
        else:
            r0 = (lam[i] - lam[i - 1]) / h
            x = coef_x * x + coef_d * (x0 + np.float32(0.5 / r0) * (x0 - x0_prev))
        x0_prev = x0
    return x.astype(np.float32)


PriorSampler = Callable[..., np.ndarray]


def _trailing(spaced: PriorSampler, name: str, what: str) -> PriorSampler:
    """``spaced`` on the trailing spacing, with :func:`~.schedulers.ddpm_sample`'s signature (10 steps by default)."""

    def sample(eps_fn: PriorDenoiser, cond: np.ndarray, noise: NoiseSource, alphas_cumprod: np.ndarray, *,
               steps: int = 10, guidance: float = fallback("guidance")) -> np.ndarray:
        return spaced(eps_fn, cond, noise, alphas_cumprod, steps=steps, guidance=guidance, spacing=DEFAULT_SPACING)

    sample.__name__ = sample.__qualname__ = name
    sample.__doc__ = f"{what} (clipped x0, trailing spacing): ``cond (B, D)`` -> ``(B, D)`` in [-1, 1]."
    return sample


ddim_sample = _trailing(ddim_sample_spaced, "ddim_sample", "DDIM (eta=0)")
dpmpp_sample = _trailing(dpmpp_sample_spaced, "dpmpp_sample", "DPM-Solver++ 2M")

PRIOR_SAMPLERS: dict[str, PriorSampler] = {"ddpm": ddpm_sample, "ddim": ddim_sample, "dpmpp": dpmpp_sample}


def get_prior_sampler(name: str) -> PriorSampler:
    try:
        return PRIOR_SAMPLERS[name]
    except KeyError:
        raise OptionError(
            f"--prior-sampler: unknown prior sampler {name!r}: choose one of {', '.join(sorted(PRIOR_SAMPLERS))}"
        ) from None
