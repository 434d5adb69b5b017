"""Each score against a second implementation on tiny inputs, and the scores' ceilings and chance levels."""

from __future__ import annotations

import numpy as np
import pytest

from eeg2img_deploy.eval import scores


@pytest.fixture
def images():
    """Two sets of 5 small RGB images in [0, 1] with shared structure (recons = truth + noise)."""
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 1, (5, 40, 40, 3))
    recons = np.clip(truth + rng.normal(0, 0.2, truth.shape), 0, 1)
    return recons, truth


def test_pixcorr_is_numpys_corrcoef_per_pair(images):
    recons, truth = images
    direct = np.mean([np.corrcoef(r.ravel(), t.ravel())[0, 1] for r, t in zip(recons, truth)])
    assert scores.pixcorr(recons, truth) == pytest.approx(direct, abs=1e-12)
    assert scores.pixcorr(truth, truth) == pytest.approx(1.0, abs=1e-12)
    assert scores.pixcorr(recons * 255, truth) == pytest.approx(direct, abs=1e-12)  # scale-free, as r is
    assert abs(scores.pixcorr(recons[::-1], truth)) < 0.2 < direct  # unrelated pairs: near 0


def test_rgb2gray_and_ssim_are_scikit_images(images):
    skimage = pytest.importorskip("skimage")
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity

    recons, truth = images
    np.testing.assert_allclose(scores.rgb2gray(truth), rgb2gray(truth), atol=1e-12)
    # the notebook's call, per pair (scikit-image >= 0.20 ignores its multichannel=True: 2-D SSIM on gray)
    ours = scores.ssim_per_pair(scores.rgb2gray(recons), scores.rgb2gray(truth))
    ref = [structural_similarity(rgb2gray(r), rgb2gray(t), gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1.0) for r, t in zip(recons, truth)]
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    assert skimage.__version__ and scores.ssim(truth, truth) == pytest.approx(1.0, abs=1e-12)
    assert scores.ssim(recons, truth) < 0.9  # the noise costs far more than the tolerance


def _two_way_as_the_notebook(recon_feats, truth_feats):
    """The notebook's code path: np.corrcoef of [truths; recons], r < diag(r) counted down each column."""
    n = len(truth_feats)
    r = np.corrcoef(truth_feats, recon_feats)[:n, n:]
    return np.mean(np.sum(r < np.diag(r), 0)) / (n - 1)


def test_two_way_identification_is_the_notebooks():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(12, 30))
    recons = truth + rng.normal(0, 1.5, truth.shape)
    assert scores.two_way_identification(recons, truth) == pytest.approx(_two_way_as_the_notebook(recons, truth), abs=1e-12)
    assert scores.two_way_identification(truth, truth) == 1.0  # identical: every other image loses
    shuffled = [scores.two_way_identification(truth[rng.permutation(12)], truth) for _ in range(50)]
    assert 0.35 < np.mean(shuffled) < 0.6  # shuffled pairs: chance, 0.5
    unrelated = rng.normal(size=truth.shape)
    assert abs(scores.two_way_identification(unrelated, truth) - 0.5) < 0.25


def test_two_way_per_image_counts_the_other_images_only():
    truth = np.array([[0.0, 1, 2, 3], [3, 1, 0, 2], [1, 0, 3, 2]])
    recons = truth[[0, 2, 1]]  # recon 0 right, 1 and 2 swapped
    per = scores.two_way_per_image(recons, truth)
    assert per[0] == 1.0 and per[1] < 1.0 and per[2] < 1.0
    assert per.shape == (3,)


def test_correlation_distance_is_scipys():
    from scipy.spatial.distance import correlation

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(6, 50)), rng.normal(size=(6, 50))
    assert scores.correlation_distance(a, b) == pytest.approx(np.mean([correlation(x, y) for x, y in zip(a, b)]), abs=1e-12)
    assert scores.correlation_distance(a, a) == pytest.approx(0.0, abs=1e-12)
    assert scores.correlation_distance(a, -a) == pytest.approx(2.0, abs=1e-12)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="same shape"):
        scores.pixcorr(np.zeros((2, 4, 4, 3)), np.zeros((3, 4, 4, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        scores.two_way_identification(np.zeros((1, 4)), np.zeros((1, 4)))
