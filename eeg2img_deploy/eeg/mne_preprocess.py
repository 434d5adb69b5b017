"""The paper's THINGS-EEG2 epoching for continuous recordings, with MNE.

Pipeline (``EEG-preprocessing/preprocessing.py`` of the paper's code): pick the 63 channels in
order, cut epochs -0.2..1.0 s around each stimulus event with baseline (None, 0), resample to 250 Hz
(300 samples), drop the 50 pre-onset samples -> 250 samples (0..996 ms), then optionally whiten with
a session's sigma^-1/2. mne is imported inside the functions: it is the optional ``eeg`` extra.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eeg2img_deploy.eeg.readers import EEGTrials, PathLike, Whitening, apply_whitening
from eeg2img_deploy.eeg.spec import BASELINE, DEFAULT_SPEC, EPOCH_TMIN, EEGSpec, validate_eeg
from eeg2img_deploy.errors import EEGInputError

if TYPE_CHECKING:
    import mne

log = logging.getLogger(__name__)


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
    readers = {
        ".fif": mne.io.read_raw_fif,
        ".fif.gz": mne.io.read_raw_fif,
        ".edf": mne.io.read_raw_edf,
        ".bdf": mne.io.read_raw_bdf,
        ".vhdr": mne.io.read_raw_brainvision,
    }
    suffix = next((s for s in readers if name.endswith(s)), None)
    if suffix is None:
        raise EEGInputError(
            f"{path.name} is not a raw recording mne can read here; expected one of {', '.join(readers)}"
        )
    if not path.is_file():
        raise EEGInputError(f"EEG file {path} does not exist (or is not a file)")
    try:
        return readers[suffix](path, preload=True, verbose="error")
    except (ValueError, OSError, RuntimeError) as e:
        raise EEGInputError(f"mne could not read {path.name} as {suffix}: {e}") from e


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
        events, _ = mne.events_from_annotations(raw, event_id=ann_id, verbose="error")
        if len(events):
            return events, event_id
    where = f"stim channel(s) {stim}" if stim else "no stim channel"
    raise EEGInputError(
        f"found no stimulus events in the recording ({where}, {len(raw.annotations)} annotations); "
        "pass events=(n, 3) array of [sample, 0, code] rows"
    )


def preprocess_raw(
    raw: mne.io.BaseRaw,
    *,
    events: np.ndarray | None = None,
    event_id: Any = None,
    whitening: Whitening = None,
    spec: EEGSpec = DEFAULT_SPEC,
    source: str | None = None,
) -> EEGTrials:
    """Epoch a continuous recording into encoder trials (N, 63, 250) with the paper's pipeline.

    ``events`` are mne events (n, 3) with samples on ``raw``'s clock (``raw.first_samp``
    included); if None they come from the stim channel or the annotations. ``event_id`` (code, codes
    or {name: code}) selects which events become trials. The raw object is not modified.
    """
    mne = _import_mne()
    missing = [c for c in spec.channels if c not in raw.ch_names]
    if missing:
        lower = {c.lower(): c for c in raw.ch_names}
        case = [f"{lower[m.lower()]}->{m}" for m in missing if m.lower() in lower]
        hint = (
            f"; some differ only in case, rename them ({', '.join(case[:5])})"
            if case
            else ("; rename them with raw.rename_channels or interpolate them before this step")
        )
        raise EEGInputError(
            f"the recording lacks {len(missing)} of the {spec.n_channels} channels the encoder needs: "
            f"missing {missing}{hint}"
        )
    if events is None:
        events, event_id = find_stimulus_events(raw, event_id=event_id)
    events = np.asarray(events)
    if events.ndim != 2 or events.shape[1] != 3 or events.dtype.kind not in "iu":
        raise EEGInputError(
            f"events have shape {events.shape} and dtype {events.dtype}; expected integer (n, 3) "
            "rows [sample, previous, code] as from mne.find_events"
        )
    if raw.info["sfreq"] < spec.sfreq:
        log.warning(
            "recording sampled at %g Hz, below the %g Hz the encoder expects: upsampling",
            raw.info["sfreq"],
            spec.sfreq,
        )

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
            picked,
            events,
            event_id=event_id,
            tmin=EPOCH_TMIN,
            tmax=tmax,
            baseline=BASELINE,
            picks="all",
            preload=True,
            reject=None,
            flat=None,
            verbose="error",
        )
    except ValueError as e:
        codes = sorted(set(events[:, 2].tolist()))
        raise EEGInputError(
            f"could not cut epochs for event_id={event_id!r}: {e}; event codes present: {codes[:20]}"
        ) from e
    n_dropped = sum(1 for reasons in epochs.drop_log if reasons and reasons != ("IGNORED",))
    if n_dropped:
        log.warning(
            "%d epochs dropped (too close to the recording's edges or bad segments)", n_dropped
        )
    if len(epochs) == 0:
        raise EEGInputError(
            "no epochs remain: every event is too close to the edges of the recording or in a bad "
            f"segment (epochs need {-EPOCH_TMIN:g} s before and {tmax:g} s after each event)"
        )
    if epochs.info["sfreq"] != spec.sfreq:
        epochs.resample(spec.sfreq, verbose="error")

    times = epochs.times
    start = int(np.argmin(np.abs(times - spec.tmin)))  # 50 at 250 Hz
    stop = start + spec.n_times
    data = epochs.get_data(picks="all")
    if stop > data.shape[-1]:
        raise EEGInputError(
            f"epochs have {data.shape[-1]} samples after resampling to {spec.sfreq:g} Hz; expected "
            f"at least {stop} ({spec.n_times} from onset). Recording sampled at {raw.info['sfreq']:g} Hz"
        )
    data = data[..., start:stop]
    if whitening is not None:
        data = apply_whitening(data, whitening, spec)
    out = validate_eeg(data, spec, channel_names=epochs.ch_names, sfreq=epochs.info["sfreq"])
    desc = source or "mne Raw"
    desc += f" (raw at {raw.info['sfreq']:g} Hz, {len(out)} epochs{', whitened' if whitening is not None else ''})"
    return EEGTrials(out, spec.channels, spec.sfreq, desc, epochs.events[:, 2].astype(np.int64))
