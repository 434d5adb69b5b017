"""The whole reference pipeline on the tiny set: EEG + subject -> images."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from support import TEST_IMAGE_SIZE

PRIOR_STEPS = 5
SUBJECT = 8


def run(pipe, eeg, seed=0, **kw):
    return pipe(eeg, SUBJECT, seed, **{"prior_steps": PRIOR_STEPS, "image_size": TEST_IMAGE_SIZE, **kw})


@pytest.fixture(scope="module")
def batch4(reference_pipe, tiny_eeg):
    assert len(tiny_eeg) == 4
    return run(reference_pipe, tiny_eeg)


def test_outputs(batch4):
    s = TEST_IMAGE_SIZE
    assert batch4.images.shape == (4, s, s, 3) and batch4.images.dtype == np.uint8
    assert batch4.eeg_embeds.shape == (4, 1024) and batch4.image_embeds.shape == (4, 1024)
    assert batch4.latents.shape == (4, 4, s // 8, s // 8)
    assert np.abs(batch4.image_embeds).max() <= 1.0
    assert set(batch4.timings_ms) == {"encoder", "prior", "unet", "decoder", "total"}


def test_deterministic_for_a_seed(reference_pipe, tiny_eeg, batch4):
    again = run(reference_pipe, tiny_eeg)
    np.testing.assert_array_equal(batch4.images, again.images)
    np.testing.assert_array_equal(batch4.image_embeds, again.image_embeds)


def test_batch_samples_match_smaller_batches(reference_pipe, tiny_eeg, batch4):
    # Noise streams are per sample index, so sample i of a batch is sample i of any batch holding it
    # at index i, whatever the other trials are.
    one = run(reference_pipe, tiny_eeg[:1])
    assert np.abs(one.images.astype(int) - batch4.images[:1]).max() <= 1
    two = run(reference_pipe, tiny_eeg[:2])
    assert np.abs(two.images.astype(int) - batch4.images[:2]).max() <= 1
    shuffled = tiny_eeg[[2, 0, 1, 3]]
    other = run(reference_pipe, shuffled)
    assert np.abs(other.images[3].astype(int) - batch4.images[3]).max() <= 1
    np.testing.assert_allclose(other.eeg_embeds, batch4.eeg_embeds[[2, 0, 1, 3]], atol=1e-5)


@pytest.mark.parametrize("steps", [1, 4])
def test_steps(reference_pipe, tiny_eeg, steps):
    res = run(reference_pipe, tiny_eeg[:1], steps=steps)
    assert res.images.shape == (1, TEST_IMAGE_SIZE, TEST_IMAGE_SIZE, 3)


def test_tiny_vae(reference_pipe, tiny_eeg, batch4):
    res = run(reference_pipe, tiny_eeg[:2], vae="tiny")
    assert res.images.shape == (2, TEST_IMAGE_SIZE, TEST_IMAGE_SIZE, 3) and res.images.dtype == np.uint8
    # only the decoder differs (batch size changes float32 reduction order: latents reach ~60)
    np.testing.assert_allclose(res.latents, batch4.latents[:2], atol=2e-3)
    assert res.images.std() > 20


def test_bad_inputs(reference_pipe, tiny_eeg):
    from eeg2img_deploy.errors import EEGInputError

    with pytest.raises(ValueError, match="vae"):
        run(reference_pipe, tiny_eeg[:1], vae="large")
    with pytest.raises(EEGInputError):
        run(reference_pipe, tiny_eeg[:1, :, :200])
    with pytest.raises(EEGInputError):
        reference_pipe(tiny_eeg[:2], [8, 8, 8], 0)
