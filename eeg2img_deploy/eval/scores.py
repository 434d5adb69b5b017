"""The scores of the paper's Table 1 on arrays that are already at the protocol's sizes: numpy only.

- :func:`pixcorr`: Pearson r between each reconstruction and its truth (all pixels, RGB), averaged.
- :func:`ssim`: grayscale SSIM with Gaussian weights (sigma 1.5, 11x11 window), population covariance,
  data range 1, averaged over the pairs: scikit-image's ``structural_similarity`` with the notebook's
  arguments, written out here so a whole batch is one vectorised pass (the tests hold it to
  scikit-image).
- :func:`two_way_identification`: for each reconstruction, the fraction of the *other* truth images
  whose feature correlation with it is lower than its own truth's (ties count as failures), averaged;
  chance is 0.5.
- :func:`correlation_distance`: 1 - Pearson r between each pair's features, averaged; lower is better.
"""

from __future__ import annotations

import numpy as np

GRAY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])  # scikit-image's rgb2gray (ITU-R BT.709 luma)
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # scikit-image's: an 11x11 window at sigma 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _pairs(a: np.ndarray, b: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim < 2 or len(a) < 1:
        raise ValueError(f"{what}: need two arrays of the same shape (N, ...), got {a.shape} and {b.shape}")
    return a.reshape(len(a), -1), b.reshape(len(b), -1)


def _centred_unit(x: np.ndarray) -> np.ndarray:
    """Each row minus its mean, divided by its norm (a constant row stays zero: its r is 0, not NaN)."""
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def pearson_per_pair(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of row i of ``a`` with row i of ``b`` (each flattened), one per pair."""
    a, b = _pairs(a, b, "pearson")
    return np.einsum("ij,ij->i", _centred_unit(a), _centred_unit(b))


def pixcorr(recons: np.ndarray, truth: np.ndarray) -> float:
    """Mean per-pair Pearson r of (N, H, W, 3) images (any float scale: r ignores it)."""
    return float(pearson_per_pair(recons, truth).mean())


def rgb2gray(images: np.ndarray) -> np.ndarray:
    """(..., 3) floats in [0, 1] -> (...) luma, as scikit-image's ``rgb2gray``."""
    return np.asarray(images, np.float64) @ GRAY_WEIGHTS


def _gaussian(x: np.ndarray) -> np.ndarray:
    """scipy's Gaussian filter over the last two axes (mode 'reflect', as scikit-image calls it)."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(x, sigma=(0, SSIM_SIGMA, SSIM_SIGMA), truncate=SSIM_TRUNCATE, mode="reflect")


def ssim_per_pair(recons_gray: np.ndarray, truth_gray: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Mean SSIM of each (H, W) grayscale pair of two (N, H, W) stacks."""
    x, y = np.asarray(recons_gray, np.float64), np.asarray(truth_gray, np.float64)
    if x.shape != y.shape or x.ndim != 3:
        raise ValueError(f"ssim: need two (N, H, W) stacks of the same shape, got {x.shape} and {y.shape}")
    ux, uy = _gaussian(x), _gaussian(y)
    vx = _gaussian(x * x) - ux * ux  # population (co)variances: use_sample_covariance=False
    vy = _gaussian(y * y) - uy * uy
    vxy = _gaussian(x * y) - ux * uy
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # half the window: the border scikit-image leaves out
    return s[:, pad:-pad, pad:-pad].mean(axis=(1, 2))


def ssim(recons: np.ndarray, truth: np.ndarray) -> float:
    """Mean grayscale SSIM of (N, H, W, 3) images in [0, 1]."""
    return float(ssim_per_pair(rgb2gray(recons), rgb2gray(truth)).mean())


def correlation_matrix(truth_features: np.ndarray, recon_features: np.ndarray) -> np.ndarray:
    """r[i, j] = Pearson r of truth i's features with reconstruction j's."""
    t, r = _pairs(truth_features, recon_features, "features")
    return _centred_unit(t) @ _centred_unit(r).T


def two_way_per_image(recon_features: np.ndarray, truth_features: np.ndarray) -> np.ndarray:
    """For reconstruction j: the fraction of truths i != j with r[i, j] < r[j, j]."""
    r = correlation_matrix(truth_features, recon_features)
    n = len(r)
    if n < 2:
        raise ValueError("two-way identification needs at least 2 pairs")
    congruent = np.diag(r)
    return (r < congruent[None, :]).sum(axis=0) / (n - 1)  # the diagonal never counts (r_jj < r_jj is false)


def two_way_identification(recon_features: np.ndarray, truth_features: np.ndarray) -> float:
    return float(two_way_per_image(recon_features, truth_features).mean())


def correlation_distance(recon_features: np.ndarray, truth_features: np.ndarray) -> float:
    """Mean of 1 - r over the pairs (scipy's ``distance.correlation`` per pair): 0 for identical features."""
    return float((1.0 - pearson_per_pair(recon_features, truth_features)).mean())
