"""What the encoder expects as EEG input, and the checks that say why an array does not fit.

numpy only: the torch-free runtime imports this module. The defaults are the paper's THINGS-EEG2
preprocessing (63 channels, 250 Hz, 250 samples = 0..996 ms after stimulus onset).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from eeg2img_deploy.errors import EEGInputError

# The channel order of THINGS-EEG2 (`EEG-preprocessing/preprocessing.py`); the encoder's weights are
# tied to it (channel i is token i), so order matters, not just the set.
CHANNELS_63: tuple[str, ...] = (
    "Fp1",
    "Fp2",
    "AF7",
    "AF3",
    "AFz",
    "AF4",
    "AF8",
    "F7",
    "F5",
    "F3",
    "F1",
    "F2",
    "F4",
    "F6",
    "F8",
    "FT9",
    "FT7",
    "FC5",
    "FC3",
    "FC1",
    "FCz",
    "FC2",
    "FC4",
    "FC6",
    "FT8",
    "FT10",
    "T7",
    "C5",
    "C3",
    "C1",
    "Cz",
    "C2",
    "C4",
    "C6",
    "T8",
    "TP9",
    "TP7",
    "CP5",
    "CP3",
    "CP1",
    "CPz",
    "CP2",
    "CP4",
    "CP6",
    "TP8",
    "TP10",
    "P7",
    "P5",
    "P3",
    "P1",
    "Pz",
    "P2",
    "P4",
    "P6",
    "P8",
    "PO7",
    "PO3",
    "POz",
    "PO4",
    "PO8",
    "O1",
    "Oz",
    "O2",
)

# The paper epochs -0.2..1.0 s (baseline before onset), then drops the samples before onset.
EPOCH_TMIN = -0.2
BASELINE = (None, 0.0)

# Sampling rates within this relative distance count as equal (rates derived from `times` carry
# float rounding).
_SFREQ_RTOL = 1e-4


@dataclass(frozen=True)
class EEGSpec:
    """Shape, channel order and timing of one encoder input trial."""

    channels: tuple[str, ...] = CHANNELS_63
    sfreq: float = 250.0  # Hz, after resampling
    n_times: int = 250  # samples per trial
    tmin: float = 0.0  # seconds from stimulus onset of the first sample

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(str(c) for c in self.channels))
        if len(set(self.channels)) != len(self.channels):
            raise EEGInputError(f"EEGSpec channels contain duplicates: {list(self.channels)}")
        if not self.channels or self.n_times <= 0 or not self.sfreq > 0:
            raise EEGInputError(
                f"EEGSpec needs at least one channel, n_times > 0 and sfreq > 0; found "
                f"{len(self.channels)} channels, n_times={self.n_times}, sfreq={self.sfreq}"
            )

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of one trial: (channels, time)."""
        return (self.n_channels, self.n_times)

    @property
    def times(self) -> np.ndarray:
        """Sample times in seconds (0.0 .. 0.996 for the paper)."""
        return self.tmin + np.arange(self.n_times) / self.sfreq

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EEGSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise EEGInputError(
                f"EEG spec has unknown keys {unknown}; expected only {sorted(known)}. "
                "The manifest may come from a newer eeg2img-deploy: upgrade it."
            )
        kw: dict[str, Any] = dict(d)
        if "channels" in kw:
            kw["channels"] = tuple(kw["channels"])
        if "sfreq" in kw:
            kw["sfreq"] = float(kw["sfreq"])
        if "n_times" in kw:
            kw["n_times"] = int(kw["n_times"])
        if "tmin" in kw:
            kw["tmin"] = float(kw["tmin"])
        return cls(**kw)


DEFAULT_SPEC = EEGSpec()  # the paper's input; frozen, so safe as a default argument


def validate_eeg(
    x: Any,
    spec: EEGSpec = DEFAULT_SPEC,
    *,
    channel_names: Sequence[str] | None = None,
    sfreq: float | None = None,
) -> np.ndarray:
    """Check EEG trials against ``spec`` and return them as contiguous float32 (N, C, T).

    A single trial (C, T) gets a batch axis. ``channel_names`` and ``sfreq`` are checked when the
    caller knows them (a file that stores them). Nothing is reordered, resampled or cropped: each
    mismatch raises :class:`EEGInputError` saying what to do.
    """
    if sfreq is not None:
        validate_sfreq(sfreq, spec)
    if channel_names is not None:
        validate_channel_names(channel_names, spec)

    arr = _as_numeric_array(x)
    if arr.ndim == 2:
        arr = arr[None]
    _check_shape(arr, spec)
    with np.errstate(over="ignore"):  # values beyond float32 become inf and are reported below
        out = np.ascontiguousarray(arr, dtype=np.float32)
    _check_finite(out)
    return out


def _as_numeric_array(x: Any) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise EEGInputError(
            f"EEG data could not be read as one array ({e}); expected a numeric array "
            "(N, 63, 250) with every trial the same shape"
        ) from None
    kind = arr.dtype.kind
    if kind in "iuf":
        return arr
    if kind == "b":
        raise EEGInputError(
            "EEG data has dtype bool; expected numeric voltages (float32). Pass the signal, not a mask"
        )
    if kind == "c":
        raise EEGInputError(
            "EEG data has dtype complex; expected real float32 voltages. Pass np.real(x) only if "
            "the imaginary part is meant to be dropped"
        )
    raise EEGInputError(
        f"EEG data has dtype {arr.dtype}; expected a numeric array (float32). "
        "Convert it with np.asarray(x, dtype=np.float32)"
    )


def _check_shape(arr: np.ndarray, spec: EEGSpec) -> None:
    c_exp, t_exp = spec.shape
    want = f"(N, {c_exp}, {t_exp}) or ({c_exp}, {t_exp})"
    if arr.ndim == 4 and arr.shape[2:] == (c_exp, t_exp):
        raise EEGInputError(
            f"EEG data has shape {arr.shape}; expected {want}. It looks like "
            "(conditions, repetitions, channels, time): average the repetitions with x.mean(axis=1)"
        )
    if arr.ndim != 3:
        raise EEGInputError(
            f"EEG data has {arr.ndim} dimensions, shape {arr.shape}; expected {want}"
        )
    n, c, t = arr.shape
    if n == 0:
        raise EEGInputError(
            f"EEG data is an empty batch, shape {arr.shape}; expected at least one trial"
        )
    if (c, t) == (c_exp, t_exp):
        return
    if (c, t) == (t_exp, c_exp):
        raise EEGInputError(
            f"EEG data has shape {arr.shape}, which looks transposed; expected {want} "
            "(channels before time). Transpose it: x.transpose(0, 2, 1) (or x.T for one trial)"
        )
    if c != c_exp:
        hint = (
            f"keep the {c_exp} channels in the paper's order (README, 'EEG input'); drop stimulus, "
            "reference and EOG channels, or give the raw recording (.fif/.edf/.bdf/.vhdr) instead"
        )
        raise EEGInputError(
            f"EEG data has {c} channels (shape {arr.shape}); expected {c_exp} channels, "
            f"shape {want}: {hint}"
        )
    n_pre = round((spec.tmin - EPOCH_TMIN) * spec.sfreq)
    if t == t_exp + n_pre:
        hint = (
            f"these look like {EPOCH_TMIN:g}..{spec.tmin + t_exp / spec.sfreq:g} s epochs; the paper "
            f"drops the first {n_pre} samples (before stimulus onset): use x[..., {n_pre}:]"
        )
    else:
        hint = (
            f"resample to {spec.sfreq:g} Hz and keep {t_exp} samples from {spec.tmin:g} s after "
            f"stimulus onset ({spec.tmin:g}..{spec.tmin + (t_exp - 1) / spec.sfreq:g} s)"
        )
    raise EEGInputError(
        f"EEG data has {t} time samples (shape {arr.shape}); expected {t_exp}, shape {want}: {hint}"
    )


def _check_finite(arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if not bad.any():
        return
    n_nan = int(np.isnan(arr).sum())
    n_inf = int(bad.sum()) - n_nan
    bad_trials = np.flatnonzero(bad.reshape(arr.shape[0], -1).any(axis=1))
    raise EEGInputError(
        f"EEG data has non-finite values: {n_nan} NaN and {n_inf} inf in {bad_trials.size} of "
        f"{arr.shape[0]} trials (first at trial index {int(bad_trials[0])}); expected finite "
        "values. Interpolate bad channels or drop those trials before inference"
    )


def validate_sfreq(sfreq: float, spec: EEGSpec = DEFAULT_SPEC) -> None:
    """Raise unless ``sfreq`` equals the spec's sampling rate."""
    try:
        value = float(sfreq)
    except (TypeError, ValueError):
        raise EEGInputError(
            f"sampling rate {sfreq!r} is not a number; expected {spec.sfreq:g} Hz"
        ) from None
    if not math.isclose(value, spec.sfreq, rel_tol=_SFREQ_RTOL):
        raise EEGInputError(
            f"EEG sampling rate is {value:g} Hz; expected {spec.sfreq:g} Hz. Resample to "
            f"{spec.sfreq:g} Hz (e.g. mne: epochs.resample({spec.sfreq:g})) and keep {spec.n_times} samples"
        )


def validate_channel_names(names: Iterable[str], spec: EEGSpec = DEFAULT_SPEC) -> None:
    """Raise unless ``names`` are exactly the spec's channels in the spec's order."""
    found = [str(n) for n in names]
    expected = list(spec.channels)
    if found == expected:
        return
    dupes = sorted({n for n in found if found.count(n) > 1})
    if dupes:
        raise EEGInputError(
            f"EEG channel names contain duplicates: {dupes}; each channel must appear once"
        )
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    if missing or extra:
        msg = (
            f"EEG channel names do not match the {len(expected)} channels of the spec: "
            f"missing {missing}, extra {extra}"
        )
        lower = {c.lower(): c for c in expected}
        case_only = [f"{e}->{lower[e.lower()]}" for e in extra if e.lower() in lower]
        if case_only:
            msg += f"; some differ only in case ({', '.join(case_only[:5])}): rename them"
        else:
            msg += "; keep the paper's 63 channels (README, 'EEG input') and drop the others"
        raise EEGInputError(msg)
    i = next(i for i, (a, b) in enumerate(zip(found, expected)) if a != b)
    raise EEGInputError(
        f"EEG channels are the right {len(expected)} but their order differs from the spec: first "
        f"mismatch at index {i}, expected {expected[i]!r}, found {found[i]!r}. Write the channel axis in "
        "the paper's order (eeg2img_deploy.eeg.spec.reorder_channels does it)"
    )


def reorder_channels(
    x: np.ndarray, names: Sequence[str], spec: EEGSpec = DEFAULT_SPEC
) -> np.ndarray:
    """Reorder the channel axis (-2) of ``x`` from ``names`` to the spec's order (extra channels dropped)."""
    names = [str(n) for n in names]
    missing = [c for c in spec.channels if c not in names]
    if missing:
        raise EEGInputError(
            f"cannot reorder EEG channels: missing {missing} of the {spec.n_channels} spec channels"
        )
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[-2] != len(names):
        raise EEGInputError(
            f"EEG data shape {x.shape} has no channel axis of length {len(names)} at position -2"
        )
    return x[..., [names.index(c) for c in spec.channels], :]


def _short_repr(x: Any, limit: int = 60) -> str:
    r = repr(x)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def validate_subject_ids(ids: Any, n: int) -> np.ndarray:
    """Return subject ids as int64 (n,): THINGS-EEG2 sub-NN is id NN (a paper-era table has rows 0..9); a scalar is broadcast."""
    try:
        arr = np.asarray(ids)
    except (ValueError, TypeError):
        arr = np.asarray(ids, dtype=object)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f":
            hint = "; convert whole numbers with np.asarray(ids).astype(np.int64)"
        else:
            hint = " (THINGS-EEG2 sub-08 -> 8)"
        raise EEGInputError(
            f"subject ids {_short_repr(ids)} have dtype {arr.dtype}; expected integers{hint}"
        )
    if arr.ndim == 0:
        arr = np.full(n, int(arr), dtype=np.int64)
    elif arr.ndim != 1:
        raise EEGInputError(
            f"subject ids have shape {arr.shape}; expected one id per trial, shape ({n},)"
        )
    elif arr.shape[0] != n:
        raise EEGInputError(
            f"got {arr.shape[0]} subject ids for {n} EEG trials; expected {n} ids or one id for all trials"
        )
    if (arr < 0).any():
        bad = int(arr[arr < 0][0])
        raise EEGInputError(
            f"subject ids must be >= 0 (--subject: THINGS-EEG2 sub-08 is 8; sub-10 is 10, which paper-era encoders "
            f"give the shared subject token with --shared-subject-token); found {bad}"
        )
    return np.ascontiguousarray(arr, dtype=np.int64)


def encoder_spec(channels: str | Path | None) -> EEGSpec:
    """The EEG an encoder reads: ``--encoder-channels FILE`` (:func:`read_encoder_channels`), else the paper's."""
    return DEFAULT_SPEC if channels is None else read_encoder_channels(channels)


def read_encoder_channels(path: str | Path) -> EEGSpec:
    """``--encoder-channels FILE``: the EEG an ``--encoder-factory`` model reads.

    A ``.txt`` file names one channel a line (blank lines and ``#`` comments skipped): 250 samples at
    250 Hz from stimulus onset, as the paper. A ``.json`` file holds a list of names, or an object with
    ``channels`` and any of ``sfreq``, ``n_times``, ``tmin`` (the manifest's ``eeg`` section).
    """
    import json

    path = Path(path)
    if not path.is_file():
        raise EEGInputError(f"--encoder-channels {path} does not exist (or is not a file)")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise EEGInputError(f"--encoder-channels {path.name} is not valid JSON ({e})") from None
        if isinstance(data, list):
            data = {"channels": data}
        if not isinstance(data, dict) or not isinstance(data.get("channels"), list):
            raise EEGInputError(f"--encoder-channels {path.name}: expected a list of channel names or an object with "
                                '"channels" (and optionally "sfreq", "n_times", "tmin")')
        return EEGSpec.from_dict(data)
    names = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    names = [n for n in names if n]
    if not names:
        raise EEGInputError(f"--encoder-channels {path.name} names no channel: write one channel name a line")
    return EEGSpec(channels=tuple(names))
