"""The low-level path in numpy + the backend: EEG -> VAE latent -> start latents of an img2img Stage II.

Image mode (the paper's ``low_level_image=`` entry): ``low_level_encoder`` -> ``vae_decoder`` ->
8-bit image -> CLIP mean/std normalisation -> ``vae_encoder`` (posterior sample and scaling inside
the graph, its noise an input) -> ``+ unit noise``. Latent mode (the paper's ``low_level_latent=``
entry) skips the round trip: ``z * scaling_factor + unit noise``. Either way the pipeline then runs
the Euler-ancestral schedule cut at :func:`~..core.options.img2img_cut`. Every quirk is the reference's
(:mod:`eeg2img_deploy.reference.low_level`, which names them), and so is the noise order
(:mod:`..core.noise`, purpose ``low_level``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core.images import to_uint8
from ..core.noise import NoiseSource
from ..core.options import RunOptions, check_low_level_size
from ..core.options import img2img_cut
from ..errors import SettingsError
from ..names import Constants, Stage


def as_uint8_images(decoded: np.ndarray) -> np.ndarray:
    """The decoder's output as (B, H, W, 3) uint8: float (B, 3, H, W) in [-1, 1], or already uint8 NHWC."""
    if decoded.dtype == np.uint8:
        return decoded if decoded.shape[-1] == 3 else np.ascontiguousarray(decoded.transpose(0, 2, 3, 1))
    return to_uint8(decoded)


def clip_normalise(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 (B, H, W, 3) -> (B, 3, H, W) float32 as ``CLIPImageProcessor`` at the image size: x / 255, mean/std."""
    x = images.astype(np.float32) * np.float32(1 / 255)
    x = (x - mean.astype(np.float32)) / std.astype(np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


StageCall = Callable[[str, dict[str, np.ndarray]], np.ndarray]  # (stage name, feeds) -> first output


@dataclass(frozen=True)
class LowLevelPath:
    """What the runtime pipeline needs from the bundle to make Stage II's start latents."""

    run: StageCall  # the pipeline's stage call (casts feeds, times the backend)
    vae_scale: float
    clip_mean: np.ndarray
    clip_std: np.ndarray
    latent_convention: str = "unscaled"

    @classmethod
    def open(cls, run: StageCall, constants: dict[str, np.ndarray], latent_side: int, image_size: int,
             latent_convention: str) -> LowLevelPath:
        """The path over a pipeline's stage call and its bundle's constants (sizes checked)."""
        check_low_level_size(latent_side, image_size)
        return cls(run=run, vae_scale=float(constants[Constants.VAE_SCALING_FACTOR][0]),
                   clip_mean=constants[Constants.CLIP_IMAGE_MEAN], clip_std=constants[Constants.CLIP_IMAGE_STD],
                   latent_convention=latent_convention)

    def encode(self, eeg: np.ndarray) -> np.ndarray:
        return self.run(Stage.LOW_LEVEL_ENCODER, {"eeg": eeg})

    def start_latents(self, z: np.ndarray, noise: NoiseSource, mode: str) -> np.ndarray:
        shape = z.shape[1:]
        scaled = z * np.float32(self.vae_scale) if self.latent_convention == "unscaled" else z
        if mode == "image":
            # the decoder graph divides by the scaling factor: feed it scaled latents
            images = as_uint8_images(self.run(Stage.VAE_DECODER, {"latents": scaled}))
            pixels = clip_normalise(images, self.clip_mean, self.clip_std)
            latents = self.run(Stage.VAE_ENCODER, {"image": pixels, "noise": noise.normal(shape)})
        else:
            noise.normal(shape)  # the posterior draw, unused: both modes share the draws below
            latents = scaled
        return (latents + noise.normal(shape)).astype(np.float32)


def cut_for(path: LowLevelPath | None, run: RunOptions) -> tuple[LowLevelPath, int] | None:
    """The path and the img2img cut of a run asking for the low-level path (None: not asked), refused on a
    pipeline without it."""
    if not run.low_level:
        return None
    if path is None:
        raise SettingsError("this pipeline was opened without the low-level stages: open it with low_level=True "
                            "(infer --low-level)")
    return path, img2img_cut(run.resolved().steps, run.strength)
