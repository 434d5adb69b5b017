"""Samplers in numpy over the bundle's precomputed tables: no torch, no diffusers.

``ddpm_sample`` is the paper's Stage I sampler (diffusers ``DDPMScheduler()`` semantics: leading
spacing, epsilon prediction, x0 clipped to [-1, 1], fixed_small variance, no noise at t=0), with the
conditional and unconditional passes batched into one denoiser call per step. ``EulerAncestral`` is
SDXL-Turbo's scheduler (trailing spacing) with sigmas exported from diffusers for 1 and 4 steps.
Both draw noise from :class:`~.noise.NoiseSource` in the reference's order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import ManifestError, OptionError
from ..names import Constants
from .noise import NoiseSource
from .options import fallback

# eps_fn(x (2B, D), t (2B,), cond (2B, D), cond_mask (2B,)) -> eps (2B, D); rows [:B] conditional.
PriorDenoiser = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]

TRAIN_STEPS = 1000


def leading_timesteps(steps: int, train_steps: int = TRAIN_STEPS) -> np.ndarray:
    """DDPM 'leading' spacing with steps_offset 0: 50 steps -> 980, 960, ..., 0."""
    if not 1 <= steps <= train_steps:
        raise OptionError(f"--prior-steps must be in [1, {train_steps}], got {steps}")
    return (np.arange(steps) * (train_steps // steps))[::-1].astype(np.int64)


def guided_eps(eps_fn: PriorDenoiser, x: np.ndarray, t: int, cond: np.ndarray, guidance: float) -> np.ndarray:
    """One batched call: rows [:B] conditional, rows [B:] with the condition terms zeroed exactly.

    Guided as ``g * eps_c + (1 - g) * eps_u``, the paper's ``eps_u + g * (eps_c - eps_u)`` rearranged: the
    fused prior graph weighs both halves in one multiplication and sums them (one op fewer per step), and
    g = 1 gives eps_c exactly.
    """
    b = x.shape[0]
    mask = np.concatenate([np.ones(b, np.float32), np.zeros(b, np.float32)])
    eps = eps_fn(np.concatenate([x, x]), np.full(2 * b, t, np.float32), np.concatenate([cond, cond]), mask)
    g = np.float32(guidance)
    return g * eps[:b].astype(np.float32) + (np.float32(1) - g) * eps[b:].astype(np.float32)


@dataclass(frozen=True)
class DDPMStep:
    """One step of the paper's DDPM as float32 coefficients: the table the fused prior graph bakes in."""

    t: int
    sqrt_beta: np.float32  # sqrt(1 - alpha_bar_t)
    x0_scale: np.float32  # x0_coef / sqrt(alpha_bar_t): x0_coef * x0 = x0_scale * (x - sqrt_beta * eps)
    x0_coef: np.float32  # posterior mean = x0_coef * clip(x0, -1, 1) + x_coef * x
    x_coef: np.float32
    noise_std: np.float32  # fixed_small posterior std; 0 at t = 0, where no noise is drawn


def ddpm_steps(alphas_cumprod: np.ndarray, steps: int) -> list[DDPMStep]:
    """The step table of :func:`ddpm_sample`, in float32 as the numpy sampler computes it."""
    ac = alphas_cumprod.astype(np.float32)
    stride = len(ac) // steps
    table = []
    for t in leading_timesteps(steps, len(ac)):
        a_t = ac[t]
        a_prev = ac[t - stride] if t - stride >= 0 else np.float32(1.0)
        beta_t, beta_prev = 1 - a_t, 1 - a_prev
        alpha_step = a_t / a_prev
        std = np.float32(np.sqrt(max(beta_prev / beta_t * (1 - alpha_step), 1e-20))) if t > 0 else np.float32(0.0)
        x0_coef = np.sqrt(a_prev) * (1 - alpha_step) / beta_t
        table.append(DDPMStep(
            t=int(t), sqrt_beta=np.sqrt(beta_t), x0_scale=x0_coef / np.sqrt(a_t),
            x0_coef=x0_coef, x_coef=np.sqrt(alpha_step) * beta_prev / beta_t,
            noise_std=std,
        ))
    return table


def ddpm_sample(
    eps_fn: PriorDenoiser,
    cond: np.ndarray,
    noise: NoiseSource,
    alphas_cumprod: np.ndarray,
    *,
    steps: int = fallback("prior_steps"),
    guidance: float = fallback("guidance"),
) -> np.ndarray:
    x = noise.normal(cond.shape[1:])
    for s in ddpm_steps(alphas_cumprod, steps):
        eps = guided_eps(eps_fn, x, s.t, cond, guidance)
        # the posterior mean x0_coef * clip(x0, -1, 1) + x_coef * x, x0 = (x - sqrt_beta * eps) / sqrt_alpha: the
        # coefficient (> 0) taken into the clip's bounds and, with 1 / sqrt_alpha, into one factor (the fused
        # prior graph's step is then one op shorter; the same math, rounded once fewer)
        x = np.clip((x - s.sqrt_beta * eps) * s.x0_scale, -s.x0_coef, s.x0_coef) + s.x_coef * x
        if s.t > 0:
            x = x + s.noise_std * noise.normal(cond.shape[1:])
    return x.astype(np.float32)


@dataclass(frozen=True)
class EulerAncestral:
    """SDXL-Turbo's Euler-ancestral steps from exported tables (sigmas has one trailing 0)."""

    timesteps: np.ndarray  # (n,)
    sigmas: np.ndarray  # (n + 1,)
    init_noise_sigma: float

    @classmethod
    def from_constants(cls, constants: dict[str, np.ndarray], steps: int, *, exported=()) -> EulerAncestral:
        """The table for ``steps`` from a bundle's constants (``exported``: the bundle's step counts, for the error)."""
        timesteps, sigmas, init_sigma = Constants.euler(steps)
        if sigmas not in constants:
            have = list(exported)
            raise ManifestError(f"this bundle has scheduler tables for {have} step(s), not {steps}: export with --steps 1 --steps 4")
        return cls(constants[timesteps], constants[sigmas], float(constants[init_sigma][0]))

    def cut(self, start: int) -> EulerAncestral:
        """The schedule from step ``start`` on (img2img): the same sigmas, fewer steps."""
        return EulerAncestral(self.timesteps[start:], self.sigmas[start:], self.init_noise_sigma)

    def initial_latents(self, noise: NoiseSource, shape: tuple[int, ...]) -> np.ndarray:
        return noise.normal(shape) * np.float32(self.init_noise_sigma)

    def scale_input(self, latents: np.ndarray, i: int) -> np.ndarray:
        return latents / np.sqrt(self.sigmas[i] ** 2 + 1)

    def step(self, eps: np.ndarray, i: int, latents: np.ndarray, noise: NoiseSource) -> np.ndarray:
        sigma, sigma_next = float(self.sigmas[i]), float(self.sigmas[i + 1])
        sigma_up = np.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2)
        sigma_down = np.sqrt(sigma_next**2 - sigma_up**2)
        # x0 = x - sigma * eps, so the Euler derivative (x - x0) / sigma is eps itself
        out = latents.astype(np.float32) + eps.astype(np.float32) * np.float32(sigma_down - sigma)
        return out + noise.normal(latents.shape[1:]) * np.float32(sigma_up)
