"""EEG trials as the readers return them: float32 (N, 63, 250) with where they came from. numpy only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eeg2img_deploy.errors import EEGInputError

PathLike = str | Path


@dataclass(frozen=True, eq=False)
class EEGTrials:
    """EEG trials ready for the encoder, with where they came from."""

    data: np.ndarray  # float32 (N, C, T), C and T as in the spec
    channel_names: tuple[str, ...]
    sfreq: float  # Hz
    source: str  # human-readable: file and how it was read
    # Per trial: the image condition (THINGS files) or event code (raw files); None if unknown.
    condition_index: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.data.ndim != 3 or self.data.shape[1] != len(self.channel_names):
            raise EEGInputError(
                f"EEGTrials data has shape {self.data.shape}; expected (N, {len(self.channel_names)}, T)"
            )
        if self.condition_index is not None and len(self.condition_index) != len(self.data):
            raise EEGInputError(
                f"EEGTrials has {len(self.condition_index)} condition indices for {len(self.data)} trials"
            )

    def __len__(self) -> int:
        return int(self.data.shape[0])
