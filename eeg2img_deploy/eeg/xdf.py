"""XDF recordings (LabRecorder's ``.xdf``): the EEG stream and its markers as an mne Raw in volts.

LSL labs record every stream of a session (EEG, stimulus markers, reconstructions) into one XDF file on
one clock. :func:`read_xdf` picks the EEG stream and the marker stream (by name or type, as ``stream``'s
``--source`` and ``--event-stream`` pick LSL streams), scales the EEG to volts from its declared unit
(:mod:`eeg2img_deploy.eeg.units`, the same rule as a live stream) and turns each marker into an annotation
at the EEG sample nearest its time stamp (the live epocher's rule). From there it is a raw recording like
any other: ``infer`` epochs it with ``epoch_raw`` and ``stream --replay`` plays it, so the two agree.

pyxdf is imported lazily (the ``eeg`` and ``stream`` extras); it loads and clock-synchronises the file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eeg2img_deploy.eeg.mne_preprocess import _import_mne, renamed_channels
from eeg2img_deploy.eeg.spec import DEFAULT_SPEC, EEGSpec
from eeg2img_deploy.eeg.units import channel_scales
from eeg2img_deploy.errors import EEGInputError

if TYPE_CHECKING:
    import mne

log = logging.getLogger(__name__)

MARKER_TYPES = ("markers", "marker", "annotations", "events", "stim")  # stream types read as stimulus markers


def _pyxdf() -> Any:
    try:
        import pyxdf
    except ImportError:
        raise EEGInputError("reading .xdf recordings needs pyxdf: pip install 'eeg2img-deploy[eeg]'") from None
    return pyxdf


def _first(value: Any) -> Any:
    """pyxdf wraps every XML value in a list."""
    while isinstance(value, list):
        value = value[0] if value else None
    return value


def _field(stream: Mapping, key: str) -> str:
    return str(_first(stream["info"].get(key)) or "")


def describe(stream: Mapping) -> str:
    info = stream["info"]
    return (f"{_field(stream, 'name')!r} (type {_field(stream, 'type') or '-'}, {_first(info.get('channel_count'))} ch, "
            f"{_field(stream, 'channel_format')}, {float(_first(info.get('nominal_srate')) or 0):g} Hz)")


def channels(stream: Mapping) -> list[dict[str, str | None]]:
    """label/unit/type of each channel from the stream's ``desc/channels/channel`` (None where absent)."""
    n = int(_first(stream["info"].get("channel_count")) or 0)
    desc = _first(stream["info"].get("desc"))
    chans = _first(desc.get("channels")) if isinstance(desc, Mapping) else None
    items = chans.get("channel", []) if isinstance(chans, Mapping) else []
    out = [{k: (str(_first(ch.get(k))) if _first(ch.get(k)) is not None else None) for k in ("label", "unit", "type")}
           for ch in items if isinstance(ch, Mapping)]
    return out if len(out) == n else [{"label": None, "unit": None, "type": None} for _ in range(n)]


def choose(streams: list[Mapping], wanted: str | None, types: tuple[str, ...], what: str, option: str) -> Mapping:
    """The one stream named ``wanted`` (else of type ``wanted``); without it the one of a type in ``types``."""
    if wanted:
        found = [s for s in streams if _field(s, "name") == wanted]
        found = found or [s for s in streams if _field(s, "type").lower() == wanted.lower()]
    else:
        found = [s for s in streams if _field(s, "type").lower() in types]
    if len(found) == 1:
        return found[0]
    seen = ", ".join(describe(s) for s in streams) or "none"
    if not found:
        name = f"named (or of type) {wanted!r}" if wanted else f"of type {'/'.join(types)}"
        raise EEGInputError(f"the XDF file has no {what} {name}; its streams: {seen}. Choose one with {option}")
    raise EEGInputError(f"{len(found)} streams of the XDF file could be the {what} ({', '.join(map(describe, found))}): "
                        f"choose one by name with {option}")


def read_xdf(path: str | Path, *, source: str | None = None, event_stream: str | None = None, stream_unit: str | None = None,
             rename_channels: Mapping[str, str] | None = None, spec: EEGSpec = DEFAULT_SPEC) -> tuple[mne.io.BaseRaw, dict]:
    """The EEG stream of ``path`` as an mne Raw in volts, its markers as annotations; and what was read.

    ``source``/``event_stream``: the EEG and marker streams by name or type (default: the one stream of type EEG,
    the one marker stream); ``stream_unit`` ("uV", "mV", "V") for an EEG stream that declares no unit or a
    wrong one; ``rename_channels`` renames the EEG channels first (units are looked up by the new names).
    """
    mne = _import_mne()
    path = Path(path)
    if not path.is_file():
        raise EEGInputError(f"EEG file {path} does not exist (or is not a file)")
    try:
        streams, _ = _pyxdf().load_xdf(str(path), verbose=False)
    except Exception as e:  # noqa: BLE001 - pyxdf raises plain exceptions on a damaged file
        raise EEGInputError(f"pyxdf could not read {path.name} as XDF: {e}") from None
    numeric = [s for s in streams if _field(s, "channel_format") != "string"]
    eeg = choose(numeric, source, ("eeg",), "EEG stream", "--source NAME")
    markers = choose([s for s in streams if s is not eeg], event_stream, MARKER_TYPES, "marker stream",
                     "--event-stream NAME")
    name, what = _field(eeg, "name"), f"XDF stream {_field(eeg, 'name')!r} of {path.name}"
    sfreq = float(_first(eeg["info"].get("nominal_srate")) or 0)
    if sfreq <= 0:
        raise EEGInputError(f"{what} has an irregular sampling rate (nominal_srate 0): it is no EEG recording; "
                            "choose the EEG stream with --source NAME")
    chans = channels(eeg)
    labels = [c["label"] or str(i) for i, c in enumerate(chans)]
    labels = renamed_channels(labels, rename_channels)
    scales, units = channel_scales(labels, [c["unit"] for c in chans], spec.channels, override=stream_unit, what=what)
    data = np.asarray(eeg["time_series"], dtype=np.float64).T * scales[:, None]  # volts, as mne's readers give
    stamps = np.asarray(eeg["time_stamps"], dtype=np.float64)
    if len(stamps) < 2:
        raise EEGInputError(f"{what} holds {len(stamps)} sample(s)")
    types = ["stim" if (c["type"] or "").lower() in ("stim", "trigger") else "eeg" for c in chans]
    raw = mne.io.RawArray(data, mne.create_info(labels, sfreq, types), verbose="error")
    onsets, descriptions = _marker_onsets(markers, stamps, sfreq, what)
    gaps = np.flatnonzero(np.diff(stamps) > 1.5 / sfreq)
    if len(gaps):  # samples were lost: epochs across a gap are dropped, as the live epocher drops them
        log.warning("%s has %d gap(s) in its time stamps; epochs across them are dropped", what, len(gaps))
        onsets, descriptions = [*onsets, *(gaps / sfreq)], [*descriptions, *(["BAD_xdf_gap"] * len(gaps))]
    durations = [0.0 if not d.startswith("BAD_xdf_gap") else 1.0 / sfreq for d in descriptions]
    raw.set_annotations(mne.Annotations(onsets, durations, descriptions))
    read = {"file": path.name, "eeg_stream": name, "marker_stream": _field(markers, "name"), "units": units}
    log.info("read %s: %d samples at %g Hz, %d markers from %s", what, len(stamps), sfreq, len(onsets) - len(gaps),
             read["marker_stream"])
    return raw, read


def _marker_onsets(markers: Mapping, stamps: np.ndarray, sfreq: float, what: str) -> tuple[list[float], list[str]]:
    """Each marker's description, at the onset of the EEG sample nearest its time stamp (outside: skipped)."""
    values, times = markers["time_series"], np.asarray(markers["time_stamps"], dtype=np.float64)
    onsets, descriptions, outside = [], [], 0
    for value, t in zip(values, times):
        v = value[0] if isinstance(value, (list, tuple, np.ndarray)) else value
        if not isinstance(v, str) and float(v) == 0:
            continue  # a numeric marker stream's 0 is no event (as a live one's)
        desc = str(v) if isinstance(v, str) else f"{float(v):g}"
        i = int(np.searchsorted(stamps, t))
        if i > 0 and (i == len(stamps) or t - stamps[i - 1] <= stamps[i] - t):
            i -= 1
        if abs(stamps[i] - t) > 1.0 / sfreq:
            outside += 1
            continue
        onsets.append(i / sfreq)
        descriptions.append(desc)
    if outside:
        log.warning("%d marker(s) lie outside %s's samples and are skipped", outside, what)
    return onsets, descriptions
