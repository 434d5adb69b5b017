"""The one noise source shared by the PyTorch reference and the torch-free runtime.

Both sides draw every random number through :class:`NoiseSource`, in the same order, so a seed gives
bit-identical noise in both. The order is part of the contract:

1. prior: initial x_T ``(B, 1024)``, then one variance draw ``(B, 1024)`` per step except the last
   (DDPM adds no noise at t=0);
2. Stage II: initial latents ``(B, 4, H/8, W/8)``, then one ancestral draw of the same shape per
   Euler-ancestral step.
3. The low-level path (purpose ``low_level``, instead of 2; all ``(B, 4, H/8, W/8)``): the VAE posterior
   sample (``latent_dist.sample()``; drawn in latent mode too, unused, so both modes share the rest),
   the noise added to the start latents, then one ancestral draw per step of the cut schedule.
4. captions: the paper samples the prior a second time (4 steps) for the caption, from its own
   stream ("caption_prior"), in the prior's order; asking for a caption never changes the image.

Each (seed, sample index, purpose) has its own stream: a batch never changes what sample i draws,
and the prior's step count never shifts the Stage II noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import OptionError, SettingsError


PURPOSES = {"prior": 0, "image": 1, "low_level": 2, "caption_prior": 3}


PerSample = int | Sequence[int] | np.ndarray  # one integer for the batch, or one per sample


class NoiseSource:
    """Per-sample standard-normal float32 streams: ``PCG64(SeedSequence([seed, i, purpose]))``."""

    def __init__(self, seed: PerSample, batch: int = 1, purpose: str = "prior",
                 first: PerSample = 0):
        """Streams for samples ``first .. first + batch - 1`` (a chunk of a larger batch).

        ``seed`` and ``first`` may also be one value per sample (sequences of length ``batch``): sample i
        then draws from stream ``(seed[i], first[i])``. A server batching requests with different seeds
        this way gives each request the images it would get alone.
        """
        if batch < 1:
            raise SettingsError(f"a noise source needs a batch >= 1, got {batch}")
        if purpose not in PURPOSES:
            raise SettingsError(f"noise purpose must be one of {sorted(PURPOSES)}, got {purpose!r}")
        seeds = _per_sample(seed, batch, "seed")
        indices = _per_sample(first, batch, "first") if np.ndim(first) else [_int(first) + i for i in range(batch)]
        if min(seeds) < 0:
            raise OptionError(f"--seed must be >= 0, got {min(seeds)}")
        self.seed = seeds[0]
        self._streams = [
            np.random.Generator(np.random.PCG64(np.random.SeedSequence([s, i, PURPOSES[purpose]])))
            for s, i in zip(seeds, indices)
        ]

    @property
    def batch(self) -> int:
        return len(self._streams)

    def normal(self, shape: Sequence[int]) -> np.ndarray:
        """One draw of ``(batch, *shape)`` float32, sample i from stream i."""
        return np.stack([g.standard_normal(tuple(shape), dtype=np.float32) for g in self._streams])


def _int(value: PerSample) -> int:
    return int(np.asarray(value))  # a Python or numpy integer, or a 0-d array


def _per_sample(value: PerSample, batch: int, name: str) -> list[int]:
    if not np.ndim(value):
        return [_int(value)] * batch
    values = [int(v) for v in np.asarray(value).reshape(-1)]
    if len(values) != batch:
        raise SettingsError(f"{name} has {len(values)} values for a batch of {batch}")
    return values
