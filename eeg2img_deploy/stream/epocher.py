"""Stimulus events on the LSL clock -> encoder epochs, cut by the offline raw path's own function.

The EEG stream's buffer (mne-lsl ``StreamLSL``, fixed size) is the ring buffer. Each event waits until
its window (-0.2..1.0 s) has arrived; then the samples around it become a small ``mne.io.RawArray``
and :func:`eeg2img_deploy.eeg.mne_preprocess.epoch_raw` cuts it exactly as it cuts a file (pick, epoch,
baseline, resample, crop): same samples in, same epoch out. An event maps to the sample nearest its
timestamp. Events whose window is not whole (before the first sample, across a gap in the stream, or
already out of the buffer) are dropped and counted, never patched.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..eeg.mne_preprocess import epoch_raw
from ..eeg.spec import EPOCH_TMIN, EEGSpec
from .lsl import Marker, local_clock

log = logging.getLogger(__name__)

MAX_PENDING = 512  # events waiting for their window; at THINGS-EEG2's 5 Hz a window holds ~6


@dataclass
class Epoch:
    index: int  # stimulus number in the stream, from 0: the noise stream index (as trial k of `infer`)
    event_time: float  # LSL clock
    code: int
    description: str
    window_end: float = 0.0  # LSL timestamp of the window's last sample
    cut_time: float = 0.0  # LSL clock when it was cut
    eeg: np.ndarray | None = field(default=None, repr=False)  # (63, 250) float32
    drop_reason: str | None = None


class Epocher:
    def __init__(self, stream, *, spec: EEGSpec, ch_names: list[str], event_channel: str | None = None,
                 event_codes: set[int] | None = None):
        """``ch_names``: the stream's channels after --rename-channels; ``event_channel`` is one of them."""
        import mne

        self.stream = stream
        self.spec = spec
        self.sfreq = float(stream.info["sfreq"])
        self.pre = int(round(-EPOCH_TMIN * self.sfreq))  # samples before the event
        self.post = int(round((spec.tmin + spec.n_times / spec.sfreq) * self.sfreq))  # samples after it
        self.info = mne.create_info(ch_names, self.sfreq, "eeg")
        self.event_channel = event_channel
        # get_data picks by the stream's own names
        self._stim_pick = stream.ch_names[ch_names.index(event_channel)] if event_channel else None
        self.buffer_s = stream.n_buffer / self.sfreq
        self.event_codes = event_codes
        self.pending: deque[Epoch] = deque()
        self.n_events = 0
        self._stim_last_ts = -np.inf
        self._stim_last_value = 0.0

    # ---- events -----------------------------------------------------------------------------------
    def add_markers(self, markers: list[Marker]) -> list[Epoch]:
        """Queue markers as events; returns the events dropped because too many were pending."""
        dropped = []
        markers = [m for m in markers if self.event_codes is None or m.code in self.event_codes]
        for m in sorted(markers, key=lambda m: m.timestamp):
            self.pending.append(Epoch(self.n_events, m.timestamp, m.code, m.description))
            self.n_events += 1
            if len(self.pending) > MAX_PENDING:
                dropped.append(self._drop(self.pending.popleft(), "too many events waiting for their window"))
        return dropped

    def scan_event_channel(self) -> list[Epoch]:
        """Onsets (0 -> code) in the stim channel's new samples, as markers."""
        values, ts = self.stream.get_data(picks=[self._stim_pick], exclude=())
        new = ts > self._stim_last_ts
        if not new.any():
            return []
        v, t = values[0, new], ts[new]
        prev = np.concatenate([[self._stim_last_value], v[:-1]])
        onsets = np.flatnonzero((v != 0) & (prev == 0))
        self._stim_last_ts, self._stim_last_value = float(t[-1]), float(v[-1])
        return self.add_markers([Marker(float(t[i]), f"{v[i]:g}", int(v[i])) for i in onsets])

    # ---- cutting ----------------------------------------------------------------------------------
    def cut_ready(self, latest: float) -> tuple[list[Epoch], list[Epoch]]:
        """(epochs cut, events dropped) among the pending events whose window is complete.

        ``latest``: the newest sample's timestamp. The buffer is read only when the oldest pending
        window may be complete, and only as far back as that window starts.
        """
        if not self.pending or latest < self.pending[0].event_time + (self.post - 0.5) / self.sfreq:
            return [], []
        # + 1 s: samples keep arriving after `latest` was read, and the window is counted from the newest
        span = latest - self.pending[0].event_time + self.pre / self.sfreq + 1.0
        data, ts = self.stream.get_data(winsize=min(max(span, 0.0), self.buffer_s), exclude=())
        valid = ts > 0  # the buffer starts as zeros
        if not valid.any():
            return [], []
        first = int(np.argmax(valid))
        data, ts = data[:, first:], ts[first:]
        ready: list[tuple[Epoch, int]] = []
        dropped: list[Epoch] = []
        while self.pending:
            ev = self.pending[0]
            i = int(np.searchsorted(ts, ev.event_time))
            if i > 0 and (i == len(ts) or ev.event_time - ts[i - 1] <= ts[i] - ev.event_time):
                i -= 1  # the nearest sample
            if i + self.post >= len(ts):
                break  # not complete yet; later events are not either
            self.pending.popleft()
            if i - self.pre < 0:
                dropped.append(self._drop(ev, "its window starts before the buffered stream"))
                continue
            span = ts[i + self.post] - ts[i - self.pre]
            if abs(span * self.sfreq - (self.pre + self.post)) > 1.5:
                dropped.append(self._drop(ev, f"a gap in the stream ({span:.3f} s for a {(self.pre + self.post) / self.sfreq:.3f} s window)"))
                continue
            ready.append((ev, i))
        if ready:
            self._cut(data, ts, ready)
        return [ev for ev, _ in ready], dropped

    def _cut(self, data: np.ndarray, ts: np.ndarray, ready: list[tuple[Epoch, int]]) -> None:
        import mne

        lo = min(i for _, i in ready) - self.pre
        hi = max(i for _, i in ready) + self.post + 1
        raw = mne.io.RawArray(data[:, lo:hi].astype(np.float64, copy=False), self.info, verbose="error")
        events = np.array([[i - lo, 0, ev.code] for ev, i in ready], dtype=np.int64)
        epochs, _ = epoch_raw(raw, events, spec=self.spec)  # the offline code path
        assert len(epochs) == len(ready), "every window lies inside the cut, so mne drops none"
        now = local_clock()
        for (ev, i), eeg in zip(ready, epochs):
            ev.eeg, ev.window_end, ev.cut_time = eeg, float(ts[i + self.post]), now

    def _drop(self, ev: Epoch, reason: str) -> Epoch:
        ev.drop_reason = reason
        log.warning("stimulus %d dropped: %s", ev.index, reason)
        return ev
