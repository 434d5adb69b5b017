"""Feed diffusers' schedulers the shared numpy noise instead of torch's generator.

diffusers draws DDPM variance noise and Euler-ancestral noise inside ``scheduler.step()`` through
the module-level ``randn_tensor``. The torch-free runtime cannot reproduce torch's generator, so
the reference swaps that one function, for the duration of a call, for draws from
:class:`~eeg2img_deploy.core.noise.NoiseSource`. Everything else stays diffusers' own code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType

from ..core.noise import NoiseSource


@contextlib.contextmanager
def shared_noise(scheduler_module: ModuleType, noise: NoiseSource) -> Iterator[None]:
    import torch

    original = scheduler_module.randn_tensor

    def draw(shape, generator=None, device=None, dtype=None, layout=None):  # noqa: ARG001 - diffusers' signature
        if shape[0] != noise.batch:
            raise RuntimeError(f"scheduler asked for noise of batch {shape[0]}, the noise source has {noise.batch}")
        return torch.from_numpy(noise.normal(shape[1:])).to(device=device, dtype=dtype)

    setattr(scheduler_module, "randn_tensor", draw)  # ModuleType reads any attribute, assigns none (typeshed)
    try:
        yield
    finally:
        setattr(scheduler_module, "randn_tensor", original)
