"""``StreamReconstructor``: EEG from LSL in, one reconstructed image per stimulus out, as a generator.

    rec = StreamReconstructor(Pipeline.from_bundle("engines/tiny"), StreamSettings(subject=8))
    for r in rec:                      # blocks while waiting for stimuli; rec.stop() ends it
        act_on(r.image, r.index)       # a closed loop's own code

One thread: poll the marker inlet (or stim channel), cut every epoch whose window is complete
(:mod:`.epocher`), queue it, reconstruct up to the engines' max batch of waiting epochs, yield each.
mne-lsl's acquisition thread fills the EEG buffer meanwhile. The queue is bounded: when epochs arrive
faster than they are reconstructed and ``queue_size`` are waiting, the oldest waiting epoch is dropped
(counted in ``stats``): a live display wants the newest stimuli, and memory stays flat.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..core.options import RunOptions
from ..eeg.spec import EEGSpec
from ..errors import EEGInputError, OptionError
from .epocher import Epoch, Epocher
from .lsl import ANNOTATION_TYPES, MarkerInlet, StreamError, import_mne_lsl, local_clock, resolve_one

log = logging.getLogger(__name__)

RECONNECT_LOOK_S = 1.0  # while the EEG is gone, look for a new source this often


@dataclass(frozen=True)
class StreamSettings:
    subject: int
    source: str | None = None  # EEG stream name [default: the one stream of type EEG]
    event_stream: str | None = None  # marker/annotation stream name [default: the one such stream]
    event_channel: str | None = None  # a stim channel of the EEG stream instead of a marker stream
    event_id: Any = None  # a code, a list of codes, or {description: code}
    queue_size: int = 8  # epochs waiting for the pipeline; beyond it the oldest waiting one is dropped
    max_epochs: int | None = None
    connect_timeout: float = 10.0  # seconds to find the streams at start
    reconnect_timeout: float = 10.0  # seconds to wait for a stream that disappeared
    stall_s: float = 1.0  # no new sample for this long: the stream is gone
    rename_channels: dict[str, str] | None = None
    stream_unit: str | None = None  # "uV", "mV" or "V": the EEG's unit, instead of (or overriding) the declared one
    allow_resample: bool = False
    buffer_s: float = 30.0  # the EEG ring buffer; an epoch must be cut before its window leaves it
    poll_s: float = 0.005
    run: RunOptions = RunOptions()  # what each pipeline call runs: seed, steps, prior_steps, guidance...

    def __post_init__(self) -> None:
        if self.queue_size < 1:
            raise OptionError(f"--queue-size must be >= 1, got {self.queue_size}")
        if self.event_stream and self.event_channel:
            raise EEGInputError("give the stimuli either as a marker stream (--event-stream) or a stim channel "
                                "(--event-channel), not both")


@dataclass
class EpochResult:
    index: int  # stimulus number in the stream; also the noise stream index
    code: int
    description: str
    event_time: float  # LSL clock: the stimulus
    window_end: float  # LSL clock: the epoch window's last sample
    cut_time: float  # LSL clock: the epoch was cut
    image_time: float  # LSL clock: the pipeline returned the image
    image: np.ndarray = field(repr=False)  # (H, W, 3) uint8
    subject: int = 0
    seed: int = 0
    batch_size: int = 1
    timings_ms: dict[str, float] = field(default_factory=dict)  # the batch's per-stage wall times


@dataclass
class StreamStats:
    epochs: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    batches: Counter = field(default_factory=Counter)  # batch size -> count
    ignored: Counter = field(default_factory=Counter)  # markers that are no stimulus of this run, reason -> count
    max_queue: int = 0

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())


class EpochQueue:
    """Bounded FIFO of cut epochs. Policy: full -> drop the oldest waiting epoch (counted by the caller)."""

    def __init__(self, size: int):
        self.size = size
        self.items: deque[Epoch] = deque()

    def push(self, ep: Epoch) -> Epoch | None:
        """Add ``ep``; returns the epoch dropped to make room, if any."""
        dropped = self.items.popleft() if len(self.items) >= self.size else None
        self.items.append(ep)
        return dropped

    def take(self, n: int) -> list[Epoch]:
        return [self.items.popleft() for _ in range(min(n, len(self.items)))]

    def __len__(self) -> int:
        return len(self.items)


class ImagePipeline(Protocol):
    """What the stream calls: :class:`~eeg2img_deploy.runtime.pipeline.Pipeline` (stream does not import the runtime)."""

    eeg_spec: EEGSpec
    max_batch: int

    def __call__(self, eeg: np.ndarray, subject_ids: int | np.ndarray, seed: int | np.ndarray | None = None,
                 options: RunOptions | None = None, *, sample_indices: np.ndarray | None = None, **knobs: Any) -> Any: ...


class StreamReconstructor:
    """Iterate to connect and reconstruct; ``stop()`` (e.g. from a signal handler) ends after the batch in flight."""

    def __init__(self, pipeline: ImagePipeline | None, settings: StreamSettings, *, player: Any = None,
                 spec: EEGSpec | None = None):
        """``pipeline`` may be None at first (then ``spec``, the bundle's EEG spec, is needed): ``connect()``
        then starts buffering the streams while the engines open, and ``attach(pipeline)`` gives them."""
        if spec is None:
            if pipeline is None:
                raise ValueError("StreamReconstructor needs a pipeline or the EEG spec of the one to come")
            spec = pipeline.eeg_spec
        self.pipeline = pipeline
        self.spec = spec
        self.settings = settings
        self.player = player  # a PlayerLSL started by --replay: its end is the stream's normal end
        self.stats = StreamStats()
        self.queue = EpochQueue(settings.queue_size)
        self.stream: Any = None  # mne-lsl's StreamLSL (untyped) once connected; the epocher reads it
        self.markers: MarkerInlet | None = None
        self.epocher: Epocher | None = None
        self._stop = False
        self._last_ts = -np.inf
        self._last_progress = 0.0
        self._gone_since: float | None = None
        self._eeg_uid: str | None = None
        self._channels: list[str] = []
        self._scales = np.ones(0)  # per stream channel: volts per unit (set on connecting)
        self.header: dict[str, Any] = {}  # what the stream is, its units: epochs.jsonl's first line
        self._last_look = 0.0  # when _reconnect last looked for a new source

    def stop(self) -> None:
        self._stop = True

    def attach(self, pipeline: ImagePipeline) -> None:
        """The pipeline that reconstructs, once its engines are open (the streams may be buffering already)."""
        if pipeline.eeg_spec != self.spec:
            raise EEGInputError(f"the pipeline's EEG spec {pipeline.eeg_spec} is not the one the stream was checked "
                                f"against ({self.spec})")
        self.pipeline = pipeline

    # ---- connection -------------------------------------------------------------------------------
    def connect(self) -> Epocher:
        """Find the streams and check the EEG's channels and rate (the file path's errors), before any epoch;
        returns the epocher that cuts them."""
        import_mne_lsl()
        if self.stream is not None and self.stream.connected:  # left by a connect() that failed half-way
            self.stream.disconnect()
        s = self.settings
        timeout = max(s.connect_timeout, 0.5)
        source = s.source or (self.player.name if self.player is not None else None)
        sinfo = resolve_one(name=source, stype=("eeg",), what="EEG stream", option="--source", timeout=timeout)
        stream, names = self._connect_eeg(sinfo, timeout)
        what = f"LSL stream {sinfo.name!r}"
        codes = _codes(s.event_id)
        if s.event_channel:
            if s.event_channel not in names:
                raise EEGInputError(f"--event-channel {s.event_channel!r} is not in {what}; it has {names}")
        else:
            mname = s.event_stream or (f"{self.player.name}-annotations" if self.player is not None else None)
            minfo = resolve_one(name=mname, stype=ANNOTATION_TYPES, what="marker stream",
                                option="--event-stream NAME (or --event-channel CH for a stim channel)", timeout=timeout)
            self.markers = MarkerInlet(minfo, s.event_id if isinstance(s.event_id, dict) else None)
        self.epocher = epocher = Epocher(stream, spec=self.spec, ch_names=names,
                                         event_channel=s.event_channel, event_codes=codes, scales=self._scales)
        epocher.ignored = self.stats.ignored
        self._last_progress = local_clock()
        log.info("connected to %s (%d channels, %g Hz)", what, len(names), stream.info["sfreq"])
        return epocher

    def _connect_eeg(self, sinfo: Any, timeout: float) -> tuple[Any, list[str]]:
        """Connect to the EEG stream ``sinfo`` and check its channels and rate; returns the mne-lsl stream and its
        (renamed) channels."""
        from mne_lsl.stream import StreamLSL

        from ..eeg.mne_preprocess import check_recording, renamed_channels
        from ..eeg.units import channel_scales

        s = self.settings
        self.stream = stream = StreamLSL(s.buffer_s, name=sinfo.name, source_id=sinfo.source_id)
        try:
            stream.connect(acquisition_delay=0.005, processing_flags=["clocksync"], timeout=timeout)
        except RuntimeError as e:
            raise StreamError(f"could not connect to the EEG stream {sinfo.name!r}: {e}") from None
        self._eeg_uid = sinfo.uid
        names = renamed_channels(stream.ch_names, s.rename_channels)
        what = f"LSL stream {sinfo.name!r}"
        spec = self.spec
        check_recording(names, float(stream.info["sfreq"]), spec, allow_resample=s.allow_resample, what=what)
        self._scales, units = channel_scales(names, stream.sinfo.get_channel_units(), spec.channels,
                                             override=s.stream_unit, what=what)
        self._channels = names
        self.header = {"stream": {"name": sinfo.name, "source_id": sinfo.source_id, "type": sinfo.stype,
                                  "channels": len(names), "sfreq": float(stream.info["sfreq"])},
                       "units": units}
        return stream, names

    def _reconnect(self, epocher: Epocher) -> None:
        """While the EEG is gone: connect to a new source under its name (the amplifier's software restarted).

        liblsl's inlets recover by themselves when they find the source again, but not always in time; a
        new outlet under the same name is taken at once (its channels checked again), the markers likewise.
        """
        from mne_lsl.lsl import resolve_streams

        new = [i for i in resolve_streams(timeout=0.2, name=self.stream.name) if i.uid != self._eeg_uid]
        if not new:
            return
        with contextlib.suppress(Exception):  # the old connection may be half gone
            self.stream.disconnect()
        before, scales = self._channels, self._scales
        _, names = self._connect_eeg(new[0], max(self.settings.connect_timeout, 0.5))
        if names != before:
            raise StreamError(f"the EEG stream {self.stream.name!r} came back with other channels "
                              f"({self._channels}, was {before}): start the stream command again")
        if not np.array_equal(self._scales, scales):
            raise StreamError(f"the EEG stream {self.stream.name!r} came back with other units "
                              f"({self.header['units']}): start the stream command again")
        epocher.stream = self.stream
        log.warning("a new EEG stream %r appeared: connected to it", self.stream.name)
        if self.markers is not None:
            found = resolve_streams(timeout=0.5, name=self.markers.name)
            if (m := [i for i in found if i.uid != self.markers.uid]):
                self.markers.reopen(m[0])

    def close(self) -> None:
        if self.markers is not None:
            self.markers.close()
        if self.stream is not None and self.stream.connected:
            self.stream.disconnect()
        if self.player is not None and self.player.running:
            self.player.stop()

    # ---- the loop ---------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[EpochResult]:
        epocher = self.epocher if self.epocher is not None else self.connect()
        if self.pipeline is None:
            raise RuntimeError("attach(pipeline) before iterating")
        try:
            yield from self._loop(self.pipeline, epocher)
        finally:
            self.close()

    def _loop(self, pipeline: ImagePipeline, epocher: Epocher) -> Iterator[EpochResult]:
        s = self.settings
        batch_max = pipeline.max_batch
        while not self._stop:
            gone = self._poll(epocher)
            cut, dropped = epocher.cut_ready(self._last_ts)
            for ep in dropped:
                self._count_drop(ep)
            for ep in cut:
                old = self.queue.push(ep)
                if old is not None:
                    old.drop_reason = "queue full: the oldest waiting epoch is dropped"
                    self._count_drop(old)
            self.stats.max_queue = max(self.stats.max_queue, len(self.queue))
            if self.queue:
                left = None if s.max_epochs is None else s.max_epochs - self.stats.epochs
                batch = self.queue.take(batch_max if left is None else min(batch_max, left))
                yield from self._reconstruct(pipeline, batch)
                if s.max_epochs is not None and self.stats.epochs >= s.max_epochs:
                    return
            elif gone is not None:  # only once everything that arrived is reconstructed
                raise StreamError(
                    f"the EEG stream {epocher.stream.name!r} sent nothing for {local_clock() - gone:.1f} s and "
                    f"did not come back within --reconnect-timeout {s.reconnect_timeout:g} s; stopped after "
                    f"{self.stats.epochs} epoch(s)"
                )
            elif self._ended():
                for ep in epocher.pending:
                    ep.drop_reason = "the stream ended before its window was complete"
                    self._count_drop(ep)
                epocher.pending.clear()
                return
            else:
                time.sleep(s.poll_s)

    def _reconstruct(self, pipeline: ImagePipeline, batch: list[Epoch]) -> Iterator[EpochResult]:
        s = self.settings
        eeg = np.stack([ep.cut_eeg() for ep in batch])
        # Stimulus k draws noise stream (seed, k), whatever batch it lands in: `infer`'s trial k.
        res = pipeline(eeg, s.subject, options=s.run, sample_indices=np.array([ep.index for ep in batch]))
        now = local_clock()
        self.stats.batches[len(batch)] += 1
        for ep, image in zip(batch, res.images):
            self.stats.epochs += 1
            yield EpochResult(ep.index, ep.code, ep.description, ep.event_time, ep.window_end, ep.cut_time, now,
                              image, s.subject, s.run.seed, len(batch), dict(res.timings_ms))

    def _count_drop(self, ep: Epoch) -> None:
        self.stats.dropped[ep.drop_reason or "unknown"] += 1

    def _poll(self, epocher: Epocher) -> float | None:
        """Read new markers and note whether the EEG advanced; once the stream is given up as gone, the LSL time
        it went silent (else None)."""
        if self.markers is not None:
            for ep in epocher.add_markers(self.markers.pull()):
                self._count_drop(ep)
        elif epocher.event_channel:
            for ep in epocher.scan_event_channel():
                self._count_drop(ep)
        _, ts = epocher.stream.get_data(winsize=1 / epocher.sfreq, exclude=())
        now = local_clock()
        latest = float(ts[-1]) if len(ts) else -np.inf
        if latest > self._last_ts:
            if self._gone_since is not None:
                log.warning("EEG stream is back after %.1f s", now - self._gone_since)
                self._gone_since = None
            self._last_ts, self._last_progress = latest, now
            return None
        if now - self._last_progress < self.settings.stall_s or self._ended():
            return None
        if self._gone_since is None:
            self._gone_since = self._last_progress
            log.warning("the EEG stream sent nothing for %.1f s: gone? waiting up to %g s (--reconnect-timeout) for it",
                        now - self._last_progress, self.settings.reconnect_timeout)
        gone = self._gone_since
        if now - self._last_look >= RECONNECT_LOOK_S:
            self._last_look = now
            self._reconnect(epocher)
        return gone if now - gone > self.settings.reconnect_timeout else None

    def _ended(self) -> bool:
        """A replay that played to its end (a live stream never ends: it can only go away)."""
        return self.player is not None and not self.player.running


def _codes(event_id: Any) -> set[int] | None:
    if event_id is None:
        return None
    if isinstance(event_id, dict):
        return {int(v) for v in event_id.values()}
    if isinstance(event_id, (list, tuple)):
        return {int(v) for v in event_id}
    return {int(event_id)}
