"""The eight reconstruction metrics of a set against its truth: :func:`reconstruction_metrics`.

The truth's side (its 425 px pixels and every network's features) is computed once by
:class:`Truth` and reused, so a sweep scores each setting's images against the same truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import scores
from .networks import CHUNK, MetricNetworks
from .protocol import METRIC_KEYS, NETWORK_METRICS


@dataclass(frozen=True)
class Truth:
    pixels: np.ndarray  # (N, 425, 425, 3) float32 in [0, 1]
    features: dict[str, np.ndarray]  # metric key -> (N, D)

    @classmethod
    def of(cls, images: np.ndarray, networks: MetricNetworks) -> Truth:
        return cls(networks.pixels(images), networks.features(images))

    def __len__(self) -> int:
        return len(self.pixels)


def score_features(recon_features: dict[str, np.ndarray], truth_features: dict[str, np.ndarray]) -> dict[str, float]:
    """The six network metrics from both sets' features."""
    out = {}
    for m in NETWORK_METRICS:
        fn = scores.two_way_identification if m.score == "two_way" else scores.correlation_distance
        out[m.key] = fn(recon_features[m.key], truth_features[m.key])
    return out


def pixel_scores(recons: np.ndarray, truth: Truth, networks: MetricNetworks) -> dict[str, float]:
    """PixCorr and SSIM, a chunk of pairs at a time (200 pairs at 425 px in float64 would need gigabytes)."""
    r, s = [], []
    for i in range(0, len(recons), CHUNK):
        p, t = networks.pixels(recons[i:i + CHUNK]), truth.pixels[i:i + CHUNK]
        r.append(scores.pearson_per_pair(p, t))
        s.append(scores.ssim_per_pair(scores.rgb2gray(p), scores.rgb2gray(t)))
    return {"pixcorr": float(np.concatenate(r).mean()), "ssim": float(np.concatenate(s).mean())}


def reconstruction_metrics(recons: np.ndarray, truth: Truth, networks: MetricNetworks) -> dict[str, float]:
    """metric key -> value, in Table 1's order, for (N, H, W, 3) uint8 reconstructions paired with ``truth``."""
    if len(recons) != len(truth):
        raise ValueError(f"{len(recons)} reconstructions for {len(truth)} truth images")
    values = {**pixel_scores(recons, truth, networks), **score_features(networks.features(recons), truth.features)}
    return {k: values[k] for k in METRIC_KEYS}
