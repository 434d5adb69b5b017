"""Stimulus events on the LSL clock -> encoder epochs, cut by the offline raw path's own function.

The EEG stream's buffer (mne-lsl ``StreamLSL``, fixed size) is the ring buffer. Each event waits until
its window (-0.2..1.0 s) has arrived; then the samples around it become a small ``mne.io.RawArray``
and :func:`eeg2img_deploy.eeg.mne_preprocess.epoch_raw` cuts it exactly as it cuts a file (pick, epoch,
baseline, resample, crop): same samples in, same epoch out. An event maps to the sample nearest its
timestamp. Events whose window is not whole (before the first sample, across a gap in the stream, or
already out of the buffer) are dropped and counted, never patched. The stream's values are scaled to
volts (its declared unit, :mod:`eeg2img_deploy.eeg.units`) before the cut, as a file reader gives them.

Stimulus k (its image's noise stream, as trial k of ``infer``) is the k-th selected marker at or after
the first EEG sample the buffer holds: the inlets open before the engines do, so markers sent while
they load are kept. Two markers at one sample count once (the first; ``--event-id`` selects codes).
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from ..eeg.mne_preprocess import epoch_raw
from ..eeg.spec import EPOCH_TMIN, EEGSpec
from .lsl import Marker, StreamError, local_clock

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
    eeg: np.ndarray | None = field(default=None, repr=False)  # (63, 250) float32, once cut
    drop_reason: str | None = None

    def cut_eeg(self) -> np.ndarray:
        """The EEG of an epoch that has been cut (only those are queued for the pipeline)."""
        if self.eeg is None:
            raise StreamError(f"epoch {self.index} is not cut yet: its window is incomplete")
        return self.eeg


class Epocher:
    def __init__(self, stream, *, spec: EEGSpec, ch_names: list[str], event_channel: str | None = None,
                 event_codes: set[int] | None = None, scales: np.ndarray | None = None):
        """``ch_names``: the stream's channels after --rename-channels; ``event_channel`` is one of them;
        ``scales``: per channel, volts per stream unit (:func:`eeg2img_deploy.eeg.units.channel_scales`)."""
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
        self.scales = None if scales is None else np.asarray(scales, dtype=np.float64)[:, None]
        self.pending: deque[Epoch] = deque()
        self.n_events = 0
        self.start_ts: float | None = None  # the EEG buffer's first sample: stimulus 0 is the first marker from here
        self._held: list[Marker] = []  # markers that came before the first EEG sample did
        self._last_event_ts = -np.inf  # the last numbered marker: another within half a sample is simultaneous
        self.ignored: Counter = Counter()  # markers that are not stimuli of this run, by reason
        self._stim_last_ts = -np.inf
        self._stim_last_value: float | None = None  # the stim channel's value before the buffer's first sample: none

    # ---- events -----------------------------------------------------------------------------------
    def add_markers(self, markers: list[Marker]) -> list[Epoch]:
        """Number the selected markers as stimuli and queue them; returns the events dropped because too many
        were pending.

        Stimulus 0 is the first selected marker at or after the EEG buffer's first sample (markers are held
        until that sample has arrived; earlier ones are not stimuli of this run). Two selected markers at one
        sample (within half a sample period) are one stimulus: the first is kept, the other counted in
        ``ignored`` (``--event-id`` chooses which codes are selected at all).
        """
        dropped: list[Epoch] = []
        markers = self._held + [m for m in markers if self.event_codes is None or m.code in self.event_codes]
        self._held = []
        if not markers:
            return dropped
        if self.start_ts is None:
            _, ts = self.stream.get_data(exclude=())
            if not (ts > 0).any():  # no EEG sample yet (the buffer starts as zeros)
                self._held = markers[-MAX_PENDING:]
                return []
            self.start_ts = float(ts[ts > 0][0])
        half = 0.5 / self.sfreq
        for m in sorted(markers, key=lambda m: m.timestamp):
            if m.timestamp < self.start_ts - half:
                self._ignore(m, "sent before the EEG buffer's first sample")
                continue
            if abs(m.timestamp - self._last_event_ts) < half:
                self._ignore(m, "at the same sample as the stimulus before it (the first is kept; choose with --event-id)")
                continue
            self._last_event_ts = m.timestamp
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
        first = v[0] if self._stim_last_value is None else self._stim_last_value  # a level already high is no onset
        prev = np.concatenate([[first], v[:-1]])
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
        window = data[:, lo:hi].astype(np.float64, copy=False)
        if self.scales is not None:
            window = window * self.scales  # to volts, as a file reader gives them
        raw = mne.io.RawArray(window, self.info, verbose="error")
        events = np.array([[i - lo, 0, ev.code] for ev, i in ready], dtype=np.int64)
        epochs, _ = epoch_raw(raw, events, spec=self.spec)  # the offline code path
        assert len(epochs) == len(ready), "every window lies inside the cut, so mne drops none"
        now = local_clock()
        for (ev, i), eeg in zip(ready, epochs):
            ev.eeg, ev.window_end, ev.cut_time = eeg, float(ts[i + self.post]), now

    def _ignore(self, m: Marker, reason: str) -> None:
        self.ignored[reason] += 1
        log.info("marker %r at %.3f ignored: %s", m.description, m.timestamp, reason)

    def _drop(self, ev: Epoch, reason: str) -> Epoch:
        ev.drop_reason = reason
        log.warning("stimulus %d dropped: %s", ev.index, reason)
        return ev
