"""The low-level path: the torch-free runtime reproduces ``reference --low-level`` on the tiny set.

Parity: images PSNR >= 40 dB (fp32) / 30 dB (fp16), both modes. Sensitivity: the low-level EEG path
alone (same image embedding), the strength and the mode each move the image far more (PSNR < 30 dB).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from eeg2img_deploy.errors import OptionError, SettingsError
from eeg2img_deploy.core.options import RunOptions
from eeg2img_deploy.runtime.low_level import clip_normalise
from eeg2img_deploy.core.noise import NoiseSource
from eeg2img_deploy.runtime.pipeline import Pipeline
from eeg2img_deploy.core.options import img2img_cut

from support import TEST_IMAGE_SIZE

SUBJECT = 8
SEED = 5
STEPS = 4
PRIOR_STEPS = 5
MIN_PSNR = {"fp32": 40.0, "fp16": 30.0}
MAX_PERTURBED_PSNR = 30.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="module")
def pipes(tiny_bundle):
    opened = {p: Pipeline.from_bundle(tiny_bundle, precision=p, low_level=True) for p in ("fp32", "fp16")}
    yield opened
    for p in opened.values():
        p.close()


_REFERENCE: dict = {}


def reference(reference_pipe, eeg, options):
    key = (eeg.tobytes(), options)
    if key not in _REFERENCE:
        _REFERENCE[key] = reference_pipe(eeg, SUBJECT, SEED, options, steps=STEPS, prior_steps=PRIOR_STEPS,
                                         image_size=TEST_IMAGE_SIZE)
    return _REFERENCE[key]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("mode", ["image", "latent"])
def test_runtime_matches_reference(pipes, reference_pipe, tiny_eeg, precision, mode):
    options = RunOptions(low_level=True, strength=0.5, low_level_mode=mode, steps=STEPS)
    ref = reference(reference_pipe, tiny_eeg[:2], options)
    run = pipes[precision](tiny_eeg[:2], SUBJECT, SEED, options, prior_steps=PRIOR_STEPS)
    db = [psnr(a, b) for a, b in zip(run.images, ref.images)]
    print(f"\nlow-level {mode} {precision}: PSNR {[round(d, 1) for d in db]} dB")
    assert min(db) >= MIN_PSNR[precision], db
    assert run.images.shape == ref.images.shape == (2, TEST_IMAGE_SIZE, TEST_IMAGE_SIZE, 3)
    tol = 1e-4 if precision == "fp32" else 2e-2
    np.testing.assert_allclose(run.low_level_latents, ref.low_level_latents, atol=tol * np.abs(ref.low_level_latents).max())
    assert set(run.timings_ms) >= {"low_level", "unet", "decoder", "total"}


def _images_from_latents(pipe, z, image_embeds, strength, mode="image"):
    """Stage II from given low-level latents with a fixed image embedding: isolates the low-level path."""
    noise = NoiseSource(SEED, len(z), "low_level")
    cut = img2img_cut(STEPS, strength)
    start = (pipe.low_level.start_latents(z, noise, mode), noise, cut)
    return pipe.decode(pipe.denoise(image_embeds, SEED, 0, steps=STEPS, ip_scale=1.0, start=start))


def test_low_level_eeg_strength_and_mode_move_the_image(pipes, tiny_eeg):
    pipe = pipes["fp32"]
    base = pipe(tiny_eeg[:1], SUBJECT, SEED, steps=STEPS, prior_steps=PRIOR_STEPS, low_level=True, strength=0.5)
    emb = base.image_embeds
    same = _images_from_latents(pipe, base.low_level_latents, emb, 0.5)
    assert psnr(same, base.images) == float("inf")  # the pieces recompose the pipeline exactly
    other_z = pipe.low_level.encode(tiny_eeg[1:2])
    moved = {
        "low-level EEG": _images_from_latents(pipe, other_z, emb, 0.5),
        "strength 1.0": _images_from_latents(pipe, base.low_level_latents, emb, 1.0),
        "latent mode": _images_from_latents(pipe, base.low_level_latents, emb, 0.5, "latent"),
    }
    for what, images in moved.items():
        db = psnr(images, base.images)
        print(f"\n{what}: PSNR {db:.1f} dB against the base image")
        assert db < MAX_PERTURBED_PSNR, what


def test_plain_path_unchanged_when_low_level_is_open(pipes, tiny_bundle, tiny_eeg):
    plain = Pipeline.from_bundle(tiny_bundle)
    try:
        a = plain(tiny_eeg[:1], SUBJECT, SEED, prior_steps=PRIOR_STEPS)
    finally:
        plain.close()
    b = pipes["fp32"](tiny_eeg[:1], SUBJECT, SEED, prior_steps=PRIOR_STEPS)
    assert np.array_equal(a.images, b.images) and b.low_level_latents is None


@pytest.mark.parametrize("steps, strength, start", [(4, 0.5, 2), (4, 0.6, 2), (4, 1.0, 0), (1, 1.0, 0), (4, 0.25, 3)])
def test_img2img_cut_is_the_papers(steps, strength, start):
    assert img2img_cut(steps, strength) == start


def test_cut_matches_diffusers_timesteps():
    """The runtime's cut schedule is the tail of diffusers' own, sigmas included (the scheduler's lookup)."""
    from diffusers import EulerAncestralDiscreteScheduler

    from eeg2img_deploy.core.schedulers import EulerAncestral
    from eeg2img_deploy.tiny import SDXL_TURBO_SCHEDULER

    sched = EulerAncestralDiscreteScheduler.from_config(SDXL_TURBO_SCHEDULER)
    sched.set_timesteps(STEPS)
    full = EulerAncestral(sched.timesteps.numpy(), sched.sigmas.numpy(), float(sched.init_noise_sigma))
    cut = full.cut(img2img_cut(STEPS, 0.5))
    assert list(cut.timesteps) == list(sched.timesteps.numpy()[2:]) and len(cut.sigmas) == 3
    for t, sigma in zip(cut.timesteps, cut.sigmas):
        assert sched.sigmas[sched.index_for_timestep(float(t), sched.timesteps)] == pytest.approx(float(sigma))


@pytest.mark.parametrize("steps, strength", [(4, 0.2), (1, 0.5), (4, 0.0), (4, 1.5)])
def test_strength_leaving_no_step_is_refused(pipes, tiny_eeg, steps, strength):
    with pytest.raises((OptionError, SettingsError), match="--strength"):
        pipes["fp32"](tiny_eeg[:1], SUBJECT, SEED, steps=steps, prior_steps=PRIOR_STEPS, low_level=True, strength=strength)


def test_clip_normalise_is_the_processor():
    from eeg2img_deploy.reference.low_level import clip_normalisation, clip_preprocess

    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    c = clip_normalisation()
    ours = clip_normalise(images, c["clip_image_mean"], c["clip_image_std"])
    np.testing.assert_allclose(ours, clip_preprocess(images, 32).numpy(), atol=1e-5)


def test_low_level_needs_the_stages(tiny_bundle, tiny_eeg):
    pipe = Pipeline.from_bundle(tiny_bundle)
    try:
        with pytest.raises(SettingsError, match="--low-level"):
            pipe(tiny_eeg[:1], SUBJECT, SEED, steps=STEPS, prior_steps=PRIOR_STEPS, low_level=True)
    finally:
        pipe.close()


def test_cli_infer_low_level_matches_cli_reference(tiny_bundle, tiny_dir, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from eeg2img_deploy.cli import cli

    common = ["--eeg", str(tiny_dir / "eeg" / "synthetic_eeg.npy"), "--subject", str(SUBJECT), "--trials", "0",
              "--seed", str(SEED), "--prior-steps", str(PRIOR_STEPS), "--steps", "4", "--strength", "0.5"]
    runner = CliRunner()
    ref = runner.invoke(cli, ["reference", "--weights", str(tiny_dir), "--low-level", "--image-size",
                              str(TEST_IMAGE_SIZE), "--out", str(tmp_path / "ref"), *common])
    assert ref.exit_code == 0, ref.output + repr(ref.exception)
    run = runner.invoke(cli, ["infer", "--bundle", str(tiny_bundle), "--low-level", "--out", str(tmp_path / "run"), *common])
    assert run.exit_code == 0, run.output + repr(run.exception)
    x, y = (np.asarray(Image.open(tmp_path / d / "image_000.png")) for d in ("ref", "run"))
    assert psnr(x, y) >= MIN_PSNR["fp32"]
    bad = runner.invoke(cli, ["infer", "--bundle", str(tiny_bundle), "--low-level", "--out", str(tmp_path / "bad"),
                              *common[:-1], "0.2"])
    assert bad.exit_code == 2 and "--strength" in bad.output and not (tmp_path / "bad").exists()  # a usage error


@pytest.mark.parametrize("convention, factor", [("unscaled", 0.5), ("scaled", 1.0)])
def test_latent_convention_scales_exactly_once(convention, factor):
    """Unscaled latents (the paper's) are multiplied by the VAE scale before the decoder graph (which divides
    by it) and before latent mode's noise; scaled ones pass as they are."""
    from eeg2img_deploy.runtime.low_level import LowLevelPath

    seen = {}

    def run(stage, feeds):
        seen[stage] = feeds
        if stage == "vae_decoder":
            return np.full((1, 16, 16, 3), 255, np.uint8)
        return np.full((1, 4, 2, 2), 7.0, np.float32)

    path = LowLevelPath(run=run, vae_scale=0.5, clip_mean=np.zeros(3, np.float32), clip_std=np.ones(3, np.float32),
                        latent_convention=convention)
    z = np.full((1, 4, 2, 2), 3.0, np.float32)
    draws = NoiseSource(0, 1, "low_level")
    posterior, added = draws.normal((4, 2, 2)), draws.normal((4, 2, 2))
    latent = path.start_latents(z, NoiseSource(0, 1, "low_level"), "latent")
    np.testing.assert_allclose(latent, z * factor + added, rtol=1e-6)  # the second draw: the posterior's is skipped
    image = path.start_latents(z, NoiseSource(0, 1, "low_level"), "image")
    np.testing.assert_allclose(seen["vae_decoder"]["latents"], z * factor)
    np.testing.assert_allclose(seen["vae_encoder"]["image"], 1.0)  # uint8 255 -> 1.0 with mean 0, std 1
    np.testing.assert_array_equal(seen["vae_encoder"]["noise"], posterior)
    np.testing.assert_allclose(image, 7.0 + added, rtol=1e-6)
