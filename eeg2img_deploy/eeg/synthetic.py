"""A short synthetic continuous recording in a real raw format (FIF), with annotated stimuli.

``init-tiny`` writes one next to the tiny weights so that the raw path (``infer --eeg rec_raw.fif``)
and the live path (``stream --replay rec_raw.fif``) run with no amplifier and no download. The
signal is unit-variance noise (whitened-looking, like ``tiny.synthetic_eeg``) plus an evoked response
after each stimulus that differs from stimulus to stimulus, so every epoch gives its own image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eeg2img_deploy.eeg.mne_preprocess import _import_mne
from eeg2img_deploy.eeg.spec import CHANNELS_63
from eeg2img_deploy.eeg.trials import PathLike

STIMULUS = "stimulus"  # the annotations' description
LEAD_S = 0.5  # before the first stimulus (the epoch needs 0.2 s)
TAIL_S = 1.5  # after the last stimulus (the epoch needs 1.0 s)


def write_tiny_recording(
    path: PathLike, *, n_stimuli: int = 6, soa_s: float = 1.0, sfreq: float = 500.0, seed: int = 0,
    stim_channel: str | None = None, channels: Sequence[str] = CHANNELS_63,
) -> Path:
    """Write a FIF recording of ``channels`` (the paper's 63) with ``n_stimuli`` annotated stimuli every ``soa_s`` s.

    With ``stim_channel`` the stimuli are codes 1, 2, 1, ... on a stim channel of that name instead
    of annotations (one sample each, as a trigger line records them).
    """
    mne = _import_mne()
    path = Path(path)
    rng = np.random.default_rng(seed)
    n = int(round((LEAD_S + (n_stimuli - 1) * soa_s + TAIL_S) * sfreq))
    data = rng.normal(0.0, 1.0, size=(len(channels), n))
    onsets = LEAD_S + soa_s * np.arange(n_stimuli)
    t = np.arange(int(sfreq)) / sfreq
    bump = np.exp(-(((t - 0.15) / 0.04) ** 2))
    for onset in onsets:
        i = int(round(onset * sfreq))
        data[:, i : i + len(bump)] += rng.normal(0.0, 2.0, size=(len(channels), 1)) * bump[: n - i]
    names, types = list(channels), ["eeg"] * len(channels)
    if stim_channel:
        stim = np.zeros((1, n))
        stim[0, np.round(onsets * sfreq).astype(int)] = 1 + np.arange(n_stimuli) % 2
        data, names, types = np.vstack([data, stim]), [*names, stim_channel], [*types, "stim"]
    raw = mne.io.RawArray(data, mne.create_info(names, sfreq, types), verbose="error")
    if not stim_channel:
        raw.set_annotations(mne.Annotations(onsets, np.zeros(n_stimuli), [STIMULUS] * n_stimuli))
    path.parent.mkdir(parents=True, exist_ok=True)
    raw.save(path, overwrite=True, verbose="error")
    return path
