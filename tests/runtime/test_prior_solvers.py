"""DDIM / DPM-Solver++ prior samplers: agree with diffusers' schedulers, deterministic, registry."""

import numpy as np
import pytest

from eeg2img_deploy.core.noise import NoiseSource
from eeg2img_deploy.runtime.prior_solvers import (
    PRIOR_SAMPLERS,
    ddim_sample,
    ddim_sample_spaced,
    dpmpp_sample,
    get_prior_sampler,
    solver_timesteps,
)
from eeg2img_deploy.core.schedulers import ddpm_sample

DIM, BATCH, STEPS, GUIDANCE = 32, 3, 10, 5.0


def make_denoiser(seed: int = 0):
    """A fixed nonlinear eps(x, t, c) in numpy; uncond rows drop the condition term exactly."""
    rng = np.random.default_rng(seed)
    w_x = rng.standard_normal((DIM, DIM)).astype(np.float32) / np.sqrt(DIM)
    w_c = rng.standard_normal((DIM, DIM)).astype(np.float32) / np.sqrt(DIM)
    w_t = rng.standard_normal(DIM).astype(np.float32)

    def eps_fn(x, t, c, cond_mask):
        h = x @ w_x + np.sin(t[:, None] / 300.0 * w_t) + cond_mask[:, None] * (c @ w_c)
        return (0.8 * x + 0.5 * np.tanh(h)).astype(np.float32)

    return eps_fn


def torch_loop(scheduler, eps_fn, cond, x_t, **step_kwargs):
    """The diffusers way: one scheduler.step per timestep on (B, D, 1) tensors (thresholding needs a channel dim)."""
    import torch

    from eeg2img_deploy.core.schedulers import guided_eps

    scheduler.set_timesteps(STEPS)
    x = torch.from_numpy(x_t)[:, :, None]
    for t in scheduler.timesteps:
        eps = guided_eps(eps_fn, x[:, :, 0].numpy(), int(t), cond, GUIDANCE)
        x = scheduler.step(torch.from_numpy(eps)[:, :, None], t, x, **step_kwargs).prev_sample
    return x[:, :, 0].numpy()


@pytest.fixture(scope="module")
def cond():
    return np.random.default_rng(1).standard_normal((BATCH, DIM)).astype(np.float32)


def ddim_scheduler(spacing: str):
    from diffusers import DDIMScheduler

    return DDIMScheduler(clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True, timestep_spacing=spacing)


@pytest.mark.parametrize("spacing", ["trailing", "leading"])
def test_ddim_matches_diffusers(cond, spacing):
    pytest.importorskip("diffusers")
    scheduler = ddim_scheduler(spacing)
    ac = scheduler.alphas_cumprod.numpy()
    eps_fn = make_denoiser()
    x_t = NoiseSource(7, BATCH).normal((DIM,))
    ours = ddim_sample_spaced(
        eps_fn, cond, NoiseSource(7, BATCH), ac, steps=STEPS, guidance=GUIDANCE, spacing=spacing
    )
    expected = torch_loop(scheduler, eps_fn, cond, x_t, eta=0.0, use_clipped_model_output=True)
    np.testing.assert_array_equal(solver_timesteps(STEPS, 1000, spacing), scheduler.timesteps.numpy())
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)
    if spacing == "trailing":
        np.testing.assert_array_equal(ours, ddim_sample(eps_fn, cond, NoiseSource(7, BATCH), ac, steps=STEPS))


def test_dpmpp_matches_diffusers(cond):
    pytest.importorskip("diffusers")
    from diffusers import DPMSolverMultistepScheduler

    # thresholding with sample_max_value=1 clamps s to exactly 1: a plain clip of x0 to [-1, 1].
    scheduler = DPMSolverMultistepScheduler(
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        thresholding=True,
        sample_max_value=1.0,
        timestep_spacing="trailing",
        final_sigmas_type="zero",
    )
    ac = scheduler.alphas_cumprod.numpy()
    eps_fn = make_denoiser()
    x_t = NoiseSource(7, BATCH).normal((DIM,))
    ours = dpmpp_sample(eps_fn, cond, NoiseSource(7, BATCH), ac, steps=STEPS, guidance=GUIDANCE)
    expected = torch_loop(scheduler, eps_fn, cond, x_t)
    np.testing.assert_array_equal(solver_timesteps(STEPS, 1000), scheduler.timesteps.numpy())
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)


def linear_alphas_cumprod() -> np.ndarray:
    return np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000, dtype=np.float32), dtype=np.float32)


@pytest.mark.parametrize("name", ["ddim", "dpmpp"])
def test_clipping_is_exercised_and_output_in_range(cond, name):
    """Guided x0 at t=999 overshoots [-1, 1]; without the clip the output would leave the range."""
    eps_fn = make_denoiser()
    out = PRIOR_SAMPLERS[name](eps_fn, cond, NoiseSource(3, BATCH), linear_alphas_cumprod(), steps=STEPS)
    assert out.shape == (BATCH, DIM) and out.dtype == np.float32
    assert np.abs(out).max() <= 1.0
    assert np.isclose(np.abs(out).max(), 1.0)  # some elements saturate: the clip acted


@pytest.mark.parametrize("name", sorted(PRIOR_SAMPLERS))
def test_deterministic_for_a_seed_and_seed_matters(cond, name):
    sampler, ac, eps_fn = get_prior_sampler(name), linear_alphas_cumprod(), make_denoiser()
    a = sampler(eps_fn, cond, NoiseSource(11, BATCH), ac, steps=5, guidance=GUIDANCE)
    b = sampler(eps_fn, cond, NoiseSource(11, BATCH), ac, steps=5, guidance=GUIDANCE)
    c = sampler(eps_fn, cond, NoiseSource(12, BATCH), ac, steps=5, guidance=GUIDANCE)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("name", ["ddim", "dpmpp"])
def test_one_noise_draw_and_one_call_per_step(cond, name):
    calls = []
    eps_fn = make_denoiser()

    def counting(x, t, c, mask):
        calls.append(x.shape[0])
        return eps_fn(x, t, c, mask)

    class CountingNoise(NoiseSource):
        draws = 0

        def normal(self, shape):
            CountingNoise.draws += 1
            return super().normal(shape)

    noise = CountingNoise(5, BATCH)
    PRIOR_SAMPLERS[name](counting, cond, noise, linear_alphas_cumprod(), steps=STEPS, guidance=GUIDANCE)
    assert calls == [2 * BATCH] * STEPS  # cond + uncond batched
    assert CountingNoise.draws == 1  # only x_T, the same first draw as ddpm_sample


def test_same_seed_same_x_t_as_ddpm(cond):
    """With a denoiser that predicts eps=0 and 1 step, every sampler returns clip(x_T / sqrt(a_T))."""
    ac = linear_alphas_cumprod()
    zero = lambda x, t, c, m: np.zeros_like(x)  # noqa: E731
    x_t = NoiseSource(9, BATCH).normal((DIM,))
    ddim = ddim_sample(zero, cond, NoiseSource(9, BATCH), ac, steps=1)
    dpm = dpmpp_sample(zero, cond, NoiseSource(9, BATCH), ac, steps=1)
    np.testing.assert_allclose(ddim, np.clip(x_t / np.sqrt(ac[999]), -1, 1), atol=1e-6)
    np.testing.assert_allclose(dpm, ddim, atol=1e-6)
    ddpm = ddpm_sample(zero, cond, NoiseSource(9, BATCH), ac, steps=1)  # leading: t=0
    np.testing.assert_allclose(ddpm, np.clip(x_t / np.sqrt(ac[0]), -1, 1), atol=1e-6)


def test_trailing_timesteps():
    np.testing.assert_array_equal(solver_timesteps(5, 1000), [999, 799, 599, 399, 199])
    np.testing.assert_array_equal(solver_timesteps(3, 1000), [999, 666, 332])
    assert len(solver_timesteps(7, 1000)) == 7
    with pytest.raises(ValueError, match="spacing"):
        solver_timesteps(5, 1000, "linspace")
    with pytest.raises(ValueError, match=r"\[1, 1000\]"):
        solver_timesteps(0, 1000)


def test_unknown_sampler_names_the_choices():
    assert get_prior_sampler("ddpm") is ddpm_sample
    with pytest.raises(ValueError, match="'euler'.*ddim, ddpm, dpmpp"):
        get_prior_sampler("euler")
