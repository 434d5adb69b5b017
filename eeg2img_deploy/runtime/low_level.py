"""The low-level path in numpy + the backend: EEG -> VAE latent -> start latents of an img2img Stage II.

Image mode (the paper's ``low_level_image=`` entry): ``low_level_encoder`` -> ``vae_decoder`` ->
8-bit image -> CLIP mean/std normalisation -> ``vae_encoder`` (posterior sample and scaling inside
the graph, its noise an input) -> ``+ unit noise``. Latent mode (the paper's ``low_level_latent=``
entry) skips the round trip: ``z * scaling_factor + unit noise``. Either way the pipeline then runs
the Euler-ancestral schedule cut at :func:`~.schedulers.img2img_cut`. Every quirk is the reference's
(:mod:`eeg2img_deploy.reference.low_level`, which names them), and so is the noise order
(:mod:`.noise`, purpose ``low_level``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import SettingsError
from ..names import Constants
from .images import to_uint8
from .noise import NoiseSource
from .schedulers import img2img_cut

MODES = ("image", "latent")
STAGES = ("low_level_encoder", "vae_decoder", "vae_encoder")  # what the path runs (vae_decoder: the full VAE)
CONVENTIONS = ("unscaled", "scaled")


@dataclass(frozen=True)
class LowLevelOptions:
    strength: float = 0.5  # the paper's demo; the cut is int(steps * strength) steps
    mode: str = "image"  # "image": the paper's decode/encode round trip; "latent": skip it

    def __post_init__(self):
        if self.mode not in MODES:
            raise SettingsError(f"--low-level-mode must be one of {MODES}, got {self.mode!r}")
        if not 0.0 < self.strength <= 1.0:
            raise SettingsError(f"--strength must be in (0, 1], got {self.strength}")


def check_low_level_size(latent_side: int, image_size: int) -> None:
    """The encoder's output size is fixed by its layers (the paper's: 64x64 latents, 512x512 images)."""
    if latent_side * 8 != image_size:
        raise SettingsError(
            f"the low-level encoder makes {latent_side}x{latent_side} latents ({latent_side * 8}x{latent_side * 8} "
            f"images), not {image_size // 8}x{image_size // 8}: use --image-size {latent_side * 8}"
        )


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


Stage = Callable[[str, dict[str, np.ndarray]], np.ndarray]  # (stage name, feeds) -> first output


@dataclass(frozen=True)
class LowLevelPath:
    """What the runtime pipeline needs from the bundle to make Stage II's start latents."""

    run: Stage  # the pipeline's stage call (casts feeds, times the backend)
    vae_scale: float
    clip_mean: np.ndarray
    clip_std: np.ndarray
    latent_convention: str = "unscaled"

    @classmethod
    def open(cls, run: Stage, constants: dict[str, np.ndarray], latent_side: int, image_size: int,
             latent_convention: str) -> LowLevelPath:
        """The path over a pipeline's stage call and its bundle's constants (sizes checked)."""
        check_low_level_size(latent_side, image_size)
        return cls(run=run, vae_scale=float(constants[Constants.VAE_SCALING_FACTOR][0]),
                   clip_mean=constants[Constants.CLIP_IMAGE_MEAN], clip_std=constants[Constants.CLIP_IMAGE_STD],
                   latent_convention=latent_convention)

    def encode(self, eeg: np.ndarray) -> np.ndarray:
        return self.run("low_level_encoder", {"eeg": eeg})

    def start_latents(self, z: np.ndarray, noise: NoiseSource, mode: str) -> np.ndarray:
        shape = z.shape[1:]
        scaled = z * np.float32(self.vae_scale) if self.latent_convention == "unscaled" else z
        if mode == "image":
            # the decoder graph divides by the scaling factor: feed it scaled latents
            images = as_uint8_images(self.run("vae_decoder", {"latents": scaled}))
            pixels = clip_normalise(images, self.clip_mean, self.clip_std)
            latents = self.run("vae_encoder", {"image": pixels, "noise": noise.normal(shape)})
        else:
            noise.normal(shape)  # the posterior draw, unused: both modes share the draws below
            latents = scaled
        return (latents + noise.normal(shape)).astype(np.float32)


def cut_for(path: LowLevelPath | None, options: LowLevelOptions | None, steps: int) -> int | None:
    """The img2img cut of a call asking for ``options`` (None: no low-level path), refused on a pipeline without it."""
    if options is None:
        return None
    if path is None:
        raise SettingsError("this pipeline was opened without the low-level stages: open it with low_level=True "
                            "(infer --low-level)")
    return img2img_cut(steps, options.strength)
