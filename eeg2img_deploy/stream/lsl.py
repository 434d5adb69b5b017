"""The LSL side: mne-lsl imported lazily, EEG stream connection, and marker streams read as events.

Markers come from an LSL marker or annotation stream (``--events NAME``; mne-lsl's ``PlayerLSL`` publishes
a recording's annotations as ``<name>-annotations``, one float channel per description) or from a stim
channel inside the EEG stream (``--event-channel CH``, read by :mod:`.epocher`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, EEGInputError

log = logging.getLogger(__name__)

ANNOTATION_TYPES = ("annotations", "markers")  # LSL stream types (case-insensitive) that carry events


class StreamError(EEGInputError):
    """An LSL stream that cannot be found, or that went away and did not come back."""


def import_mne_lsl() -> Any:
    """mne_lsl, or an error that says what to install (the LSL library ships in mne-lsl's wheel)."""
    try:
        import mne_lsl.lsl  # noqa: F401  (loads liblsl)
        import mne_lsl.stream  # noqa: F401
    except ImportError as e:
        raise BackendUnavailableError(
            f"`stream` needs mne-lsl ({e}): pip install 'eeg2img-deploy[stream]'"
        ) from None
    except RuntimeError as e:  # liblsl missing or unloadable
        raise BackendUnavailableError(
            f"mne-lsl could not load the LSL library ({e}). Reinstall mne-lsl (its wheel ships liblsl), or "
            "install liblsl (e.g. conda install -c conda-forge liblsl, or the labstreaminglayer release) and "
            "point MNE_LSL_LIB at it"
        ) from None
    import mne_lsl

    _quiet_liblsl(mne_lsl.lsl)
    return mne_lsl


# Where liblsl looks for its configuration (LSLAPICFG first); a lab's file holds its network settings.
LSL_CONFIG_FILES = ("lsl_api.cfg", "~/lsl_api/lsl_api.cfg", "/etc/lsl_api/lsl_api.cfg")
_LSL_LOG_WARNINGS = "[log]\nlevel = -1\n"  # loguru verbosity: warnings and errors, no INFO


def user_lsl_config() -> str | None:
    """The liblsl configuration file the user has, if any."""
    if os.environ.get("LSLAPICFG"):
        return os.environ["LSLAPICFG"]
    return next((p for p in LSL_CONFIG_FILES if Path(p).expanduser().is_file()), None)


def _quiet_liblsl(lsl) -> None:
    """liblsl logs INFO lines to stderr on first use ("Loaded default config", its version); with no
    configuration of the user's to respect, it gets one that keeps its warnings and errors only."""
    if user_lsl_config() is None:
        with contextlib.suppress(AttributeError, NotImplementedError):  # liblsl < 1.17.7: as it was
            lsl.set_config_content(_LSL_LOG_WARNINGS)


def local_clock() -> float:
    from mne_lsl.lsl import local_clock as clock

    return float(clock())


def describe_streams(timeout: float = 0.5) -> list[str]:
    from mne_lsl.lsl import resolve_streams

    return sorted(f"{s.name} ({s.stype}, {s.n_channels} ch, {s.sfreq:g} Hz)" for s in resolve_streams(timeout=timeout))


def resolve_one(*, name: str | None, stype: tuple[str, ...] | None, what: str, option: str, timeout: float):
    """The one stream named ``name`` (or, without a name, of a type in ``stype``); else a clear error.

    Looks again every second until ``timeout``: a stream that is starting up appears a moment later.
    """
    import time

    from mne_lsl.lsl import resolve_streams

    deadline = time.monotonic() + timeout
    while True:
        wait = max(0.2, min(1.0, deadline - time.monotonic()))
        found = resolve_streams(timeout=wait, name=name) if name else resolve_streams(timeout=wait)
        if not name:
            found = [s for s in found if stype is None or (s.stype or "").lower() in stype]
        if found or time.monotonic() >= deadline:
            break
    if len(found) == 1:
        return found[0]
    seen = describe_streams() if not found else sorted(f"{s.name} ({s.stype})" for s in found)
    if not found:
        raise StreamError(
            f"no {what} {'named ' + repr(name) + ' ' if name else ''}found on the network within {timeout:g} s "
            f"(streams seen: {seen or 'none'}); start the amplifier's LSL app, name the stream with {option}, "
            "or try --replay FILE"
        )
    raise StreamError(f"{len(found)} LSL streams could be the {what}: {seen}; choose one with {option}")


@dataclass(frozen=True)
class Marker:
    timestamp: float  # LSL clock (local after clock sync)
    description: str
    code: int


class MarkerInlet:
    """Events from an LSL marker/annotation stream: numeric one-hot (mne-lsl annotations), numeric codes, strings.

    Codes follow mne's ``events_from_annotations`` (descriptions sorted, numbered from 1) unless
    ``event_id`` maps descriptions to codes, so the live and the offline epochs carry the same codes.
    """

    def __init__(self, sinfo, event_id: dict[str, int] | None = None):
        self.event_id = event_id
        self._auto: dict[str, int] = {}
        self.inlet = None
        self.reopen(sinfo)

    def reopen(self, sinfo) -> None:
        """Read from ``sinfo`` (the same stream restarted) from now on; codes already given keep their numbers."""
        from mne_lsl.lsl import StreamInlet

        if self.inlet is not None:
            self.close()
        self.name, self.uid = sinfo.name, sinfo.uid
        self.inlet = StreamInlet(sinfo, processing_flags=["clocksync"])
        self.inlet.open_stream(timeout=5)
        self.labels = list(self.inlet.get_sinfo().get_channel_names() or [])
        self.string = self.inlet.get_sinfo().dtype == "string"
        stype = (self.inlet.get_sinfo().stype or "").lower()
        self.one_hot = not self.string and (stype == "annotations" or len(self.labels) > 1)
        for d in sorted(self.labels) if self.one_hot else ():
            self._auto.setdefault(d, len(self._auto) + 1)

    def _code(self, desc: str) -> int | None:
        if self.event_id is not None:
            return self.event_id.get(desc)
        if desc in self._auto:
            return self._auto[desc]
        try:
            return int(float(desc))
        except ValueError:
            self._auto[desc] = len(self._auto) + 1  # strings: numbered in order of first appearance
            return self._auto[desc]

    def pull(self) -> list[Marker]:
        data, ts = self.inlet.pull_chunk(timeout=0.0)
        out = []
        for row, t in zip(data, np.asarray(ts)):
            if self.string:
                descs = [str(row[0])]
            elif self.one_hot:
                descs = [self.labels[i] for i in np.flatnonzero(np.asarray(row) != 0)]
            else:
                value = float(np.asarray(row).ravel()[0])
                descs = [f"{value:g}"] if value != 0 else []
            for d in descs:
                code = self._code(d)
                if code is not None:
                    out.append(Marker(float(t), d, int(code)))
        return out

    def close(self) -> None:
        try:
            self.inlet.close_stream()
        except Exception:  # noqa: BLE001 - the stream may be gone already
            pass
