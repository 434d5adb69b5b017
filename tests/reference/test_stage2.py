"""Stage II on the tiny SDXL: the IP-Adapter check, and ``denoise`` against a hand-written Euler-ancestral loop."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from support import TEST_IMAGE_SIZE

from eeg2img_deploy.errors import CheckpointError
from eeg2img_deploy.reference.stage2 import (
    VAE_SCALE,
    check_ip_adapter,
    decode,
    denoise,
    time_ids,
)
from eeg2img_deploy.core.noise import NoiseSource
from eeg2img_deploy.weights import IPAdapterLocation


@pytest.fixture(scope="module")
def sdxl(reference_pipe):
    return reference_pipe.sdxl


@pytest.fixture(scope="module")
def prompt(reference_pipe):
    return reference_pipe.prompt


def embeds(seed: int, batch: int = 1):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.clip(rng.normal(0.0, 0.6, size=(batch, 1024)), -1, 1).astype(np.float32))


def euler_ancestral(pipe, prompt, image_embeds, seed: int, steps: int, image_size: int):
    """SDXL-Turbo's sampler written out: scaled_linear betas, trailing spacing, epsilon prediction."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    alpha_bar = np.cumprod(1.0 - betas)
    timesteps = np.round(np.arange(1000, 0, -1000 / steps)) - 1  # trailing: 999, 749, 499, 249
    sigma_all = np.sqrt((1 - alpha_bar) / alpha_bar)
    sigmas = [*sigma_all[timesteps.astype(int)], 0.0]
    batch = image_embeds.shape[0]
    noise = NoiseSource(seed, batch, "image")
    side = image_size // VAE_SCALE
    x = torch.from_numpy(noise.normal((4, side, side))).double() * max(sigmas)  # init_noise_sigma (trailing)
    cond = {
        "text_embeds": prompt.pooled.expand(batch, -1),
        "time_ids": torch.tensor([time_ids(image_size)]).expand(batch, -1),
        "image_embeds": [image_embeds[:, None, :]],
    }
    for i, t in enumerate(timesteps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        with torch.no_grad():
            eps = pipe.unet(
                (x / np.sqrt(sigma**2 + 1)).float(), torch.tensor(t, dtype=torch.float32),
                encoder_hidden_states=prompt.prompt_embeds.expand(batch, -1, -1), added_cond_kwargs=cond,
            ).sample.double()
        x0 = x - sigma * eps
        sigma_up = np.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2)
        sigma_down = np.sqrt(sigma_next**2 - sigma_up**2)
        x = x + (x - x0) / sigma * (sigma_down - sigma)
        x = x + torch.from_numpy(noise.normal((4, side, side))).double() * sigma_up  # drawn at every step
    return x.float()


def run(pipe, prompt, e, seed=0, steps=1):
    return denoise(pipe, prompt, e, seed, steps=steps, image_size=TEST_IMAGE_SIZE)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def test_check_ip_adapter_accepts_the_tiny_adapter(tiny_layout, sdxl):
    check_ip_adapter(tiny_layout.ip_adapter, sdxl.unet.config.cross_attention_dim)


def adapter_for(sdxl, cross: int) -> dict:
    """An h94-layout adapter made for a UNet whose cross-attention dim is ``cross``."""
    sd = {
        "image_proj.proj.weight": np.zeros((4 * cross, 1024), np.float32),
        "image_proj.proj.bias": np.zeros(4 * cross, np.float32),
        "image_proj.norm.weight": np.ones(cross, np.float32),
        "image_proj.norm.bias": np.zeros(cross, np.float32),
    }
    key_id = 1
    for name in sdxl.unet.attn_processors:
        if name.endswith("attn2.processor"):
            for kv in ("to_k_ip", "to_v_ip"):
                sd[f"ip_adapter.{key_id}.{kv}.weight"] = np.zeros((64, cross), np.float32)
            key_id += 2
    return sd


@pytest.mark.parametrize("cross", [80, 40])  # 4*80 is a multiple of 64, 4*40 is not
def test_check_ip_adapter_refuses_another_cross_attention_dim(tmp_path, sdxl, monkeypatch, cross):
    import safetensors.torch
    from safetensors.numpy import save_file

    save_file(adapter_for(sdxl, cross), str(tmp_path / "ip-adapter_sdxl_vit-h.safetensors"))
    ip = IPAdapterLocation(str(tmp_path), "", "ip-adapter_sdxl_vit-h.safetensors")

    def no_loading(*a, **k):  # the check reads shapes only: it must fail before any tensor is loaded
        raise AssertionError("tensors loaded before the shape check")

    monkeypatch.setattr(safetensors.torch, "load_file", no_loading)
    monkeypatch.setattr(torch, "load", no_loading)
    with pytest.raises(CheckpointError, match="another model"):
        check_ip_adapter(ip, sdxl.unet.config.cross_attention_dim)


def test_check_ip_adapter_refuses_a_file_without_image_proj(tmp_path, sdxl):
    from safetensors.numpy import save_file

    save_file({"foo": np.zeros(3, dtype=np.float32)}, str(tmp_path / "ip-adapter_sdxl_vit-h.safetensors"))
    ip = IPAdapterLocation(str(tmp_path), "", "ip-adapter_sdxl_vit-h.safetensors")
    with pytest.raises(CheckpointError, match="image_proj.proj.weight"):
        check_ip_adapter(ip, sdxl.unet.config.cross_attention_dim)


def test_load_refuses_wrong_adapter_before_loading_it(tmp_path, tiny_layout, sdxl, monkeypatch):
    from diffusers import StableDiffusionXLPipeline
    from safetensors.numpy import save_file

    from eeg2img_deploy.reference.stage2 import load_sdxl_pipeline

    save_file(adapter_for(sdxl, 40), str(tmp_path / "ip-adapter_sdxl_vit-h.safetensors"))

    def never(*a, **k):
        raise AssertionError("load_ip_adapter called for an adapter that does not fit")

    monkeypatch.setattr(StableDiffusionXLPipeline, "load_ip_adapter", never)
    with pytest.raises(CheckpointError, match="another model"):
        load_sdxl_pipeline(tiny_layout.sdxl, IPAdapterLocation(str(tmp_path), "", "ip-adapter_sdxl_vit-h.safetensors"))


@pytest.mark.parametrize("steps", [1, 4])
def test_denoise_equals_hand_written_euler_ancestral(sdxl, prompt, steps):
    e = embeds(0, batch=2)
    got = run(sdxl, prompt, e, seed=3, steps=steps)
    want = euler_ancestral(sdxl, prompt, e, 3, steps, TEST_IMAGE_SIZE)
    assert got.shape == (2, 4, TEST_IMAGE_SIZE // 8, TEST_IMAGE_SIZE // 8)
    # 1e-5 relative to the latents' scale (|x| reaches ~60): diffusers' float32 cumprod of 1000 betas
    # differs from the float64 one here by ~1e-6 relative, which alone moves x_T by ~5e-5.
    scale = max(1.0, want.abs().max().item())
    assert (got - want).abs().max().item() <= 1e-5 * scale


def test_ip_adapter_scale_matters(sdxl, prompt):
    e = embeds(1)
    full = run(sdxl, prompt, e)
    try:
        sdxl.set_ip_adapter_scale(0.0)
        off = run(sdxl, prompt, e)
    finally:
        sdxl.set_ip_adapter_scale(1.0)
    assert (full - off).abs().max().item() > 1.0  # far beyond 1e-3
    np.testing.assert_array_equal(full.numpy(), run(sdxl, prompt, e).numpy())  # scale restored


def test_image_embedding_matters(sdxl, prompt):
    a, b = run(sdxl, prompt, embeds(1)), run(sdxl, prompt, embeds(2))
    assert (a - b).abs().max().item() > 1.0
    assert psnr(decode(sdxl.vae, a), decode(sdxl.vae, b)) < 30


def test_decode_full_and_tiny(sdxl, prompt, reference_pipe):
    lat = run(sdxl, prompt, embeds(1, batch=2))
    for img in (decode(sdxl.vae, lat), decode(reference_pipe.taesd, lat, tiny=True)):
        assert img.shape == (2, TEST_IMAGE_SIZE, TEST_IMAGE_SIZE, 3) and img.dtype == np.uint8
        assert img.std() > 20  # real content, not one flat colour
        assert np.mean((img == 0) | (img == 255)) < 0.2  # and mostly not clipped
