"""Read EEG trials from files into the encoder's input layout, float32 (N, 63, 250).

Formats, chosen by suffix:

- ``.npy``: a plain numeric array (63, 250) or (N, 63, 250) in the spec's channel order; or a
  THINGS-EEG2 preprocessed file (``preprocessed_eeg_{training,test}.npy``: a pickled dict), read only
  with ``trusted_pickle=True`` because unpickling can run arbitrary code.
- ``.npz``: key ``eeg`` plus optional ``ch_names``, ``sfreq`` and ``condition_index``
  (see :func:`save_eeg_npz`).
- ``.fif``, ``.edf``, ``.bdf``, ``.vhdr``: continuous recordings, epoched with the paper's pipeline
  in :mod:`eeg2img_deploy.eeg.mne_preprocess` (needs the ``eeg`` extra, i.e. mne).
- ``.xdf``: LabRecorder's recordings, the EEG and marker streams read by :mod:`eeg2img_deploy.eeg.xdf`
  (pyxdf) into a raw recording in volts, then epoched the same way.

numpy only at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eeg2img_deploy.eeg.spec import (
    DEFAULT_SPEC,
    EPOCH_TMIN,
    EEGSpec,
    validate_channel_names,
    validate_eeg,
    validate_sfreq,
)
from eeg2img_deploy.eeg import mne_preprocess
from eeg2img_deploy.eeg.trials import EEGTrials, PathLike
from eeg2img_deploy.errors import EEGInputError

log = logging.getLogger(__name__)

RAW_SUFFIXES = tuple(mne_preprocess.RAW_READERS)
THINGS_KEYS = ("preprocessed_eeg_data", "ch_names", "times")
NPZ_KEYS = ("eeg", "ch_names", "sfreq", "condition_index")


def load_eeg(
    path: PathLike,
    *,
    spec: EEGSpec = DEFAULT_SPEC,
    trusted_pickle: bool = False,
    average_repetitions: bool = True,
    events: np.ndarray | PathLike | None = None,
    event_id: Any = None,
    allow_resample: bool = False,
    rename_channels: Mapping[str, str] | PathLike | None = None,
    source: str | None = None,
    event_stream: str | None = None,
    stream_unit: str | None = None,
) -> EEGTrials:
    """Read EEG trials from ``path`` and check them against ``spec``.

    ``trusted_pickle`` allows THINGS-EEG2 preprocessed files (pickles: only for files you trust).
    ``average_repetitions`` averages a THINGS file's repetitions per image condition, as the paper
    does for test trials; without it every repetition is a trial. For raw recordings, ``events`` (an
    (n, 3) array or a file, CLI ``--events``) and ``event_id`` select the epochs, ``allow_resample``
    accepts rates below the spec's, ``rename_channels`` (a mapping or a JSON file) renames channels
    first. XDF recordings: ``source`` and ``event_stream`` name the EEG and marker streams (by name or type),
    ``stream_unit`` gives the EEG's unit where the file declares none. Nothing is whitened here: the runtime
    applies whitening (``eeg/whitening.py``).
    """
    path = Path(path)
    if not path.is_file():
        raise EEGInputError(f"EEG file {path} does not exist (or is not a file)")
    name = path.name.lower()
    if name.endswith(".xdf"):
        from eeg2img_deploy.eeg.xdf import read_xdf

        if isinstance(rename_channels, (str, Path)):
            rename_channels = mne_preprocess.read_channel_renames(rename_channels)
        if events is not None:  # --events named the marker stream of an .xdf until issue 23
            given = f" {events}" if isinstance(events, (str, Path)) else ""
            raise EEGInputError(f"--events takes an events file for a raw recording ({', '.join(RAW_SUFFIXES)}); the "
                                f"marker stream of an .xdf is chosen with --event-stream NAME (--events{given} -> "
                                f"--event-stream{given})")
        raw, _ = read_xdf(path, source=source, event_stream=event_stream,
                          stream_unit=stream_unit, rename_channels=rename_channels, spec=spec)
        return mne_preprocess.preprocess_raw(raw, event_id=event_id, spec=spec, source=str(path),
                                             allow_resample=allow_resample)
    if source is not None or stream_unit is not None or event_stream is not None:
        raise EEGInputError(f"--source, --event-stream and --stream-unit apply to XDF recordings (.xdf); {path.name} is "
                            "none: drop them")
    if name.endswith(RAW_SUFFIXES):
        if isinstance(events, (str, Path)):
            events = mne_preprocess.read_events_file(events)
        if isinstance(rename_channels, (str, Path)):
            rename_channels = mne_preprocess.read_channel_renames(rename_channels)
        raw = mne_preprocess.read_raw(path)
        return mne_preprocess.preprocess_raw(
            raw, events=events, event_id=event_id, spec=spec, source=str(path),
            allow_resample=allow_resample, rename_channels=rename_channels,
        )
    if events is not None or event_id is not None or rename_channels or allow_resample:
        raise EEGInputError(
            f"--events, --event-id, --rename-channels and --allow-resample only apply to raw recordings "
            f"({', '.join(RAW_SUFFIXES)}, .xdf); {path.name} holds epoched trials: drop them"
        )
    if name.endswith(".npy"):
        if _npy_holds_objects(path):
            trials = _load_things_eeg2(
                path, spec, trusted_pickle=trusted_pickle, average_repetitions=average_repetitions
            )
        else:
            trials = _load_plain_npy(path, spec)
    elif name.endswith(".npz"):
        trials = _load_npz(path, spec)
    else:
        raise EEGInputError(
            f"EEG file {path.name} has an unknown suffix; expected one of .npy, .npz, "
            f"{', '.join(RAW_SUFFIXES)}"
        )
    return trials


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int] | None:
    """(shape, dtype, where the data starts) from a .npy file's header; None for format 3.0, which has no
    public header reader."""
    fmt = np.lib.format
    readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
    with open(path, "rb") as f:
        try:
            version = fmt.read_magic(f)
            if version not in readers:
                return None
            shape, _, dtype = readers[version](f)
        except ValueError:
            raise EEGInputError(f"{path} is not a numpy .npy file (bad header): save trials with np.save") from None
        return shape, dtype, f.tell()


def _npy_holds_objects(path: Path) -> bool:
    """Whether a .npy file stores Python objects (a pickle), read from its header only."""
    header = _npy_header(path)
    if header is None:
        try:
            np.load(path, allow_pickle=False, mmap_mode="r")
        except ValueError:
            return True
        return False
    return bool(header[1].hasobject)


def _check_npy_size(path: Path) -> None:
    """A file cut short (a copy or download that stopped) is named as such, not as a reshape error."""
    header = _npy_header(path)
    if header is None:
        return
    shape, dtype, offset = header
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = path.stat().st_size
    if have < need:
        raise EEGInputError(
            f"{path} is truncated: its header says {shape} {dtype} ({need} bytes) but the file has {have} bytes; "
            "copy or save it again"
        )


def _refuse_integers(arr: np.ndarray, what: str) -> None:
    """Integer EEG is raw ADC counts or a quantized copy: its scale is unknown, so a cast would be a guess."""
    if arr.dtype.kind in "iu":
        raise EEGInputError(
            f"{what} holds integers ({arr.dtype}), e.g. raw ADC counts; the encoder expects float EEG in the "
            "units it was trained on (THINGS-EEG2: volts, preprocessed). Scale it to those units and save it "
            "as float32: np.save(path, counts.astype(np.float32) * volts_per_count)"
        )


def _load_plain_npy(path: Path, spec: EEGSpec) -> EEGTrials:
    _check_npy_size(path)
    arr = np.load(path, allow_pickle=False)
    _refuse_integers(arr, path.name)
    data = validate_eeg(arr, spec)
    return EEGTrials(
        data, spec.channels, spec.sfreq, f"{path} (numpy array, channels assumed in spec order)"
    )


def _load_things_eeg2(
    path: Path, spec: EEGSpec, *, trusted_pickle: bool, average_repetitions: bool
) -> EEGTrials:
    if not trusted_pickle:
        raise EEGInputError(
            f"{path.name} is a pickle (a numpy object array, e.g. a THINGS-EEG2 preprocessed_eeg_*.npy "
            "dict); loading it can run arbitrary code. Pass --trusted-pickle "
            "only for files from a source you trust, or convert it once to .npz (eeg2img_deploy.eeg.readers.save_eeg_npz)"
        )
    obj = np.load(path, allow_pickle=True)
    d = obj.item() if obj.shape == () else None
    if not isinstance(d, dict) or not all(k in d for k in THINGS_KEYS):
        found = (
            sorted(d)
            if isinstance(d, dict)
            else f"{type(d).__name__ if d is not None else 'array'}"
        )
        raise EEGInputError(
            f"{path.name} holds Python objects but not a THINGS-EEG2 dict with keys {list(THINGS_KEYS)}; "
            f"found {found}"
        )
    names = [str(n) for n in d["ch_names"]]
    validate_channel_names(names, spec)
    times = np.asarray(d["times"], dtype=np.float64).ravel()
    data = np.asarray(d["preprocessed_eeg_data"])
    if data.ndim not in (3, 4):
        raise EEGInputError(
            f"{path.name}: preprocessed_eeg_data has shape {data.shape}; expected "
            f"(conditions, repetitions, {spec.n_channels}, T) or (trials, {spec.n_channels}, T)"
        )
    data, times = _crop_to_onset(data, times, spec, path.name)
    _check_times(times, spec, path.name)

    if data.ndim == 4:
        n_cond, n_rep = data.shape[:2]
        if average_repetitions:
            data = data.mean(axis=1, dtype=np.float64)
            condition_index = np.arange(n_cond, dtype=np.int64)
            how = f"{n_cond} conditions, {n_rep} repetitions averaged"
        else:
            data = data.reshape(n_cond * n_rep, *data.shape[2:])
            condition_index = np.repeat(np.arange(n_cond, dtype=np.int64), n_rep)
            how = f"{n_cond} conditions x {n_rep} repetitions"
    else:
        condition_index = None
        how = f"{data.shape[0]} trials"
    out = validate_eeg(data, spec)
    return EEGTrials(
        out, spec.channels, spec.sfreq, f"{path} (THINGS-EEG2 preprocessed, {how})", condition_index
    )


def _crop_to_onset(
    data: np.ndarray, times: np.ndarray, spec: EEGSpec, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Drop the pre-onset samples as the paper's loaders do (``times[50:]``)."""
    n_pre = round((spec.tmin - EPOCH_TMIN) * spec.sfreq)
    t = data.shape[-1]
    if t == len(times) == spec.n_times + n_pre:
        return data[..., n_pre:], times[n_pre:]
    if t == spec.n_times and len(times) == spec.n_times + n_pre:
        return data, times[n_pre:]  # data already cropped, times not (the released files)
    if t == len(times):
        return data, times
    raise EEGInputError(
        f"{what}: data has {t} time samples but 'times' has {len(times)} values; expected "
        f"{spec.n_times} or {spec.n_times + n_pre} for both (or {spec.n_times} samples with "
        f"{spec.n_times + n_pre} times)"
    )


def _check_times(times: np.ndarray, spec: EEGSpec, what: str) -> None:
    if len(times) < 2 or not np.all(np.isfinite(times)):
        raise EEGInputError(
            f"{what}: 'times' must hold at least 2 finite values; found {times[:5]}"
        )
    sfreq = 1.0 / float(np.median(np.diff(times)))
    try:
        validate_sfreq(sfreq, spec)
    except EEGInputError as e:
        raise EEGInputError(f"{what}: {e}") from None
    if abs(times[0] - spec.tmin) > 0.5 / spec.sfreq:
        raise EEGInputError(
            f"{what}: the first sample is at {times[0]:.4f} s; expected {spec.tmin:g} s (stimulus "
            f"onset). Crop the epochs to {spec.tmin:g}..{spec.tmin + (spec.n_times - 1) / spec.sfreq:g} s"
        )


def _load_npz(path: Path, spec: EEGSpec) -> EEGTrials:
    import zipfile

    if not zipfile.is_zipfile(path):  # np.load would try it as a pickle and call it one
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":
                raise EEGInputError(f"{path} is damaged: a zip archive without its end (cut short?); copy or save it again")
        raise EEGInputError(f"{path} is not an .npz file (an .npz is a zip archive of arrays): save trials with "
                            "save_eeg_npz(path, data) or np.savez(path, eeg=data)")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "eeg" not in z.files:
                raise EEGInputError(
                    f"{path.name} has no 'eeg' array; found keys {sorted(z.files)}. Save trials with "
                    "save_eeg_npz(path, data) or np.savez(path, eeg=data)"
                )
            unknown = sorted(set(z.files) - set(NPZ_KEYS))
            if unknown:
                log.warning(
                    "%s: ignoring unknown keys %s (known: %s)", path.name, unknown, list(NPZ_KEYS)
                )
            arrays = {k: z[k] for k in NPZ_KEYS if k in z.files}
    except EEGInputError:  # a ValueError too: the file is whole, what it holds is named above
        raise
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise EEGInputError(
                f"{path.name} stores Python objects (a pickle); save channel names as strings: "
                "np.array(names, dtype=str)"
            ) from None
        raise EEGInputError(f"{path} is damaged ({e}): copy or save it again") from None
    except (zipfile.BadZipFile, EOFError, OSError) as e:  # a zip cut short, or a member that is
        raise EEGInputError(f"{path} is damaged ({type(e).__name__}: {e}): copy or save it again") from None
    names = [str(n) for n in arrays["ch_names"].ravel()] if "ch_names" in arrays else None
    sfreq = float(arrays["sfreq"]) if "sfreq" in arrays else None
    _refuse_integers(arrays["eeg"], f"{path.name}: 'eeg'")
    data = validate_eeg(arrays["eeg"], spec, channel_names=names, sfreq=sfreq)
    condition_index = None
    if "condition_index" in arrays:
        condition_index = np.asarray(arrays["condition_index"]).ravel()
        if condition_index.dtype.kind not in "iu" or len(condition_index) != len(data):
            raise EEGInputError(
                f"{path.name}: condition_index has dtype {condition_index.dtype} and "
                f"{len(condition_index)} values; expected {len(data)} integers"
            )
        condition_index = condition_index.astype(np.int64)
    checked = "channels and sfreq checked" if names and sfreq else "channels assumed in spec order"
    return EEGTrials(data, spec.channels, spec.sfreq, f"{path} (npz, {checked})", condition_index)


def save_eeg_npz(
    path: PathLike,
    data: np.ndarray,
    *,
    channel_names: Sequence[str] = DEFAULT_SPEC.channels,
    sfreq: float = DEFAULT_SPEC.sfreq,
    condition_index: np.ndarray | None = None,
) -> Path:
    """Write trials as the ``.npz`` that :func:`load_eeg` reads (no pickle inside)."""
    path = Path(path)
    arrays: dict[str, np.ndarray | np.generic] = {
        "eeg": np.asarray(data, dtype=np.float32),
        "ch_names": np.array([str(c) for c in channel_names], dtype=str),
        "sfreq": np.float64(sfreq),
    }
    if condition_index is not None:
        arrays["condition_index"] = np.asarray(condition_index, dtype=np.int64)
    with open(path, "wb") as f:  # a file object keeps np.savez from appending ".npz"
        np.savez(f, **arrays)
    return path
