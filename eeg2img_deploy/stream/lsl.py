"""The LSL side: mne-lsl imported lazily, EEG stream connection, and marker streams read as events.

Markers come from an LSL marker or annotation stream (``--event-stream NAME``; mne-lsl's ``PlayerLSL`` publishes
a recording's annotations as ``<name>-annotations``, one float channel per description) or from a stim
channel inside the EEG stream (``--event-channel CH``, read by :mod:`.epocher`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..eeg.mne_preprocess import is_stimulus_description
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

    _route_liblsl_log(mne_lsl.lsl)
    return mne_lsl


# Where liblsl looks for its configuration (LSLAPICFG first); a lab's file holds its network settings.
LSL_CONFIG_FILES = ("lsl_api.cfg", "~/lsl_api/lsl_api.cfg", "/etc/lsl_api/lsl_api.cfg")
LIBLSL_LOGGER = "eeg2img_deploy.liblsl"


def user_lsl_config() -> str | None:
    """The liblsl configuration file the user has, if any."""
    if os.environ.get("LSLAPICFG"):
        return os.environ["LSLAPICFG"]
    return next((p for p in LSL_CONFIG_FILES if Path(p).expanduser().is_file()), None)


def _route_liblsl_log(lsl) -> None:
    """liblsl logs to stderr by itself (its version at start, "ERR| Stream transmission broke off" whenever a
    peer goes away, at the end of every run). With no configuration of the user's to respect, it gets one
    that sends its log to a file, which :class:`LiblslLog` forwards to our logger (levels: ``-v``)."""
    global _forwarder
    if _forwarder is not None or user_lsl_config() is not None:
        return
    fd, path = tempfile.mkstemp(prefix="eeg2img-liblsl-", suffix=".log")
    os.close(fd)
    try:
        lsl.set_config_content(f"[log]\nlevel = 0\nfile = {path}\n")  # 0: liblsl's INFO and above
    except (AttributeError, NotImplementedError):  # liblsl < 1.17.7: as it was
        os.unlink(path)
        return
    # liblsl reads its configuration at first use and, while it opens the log file, says so on stderr:
    # make that first use now, with the process's stderr pointed at /dev/null for its duration.
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        lsl.StreamInfo("eeg2img-config", "none", 1, 0, "float32", "eeg2img-config")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    _forwarder = LiblslLog(Path(path))
    _forwarder.start()
    atexit.register(_forwarder.close)


_forwarder: LiblslLog | None = None


class LiblslLog(threading.Thread):
    """Tails liblsl's log file into the ``eeg2img_deploy.liblsl`` logger (a daemon thread; the file goes at exit).

    liblsl's errors become warnings, its warnings info, the rest debug; its reports of a peer that went
    away ("transmission broke off", "re-connecting") become info: ``stream`` says that itself, in its own
    words, when it matters (a stream that stops sending), and liblsl repeats it whenever any peer closes.
    """

    LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \(\s*[\d.]+s\) \[[^\]]*\]\s+(\S+:\d+)\s+(FATL|ERR|WARN|INFO|\d+)\| ")
    PEER_GONE = ("transmission broke off", "re-connecting", "stream lost", "connection reset", "end of file")

    def __init__(self, path: Path, poll_s: float = 0.2):
        super().__init__(name="liblsl-log", daemon=True)
        self.path, self.poll_s = path, poll_s
        self.log = logging.getLogger(LIBLSL_LOGGER)
        self._pos, self._rest = 0, ""
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def run(self) -> None:
        while not self._closed.wait(self.poll_s):
            self.drain()

    def drain(self) -> None:
        with self._lock:
            try:
                with open(self.path, encoding="utf-8", errors="replace") as f:
                    f.seek(self._pos)
                    text = self._rest + f.read()
                    self._pos = f.tell()
            except OSError:
                return
            text, sep, self._rest = text.rpartition("\n")  # only whole lines; the rest waits
            for level, where, message in self.records(text + sep):
                self.log.log(level, "liblsl: %s (%s)", message, where)

    @classmethod
    def records(cls, text: str):
        """(logging level, file:line, message) of each liblsl record in ``text`` (loguru's format)."""
        marks = list(cls.LINE.finditer(text))
        for m, nxt in zip(marks, [*marks[1:], None]):
            message = text[m.end(): nxt.start() if nxt else len(text)].strip()
            yield cls.level(m.group(2), message), m.group(1), message

    @classmethod
    def level(cls, verbosity: str, message: str) -> int:
        if verbosity in ("FATL", "ERR"):
            return logging.INFO if any(p in message.lower() for p in cls.PEER_GONE) else logging.WARNING
        return logging.INFO if verbosity == "WARN" else logging.DEBUG

    def close(self) -> None:
        self._closed.set()
        self.drain()
        with contextlib.suppress(OSError):
            self.path.unlink()


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

    def __init__(self, sinfo: Any, event_id: dict[str, int] | None = None):
        self.event_id = event_id
        self._auto: dict[str, int] = {}
        self.inlet: Any = None  # mne-lsl's StreamInlet (untyped), from reopen
        self.reopen(sinfo)

    def reopen(self, sinfo: Any) -> None:
        """Read from ``sinfo`` (the same stream restarted) from now on; codes already given keep their numbers."""
        from mne_lsl.lsl import StreamInlet

        if self.inlet is not None:
            self.close()
        self.name, self.uid = sinfo.name, sinfo.uid
        self.inlet = inlet = StreamInlet(sinfo, processing_flags=["clocksync"])
        inlet.open_stream(timeout=5)
        with contextlib.suppress(TimeoutError):  # the clock offset, measured now rather than in the first pull
            inlet.time_correction(timeout=5)
        info = inlet.get_sinfo()
        self.labels = list(info.get_channel_names() or [])
        self.string = info.dtype == "string"
        stype = (info.stype or "").lower()
        self.one_hot = not self.string and (stype == "annotations" or len(self.labels) > 1)
        for d in sorted(self.labels) if self.one_hot else ():
            if is_stimulus_description(d):  # numbered as mne's events_from_annotations numbers a file's
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
        try:
            data, ts = self.inlet.pull_chunk(timeout=0.0)
        except TimeoutError:  # liblsl could not measure the clock offset within its 5 s (a loaded machine)
            log.warning("the marker stream %r: no clock offset yet (liblsl timed out); trying again", self.name)
            return []
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
                if not is_stimulus_description(d):
                    continue  # BAD/EDGE annotations (e.g. the boundaries of a concatenated recording)
                code = self._code(d)
                if code is not None:
                    out.append(Marker(float(t), d, int(code)))
        return out

    def close(self) -> None:
        try:
            self.inlet.close_stream()
        except Exception:  # noqa: BLE001 - the stream may be gone already
            pass
