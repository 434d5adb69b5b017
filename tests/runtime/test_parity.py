"""The torch-free runtime reproduces the PyTorch reference on the tiny set, and every input moves its output.

Parity: embeddings cosine >= 0.9999 per sample, images PSNR >= 40 dB (fp32) / 30 dB (fp16). The
perturbation tests show those tolerances are meaningful: each input (EEG, subject, image embedding,
IP-Adapter scale, seed) moves the output by far more (PSNR < 30 dB or 1 - cosine > 1e-2).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from eeg2img_deploy.runtime.pipeline import Pipeline

from support import TEST_IMAGE_SIZE
SUBJECT = 8
SEED = 3
PRIOR_STEPS = 10  # 50 (the paper's) in one test; fewer elsewhere to stay fast
MIN_COS = 0.9999
MIN_PSNR_FP32 = 40.0
MIN_PSNR_FP16 = 30.0
MAX_PERTURBED_PSNR = 30.0
MIN_PERTURBED_1MCOS = 1e-2


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def compare(run, ref, min_psnr: float, label: str) -> None:
    enc, pri = cosines(run.eeg_embeds, ref.eeg_embeds), cosines(run.image_embeds, ref.image_embeds)
    db = [psnr(x, y) for x, y in zip(run.images, ref.images)]
    print(f"\n{label}: encoder cos min {enc.min():.7f}, prior cos min {pri.min():.7f}, PSNR min {min(db):.1f} dB")
    assert enc.min() >= MIN_COS, f"{label}: encoder cosine {enc}"
    assert pri.min() >= MIN_COS, f"{label}: prior cosine {pri}"
    assert min(db) >= min_psnr, f"{label}: image PSNR {db} dB < {min_psnr}"
    assert run.images.shape == ref.images.shape == (len(ref.images), TEST_IMAGE_SIZE, TEST_IMAGE_SIZE, 3)


@pytest.fixture(scope="module")
def pipe(tiny_bundle):
    p = Pipeline.from_bundle(tiny_bundle)
    yield p
    p.close()


@pytest.fixture(scope="module")
def pipe16(tiny_bundle):
    p = Pipeline.from_bundle(tiny_bundle, precision="fp16")
    yield p
    p.close()


_REFERENCE_RUNS: dict = {}


def reference(reference_pipe, eeg, *, steps=1, prior_steps=PRIOR_STEPS, seed=SEED, vae="full"):
    """The reference's result, computed once per distinct call (the fp32 and fp16 tests share them)."""
    key = (eeg.tobytes(), steps, prior_steps, seed, vae)
    if key not in _REFERENCE_RUNS:
        _REFERENCE_RUNS[key] = reference_pipe(
            eeg, SUBJECT, seed, steps=steps, prior_steps=prior_steps, image_size=TEST_IMAGE_SIZE, vae=vae
        )
    return _REFERENCE_RUNS[key]


def trials(tiny_eeg, steps: int) -> np.ndarray:
    return tiny_eeg[:2] if steps == 1 else tiny_eeg[:1]  # a batch at 1 step; 4 steps cost 4x per trial


@pytest.mark.parametrize("steps", [1, 4])
def test_fp32_matches_reference(pipe, reference_pipe, tiny_eeg, steps):
    eeg = trials(tiny_eeg, steps)
    compare(pipe(eeg, SUBJECT, SEED, steps=steps, prior_steps=PRIOR_STEPS), reference(reference_pipe, eeg, steps=steps),
            MIN_PSNR_FP32, f"fp32 steps={steps}")


def test_fp32_matches_reference_with_50_prior_steps(pipe, reference_pipe, tiny_eeg):
    eeg = tiny_eeg[:1]
    compare(pipe(eeg, SUBJECT, SEED, steps=1, prior_steps=50), reference(reference_pipe, eeg, prior_steps=50),
            MIN_PSNR_FP32, "fp32 prior_steps=50")


@pytest.mark.parametrize("steps", [1, 4])
def test_fp16_matches_reference(pipe16, reference_pipe, tiny_eeg, steps):
    eeg = trials(tiny_eeg, steps)
    run = pipe16(eeg, SUBJECT, SEED, steps=steps, prior_steps=PRIOR_STEPS)
    ref = reference(reference_pipe, eeg, steps=steps)
    db = [psnr(x, y) for x, y in zip(run.images, ref.images)]
    enc, pri = cosines(run.eeg_embeds, ref.eeg_embeds), cosines(run.image_embeds, ref.image_embeds)
    print(f"\nfp16 steps={steps}: encoder cos min {enc.min():.6f}, prior cos min {pri.min():.6f}, PSNR min {min(db):.1f} dB")
    assert min(db) >= MIN_PSNR_FP16, f"fp16 image PSNR {db} dB"
    assert enc.min() >= 0.999 and pri.min() >= 0.999, (enc, pri)


def test_tiny_vae_matches_reference(tiny_bundle, reference_pipe, tiny_eeg):
    p = Pipeline.from_bundle(tiny_bundle, vae="tiny")
    eeg = tiny_eeg[:2]
    compare(p(eeg, SUBJECT, SEED, prior_steps=PRIOR_STEPS), reference(reference_pipe, eeg, vae="tiny"),
            MIN_PSNR_FP32, "fp32 tiny VAE")
    p.close()


def test_batch_equals_per_sample_runs(pipe, tiny_eeg):
    batch = pipe(tiny_eeg, SUBJECT, SEED, prior_steps=5)
    assert batch.images.shape[0] == 4
    for i in range(4):
        # sample i alone draws the noise of index 0: run the slice ending at i so that it keeps index i
        one = pipe(tiny_eeg[: i + 1], SUBJECT, SEED, prior_steps=5)
        assert np.abs(one.images[i].astype(int) - batch.images[i]).max() <= 1, i
        np.testing.assert_allclose(one.image_embeds[i], batch.image_embeds[i], atol=1e-5)
    first = pipe(tiny_eeg[:1], SUBJECT, SEED, prior_steps=5)
    assert np.abs(first.images[0].astype(int) - batch.images[0]).max() <= 1
    # more trials than max_batch: chunks of 4 keep each sample's noise stream
    six = pipe(np.concatenate([tiny_eeg, tiny_eeg[:2]]), SUBJECT, SEED, prior_steps=5)
    assert np.abs(six.images[:4].astype(int) - batch.images).max() <= 1
    assert psnr(six.images[4], batch.images[0]) < MAX_PERTURBED_PSNR  # index 4 has its own noise


def test_cli_infer_matches_cli_reference(tiny_bundle, tiny_dir, tmp_path):
    from click.testing import CliRunner

    from eeg2img_deploy.cli import cli

    eeg = str(tiny_dir / "eeg" / "synthetic_eeg.npy")
    common = ["--eeg", eeg, "--subject", str(SUBJECT), "--trials", "0:2", "--seed", "5", "--prior-steps", str(PRIOR_STEPS)]
    runner = CliRunner()
    ref = runner.invoke(cli, ["reference", "--weights", str(tiny_dir), "--image-size", str(TEST_IMAGE_SIZE),
                              "--out", str(tmp_path / "ref"), *common])
    assert ref.exit_code == 0, ref.output + repr(ref.exception)
    run = runner.invoke(cli, ["infer", "--bundle", str(tiny_bundle), "--out", str(tmp_path / "run"), *common])
    assert run.exit_code == 0, run.output + repr(run.exception)

    from PIL import Image

    a = json.loads((tmp_path / "ref" / "result.json").read_text())
    b = json.loads((tmp_path / "run" / "result.json").read_text())
    assert a["seed"] == b["seed"] == 5 and a["subject_ids"] == b["subject_ids"] == [SUBJECT, SUBJECT]
    enc = cosines(np.array(a["eeg_embeds"]), np.array(b["eeg_embeds"]))
    pri = cosines(np.array(a["image_embeds"]), np.array(b["image_embeds"]))
    assert enc.min() >= MIN_COS and pri.min() >= MIN_COS, (enc, pri)
    assert a["images"] == b["images"] == ["image_000.png", "image_001.png", "grid.png"]
    for name in a["images"]:
        x = np.asarray(Image.open(tmp_path / "ref" / name))
        y = np.asarray(Image.open(tmp_path / "run" / name))
        assert x.shape == y.shape and psnr(x, y) >= MIN_PSNR_FP32, name
    print(f"\nCLI: encoder cos min {enc.min():.7f}, prior cos min {pri.min():.7f}")


# ---- every input moves the output far beyond the parity tolerance ------------------------------------------
@pytest.fixture(scope="module")
def base(pipe, tiny_eeg):
    return pipe(tiny_eeg[:1], SUBJECT, SEED, prior_steps=PRIOR_STEPS)


def _moved(label: str, base_res, other, *, embeds: str | None) -> None:
    db = psnr(base_res.images[0], other.images[0])
    msg = f"{label}: PSNR {db:.1f} dB"
    if embeds:
        one_minus_cos = float(1 - cosines(getattr(base_res, embeds), getattr(other, embeds))[0])
        msg += f", {embeds} 1-cos {one_minus_cos:.3g}"
        assert one_minus_cos > MIN_PERTURBED_1MCOS, msg
    print(f"\n{msg}")
    assert db < MAX_PERTURBED_PSNR, msg


def test_eeg_moves_the_output(pipe, tiny_eeg, base):
    _moved("EEG trial 0 -> 1", base, pipe(tiny_eeg[1:2], SUBJECT, SEED, prior_steps=PRIOR_STEPS), embeds="eeg_embeds")
    noisy = tiny_eeg[:1] + np.random.default_rng(0).normal(0, 0.5, tiny_eeg[:1].shape).astype(np.float32)
    _moved("EEG + noise(0.5)", base, pipe(noisy, SUBJECT, SEED, prior_steps=PRIOR_STEPS), embeds="eeg_embeds")


def test_subject_moves_the_output(pipe, tiny_eeg, base):
    _moved("subject 8 -> 3", base, pipe(tiny_eeg[:1], 3, SEED, prior_steps=PRIOR_STEPS), embeds="eeg_embeds")


def test_image_embedding_moves_the_image(pipe, tiny_eeg, base):
    other = pipe(tiny_eeg[1:2], SUBJECT, SEED, prior_steps=PRIOR_STEPS).image_embeds
    assert 1 - cosines(base.image_embeds, other)[0] > MIN_PERTURBED_1MCOS
    images = [pipe.decode(pipe.denoise(e, SEED, 0, steps=1, ip_scale=1.0)) for e in (base.image_embeds, other)]
    np.testing.assert_array_equal(images[0], base.images)  # the stage calls are the pipeline's
    db = psnr(images[0][0], images[1][0])
    print(f"\nimage embedding swapped (same noise): PSNR {db:.1f} dB")
    assert db < MAX_PERTURBED_PSNR


def test_ip_scale_moves_the_image(pipe, tiny_eeg, base):
    _moved("ip_scale 1 -> 0", base, pipe(tiny_eeg[:1], SUBJECT, SEED, prior_steps=PRIOR_STEPS, ip_scale=0.0), embeds=None)


def test_seed_moves_the_output(pipe, tiny_eeg, base):
    _moved("seed 3 -> 4", base, pipe(tiny_eeg[:1], SUBJECT, SEED + 1, prior_steps=PRIOR_STEPS), embeds="image_embeds")
