"""The paper's THINGS-EEG2 epoching for continuous recordings, with MNE: one code path for files and streams.

Pipeline (``EEG-preprocessing/preprocessing.py`` of the paper's code): pick the 63 channels in
order, cut epochs -0.2..1.0 s around each stimulus event with baseline (None, 0), resample to 250 Hz
(300 samples), drop the 50 pre-onset samples -> 250 samples (0..996 ms). :func:`epoch_raw` does it;
the offline path (:func:`preprocess_raw`) and the live stream (``eeg2img_deploy.stream``) both call
it, and both check a recording with :func:`check_recording` first. Whitening is not done here: the
runtime applies it (``eeg/whitening.py``). mne is imported inside the functions (the ``eeg`` extra).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eeg2img_deploy.eeg.spec import BASELINE, DEFAULT_SPEC, EPOCH_TMIN, EEGSpec, validate_eeg
from eeg2img_deploy.eeg.trials import EEGTrials, PathLike
from eeg2img_deploy.errors import EEGInputError

if TYPE_CHECKING:
    import mne

log = logging.getLogger(__name__)

RAW_READERS = {  # suffix -> name of mne's reader
    ".fif": "read_raw_fif",
    ".fif.gz": "read_raw_fif",
    ".edf": "read_raw_edf",
    ".bdf": "read_raw_bdf",
    ".vhdr": "read_raw_brainvision",
}


# Annotations that are not stimuli: mne's "BAD ..." segments and the "EDGE boundary" of concatenated
# recordings (mne's own default for events_from_annotations; used by files and streams alike).
STIMULUS_ANNOTATIONS = r"^(?![Bb][Aa][Dd]|[Ee][Dd][Gg][Ee]).*$"


def is_stimulus_description(description: str) -> bool:
    return re.match(STIMULUS_ANNOTATIONS, description) is not None


def _import_mne() -> Any:
    try:
        import mne
    except ImportError:
        raise EEGInputError(
            "reading raw EEG recordings (.fif, .edf, .bdf, .vhdr) needs mne, which is not installed: "
            "pip install 'eeg2img-deploy[eeg]'"
        ) from None
    return mne


def read_raw(path: PathLike) -> mne.io.BaseRaw:
    """Read a continuous recording (.fif, .fif.gz, .edf, .bdf, .vhdr) with its data in memory."""
    mne = _import_mne()
    path = Path(path)
    name = path.name.lower()
    suffix = next((s for s in RAW_READERS if name.endswith(s)), None)
    if suffix is None:
        raise EEGInputError(
            f"{path.name} is not a raw recording mne can read here; expected one of {', '.join(RAW_READERS)}"
        )
    if not path.is_file():
        raise EEGInputError(f"EEG file {path} does not exist (or is not a file)")
    try:
        return getattr(mne.io, RAW_READERS[suffix])(path, preload=True, verbose="error")
    except (ValueError, OSError, RuntimeError) as e:
        raise EEGInputError(f"mne could not read {path.name} as {suffix}: {e}") from e


def read_events_file(path: PathLike) -> np.ndarray:
    """``--events FILE``: an (n, 3) integer array [sample, previous, code] (samples include first_samp).

    ``.npy``, or what ``mne.read_events`` reads (``-eve.fif``, ``.eve``, ``-eve.txt``, ``-eve.lst``).
    """
    path = Path(path)
    if not path.is_file():
        raise EEGInputError(f"events file {path} does not exist (check --events)")
    if path.suffix.lower() == ".npy":
        try:
            events = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise EEGInputError(f"events file {path.name} is not a numeric .npy array: {e}") from None
    else:
        mne = _import_mne()
        try:
            events = mne.read_events(path, verbose="error")
        except (ValueError, OSError, RuntimeError) as e:
            raise EEGInputError(
                f"mne could not read events file {path.name}: {e}. Give --events an (n, 3) integer .npy "
                "or an mne events file (-eve.fif, .eve, -eve.txt)"
            ) from None
    return check_events(events, f"events file {path.name}")


def check_events(events: Any, what: str = "events") -> np.ndarray:
    events = np.asarray(events)
    if events.ndim != 2 or events.shape[1] != 3 or events.dtype.kind not in "iu":
        raise EEGInputError(
            f"{what} has shape {events.shape} and dtype {events.dtype}; expected integer (n, 3) rows "
            "[sample, previous, code] (--events FILE: an .npy or an mne events file)"
        )
    return events.astype(np.int64)


def read_channel_renames(path: PathLike) -> dict[str, str]:
    """``--rename-channels FILE.json``: a JSON object {"name in the recording": "name the encoder uses"}."""
    path = Path(path)
    try:
        mapping = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise EEGInputError(f"--rename-channels {path}: could not read it as JSON ({e})") from None
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise EEGInputError(
            f"--rename-channels {path.name} must hold one JSON object of strings, "
            '{"name in the recording": "encoder channel name", ...}'
        )
    return mapping


def renamed_channels(ch_names: Sequence[str], renames: Mapping[str, str] | None) -> list[str]:
    """The channel names after ``renames``; a rename of a channel the recording lacks is an error."""
    names = [str(c) for c in ch_names]
    if not renames:
        return names
    unknown = sorted(set(renames) - set(names))
    if unknown:
        raise EEGInputError(
            f"--rename-channels names {unknown}, which the recording does not have; it has {names}"
        )
    out = [renames.get(c, c) for c in names]
    dupes = sorted({c for c in out if out.count(c) > 1})
    if dupes:
        raise EEGInputError(f"--rename-channels gives several channels the name(s) {dupes}")
    return out


def check_recording(
    ch_names: Sequence[str],
    sfreq: float,
    spec: EEGSpec = DEFAULT_SPEC,
    *,
    allow_resample: bool = False,
    what: str = "the recording",
) -> None:
    """Channel set and sampling rate of a continuous recording (file or stream), before any epoch."""
    names = [str(c) for c in ch_names]
    missing = [c for c in spec.channels if c not in names]
    if missing:
        lower = {c.lower(): c for c in names}
        case = {lower[m.lower()]: m for m in missing if m.lower() in lower}
        if case:
            hint = f"some differ only in case: rename them with --rename-channels FILE.json, e.g. {json.dumps(case)}"
        else:
            hint = (
                "map the recording's names to the encoder's with --rename-channels FILE.json "
                '({"recording name": "encoder name"}), or interpolate missing channels before this step'
            )
        raise EEGInputError(
            f"{what} lacks {len(missing)} of the {spec.n_channels} channels the encoder needs: missing "
            f"{missing}. It has {len(names)} channels: {names}. {hint}"
        )
    if sfreq < spec.sfreq * (1 - 1e-4):
        if not allow_resample:
            raise EEGInputError(
                f"{what} is sampled at {sfreq:g} Hz, below the {spec.sfreq:g} Hz the encoder was trained on; "
                "upsampling cannot restore what was never recorded. Record at >= "
                f"{spec.sfreq:g} Hz, or pass --allow-resample to upsample anyway"
            )
        log.warning("%s is sampled at %g Hz, below %g Hz: upsampling (--allow-resample)", what, sfreq, spec.sfreq)


def find_stimulus_events(raw: mne.io.BaseRaw, *, event_id: Any = None) -> tuple[np.ndarray, Any]:
    """Events (n, 3) from the stim channel, else from annotations; and the event_id for mne.Epochs."""
    mne = _import_mne()
    stim = [raw.ch_names[i] for i in mne.pick_types(raw.info, meg=False, stim=True)]
    if stim:
        events = mne.find_events(raw, stim_channel=stim, shortest_event=1, verbose="error")
        if len(events):
            return events, event_id
    if len(raw.annotations):
        # A dict maps annotation descriptions to codes; anything else selects among mne's own codes.
        ann_id = event_id if isinstance(event_id, dict) else None
        events, _ = mne.events_from_annotations(raw, event_id=ann_id, regexp=STIMULUS_ANNOTATIONS, verbose="error")
        if len(events):
            return events, event_id
    where = f"stim channel(s) {stim}" if stim else "no stim channel"
    raise EEGInputError(
        f"found no stimulus events in the recording ({where}, {len(raw.annotations)} annotations); "
        "give them with --events FILE (an (n, 3) .npy or mne events file of [sample, 0, code] rows)"
    )


def select_events(events: np.ndarray, event_id: Any) -> np.ndarray:
    """The events whose code ``event_id`` selects (a code, a list of codes, {description: code}; None: all)."""
    if event_id is None:
        return events
    values = event_id.values() if isinstance(event_id, Mapping) else event_id if isinstance(event_id, (list, tuple)) else [event_id]
    return events[np.isin(events[:, 2], [int(v) for v in values])]


def first_event_per_sample(events: np.ndarray) -> np.ndarray:
    """Events with at most one per sample: of simultaneous ones (a stimulus and a trial marker sent together)
    the first is kept and the others counted in a warning; ``--event-id`` selects the codes beforehand."""
    _, first = np.unique(events[:, 0], return_index=True)
    if len(first) == len(events):
        return events
    log.warning("%d event(s) at the same sample as an earlier one ignored (the first is kept; choose the codes "
                "with --event-id)", len(events) - len(first))
    return events[np.sort(first)]


def epoch_raw(
    raw: mne.io.BaseRaw, events: np.ndarray, *, event_id: Any = None, spec: EEGSpec = DEFAULT_SPEC
) -> tuple[np.ndarray, np.ndarray]:
    """Cut encoder trials (N, 63, 250) float32 and their event codes (N,) from ``raw``: the one epoching code.

    ``raw`` must hold the spec's channels (any order, extra ones ignored; see :func:`check_recording`);
    ``events`` are mne events with samples on ``raw``'s clock (``first_samp`` included). Not modified.
    """
    mne = _import_mne()
    events = check_events(events)
    codes = sorted(set(events[:, 2].tolist()))  # for the error below: what the recording has, before selection
    events = first_event_per_sample(select_events(events, event_id))
    picked = raw.copy().pick(list(spec.channels))
    # Baseline correction and resampling only act on data channel types.
    non_eeg = {c: "eeg" for c, t in zip(picked.ch_names, picked.get_channel_types()) if t != "eeg"}
    if non_eeg:
        log.info("treating %d channels as EEG: %s", len(non_eeg), sorted(non_eeg)[:5])
        picked.set_channel_types(non_eeg, verbose="error")
    bads = [c for c in picked.info["bads"] if c in spec.channels]
    if bads:
        log.warning("channels marked bad are kept as recorded: %s (interpolate them first)", bads)

    tmax = spec.tmin + spec.n_times / spec.sfreq  # 1.0 s: the epoch spans 300 samples at 250 Hz
    try:
        epochs = mne.Epochs(
            picked, events, event_id=event_id, tmin=EPOCH_TMIN, tmax=tmax, baseline=BASELINE,
            picks="all", preload=True, reject=None, flat=None, verbose="error",
        )
    except ValueError as e:
        raise EEGInputError(
            f"could not cut epochs for --event-id {event_id!r}: {e}; event codes present: {codes[:20]}"
        ) from e
    n_dropped = sum(1 for reasons in epochs.drop_log if reasons and reasons != ("IGNORED",))
    if n_dropped:
        log.warning("%d epochs dropped (too close to the recording's edges or bad segments)", n_dropped)
    if len(epochs) == 0:
        raise EEGInputError(
            "no epochs remain: every event is too close to the edges of the recording or in a bad "
            f"segment (epochs need {-EPOCH_TMIN:g} s before and {tmax:g} s after each event)"
        )
    if epochs.info["sfreq"] != spec.sfreq:
        epochs.resample(spec.sfreq, verbose="error")

    start = int(np.argmin(np.abs(epochs.times - spec.tmin)))  # 50 at 250 Hz
    stop = start + spec.n_times
    data = epochs.get_data(picks="all")
    if stop > data.shape[-1]:
        raise EEGInputError(
            f"epochs have {data.shape[-1]} samples after resampling to {spec.sfreq:g} Hz; expected "
            f"at least {stop} ({spec.n_times} from onset). Recording sampled at {raw.info['sfreq']:g} Hz"
        )
    out = validate_eeg(data[..., start:stop], spec, channel_names=epochs.ch_names, sfreq=epochs.info["sfreq"])
    return out, epochs.events[:, 2].astype(np.int64)


def preprocess_raw(
    raw: mne.io.BaseRaw,
    *,
    events: np.ndarray | None = None,
    event_id: Any = None,
    spec: EEGSpec = DEFAULT_SPEC,
    source: str | None = None,
    allow_resample: bool = False,
    rename_channels: Mapping[str, str] | None = None,
) -> EEGTrials:
    """Epoch a continuous recording into encoder trials (N, 63, 250) with the paper's pipeline.

    ``events`` are mne events (n, 3) with samples on ``raw``'s clock (``raw.first_samp``
    included); if None they come from the stim channel or the annotations. ``event_id`` (code, codes
    or {name: code}) selects which events become trials. The raw object is not modified.
    """
    desc = source or "mne Raw"
    if rename_channels:
        raw = raw.copy()
        raw.rename_channels(dict(zip(raw.ch_names, renamed_channels(raw.ch_names, rename_channels))))
    check_recording(raw.ch_names, raw.info["sfreq"], spec, allow_resample=allow_resample, what=desc)
    if events is None:
        events, event_id = find_stimulus_events(raw, event_id=event_id)
    data, codes = epoch_raw(raw, events, event_id=event_id, spec=spec)
    desc += f" (raw at {raw.info['sfreq']:g} Hz, {len(data)} epochs)"
    return EEGTrials(data, spec.channels, spec.sfreq, desc, codes)
