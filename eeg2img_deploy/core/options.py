"""The options of one run, checked where they are made (the CLI, the library, a served request alike)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SettingsError

LOW_LEVEL_MODES = ("image", "latent")


@dataclass(frozen=True)
class LowLevelOptions:
    strength: float = 0.5  # the paper's demo; the cut is int(steps * strength) steps
    mode: str = "image"  # "image": the paper's decode/encode round trip; "latent": skip it

    def __post_init__(self):
        if self.mode not in LOW_LEVEL_MODES:
            raise SettingsError(f"--low-level-mode must be one of {LOW_LEVEL_MODES}, got {self.mode!r}")
        if not 0.0 < self.strength <= 1.0:
            raise SettingsError(f"--strength must be in (0, 1], got {self.strength}")


def check_low_level_size(latent_side: int, image_size: int) -> None:
    """The encoder's output size is fixed by its layers (the paper's: 64x64 latents, 512x512 images)."""
    if latent_side * 8 != image_size:
        raise SettingsError(
            f"the low-level encoder makes {latent_side}x{latent_side} latents ({latent_side * 8}x{latent_side * 8} "
            f"images), not {image_size // 8}x{image_size // 8}: use --image-size {latent_side * 8}"
        )
