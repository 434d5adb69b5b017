"""What ``stream`` leaves behind: one PNG per epoch and one JSON line per epoch, each written whole.

``DIR/epoch_000000.png`` (the number is the stimulus index in the stream) and ``DIR/epochs.jsonl``: a
header line ``{"header": {...}}`` (the stream, its units and their factor to volts, the run's settings),
then per epoch event time, window end, cut, image and write times on the LSL clock, the two latencies,
per-stage ms of the batch, batch size, subject and seed. PNGs are written to a temporary name and renamed; a JSON line
is written only after its PNG exists, in one write, and flushed.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from pathlib import Path
from typing import TextIO

import numpy as np

from ..errors import EEGInputError
from .lsl import local_clock
from .reconstructor import EpochResult, StreamStats

JSONL = "epochs.jsonl"
IMAGE_RE = re.compile(r"epoch_\d{6,}\.png")
LATENCY_WINDOW = 4096  # the live p50/p99 are over the last this many epochs (bounded memory)


def read_epochs_jsonl(path: Path) -> tuple[dict, list[dict]]:
    """``epochs.jsonl`` as (header, one dict per epoch)."""
    lines = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if lines and "header" in lines[0]:
        return lines[0]["header"], lines[1:]
    return {}, lines


def image_name(index: int) -> str:
    return f"epoch_{index:06d}.png"


class EpochWriter:
    def __init__(self, out_dir: Path, *, overwrite: bool = False):
        self.out_dir = Path(out_dir)
        old = sorted(p.name for p in self.out_dir.glob("epoch_*.png")) if self.out_dir.is_dir() else []
        if (self.out_dir / JSONL).exists() or old:
            if not overwrite:
                raise EEGInputError(
                    f"{self.out_dir} holds an earlier stream run ({JSONL}, {len(old)} epoch image(s)); choose another "
                    "--out, or pass --overwrite to replace them"
                )
            for name in old:
                (self.out_dir / name).unlink()
            (self.out_dir / JSONL).unlink(missing_ok=True)
        self._jsonl: TextIO | None = None  # opened at the first epoch: a run that fails before it writes nothing
        self.header: dict = {}  # the first line, once the stream is known (StreamReconstructor.header + run)

    def write(self, r: EpochResult) -> dict:
        from PIL import Image

        from ..fileio import atomic_path

        jsonl = self._jsonl
        if jsonl is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._jsonl = jsonl = open(self.out_dir / JSONL, "a", encoding="utf-8")
            jsonl.write(json.dumps({"header": self.header}, allow_nan=False) + "\n")

        name = image_name(r.index)
        with atomic_path(self.out_dir / name) as tmp:
            Image.fromarray(r.image).save(tmp, format="PNG")
        written = local_clock()
        record = {
            "index": r.index, "image": name, "code": r.code, "description": r.description,
            "subject": r.subject, "seed": r.seed, "batch_size": r.batch_size,
            "event_time": r.event_time, "window_end": r.window_end, "cut_time": r.cut_time,
            "image_time": r.image_time, "image_written": written,
            "latency_ms": {"from_stimulus": (written - r.event_time) * 1e3,
                           "from_window_end": (written - r.window_end) * 1e3},
            "stages_ms": {k: round(v, 3) for k, v in r.timings_ms.items()},
        }
        jsonl.write(json.dumps(record, allow_nan=False) + "\n")
        jsonl.flush()
        return record

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()


class ImageOutlet:
    """``stream --outlet NAME``: one LSL marker per written image, for the experiment program and LabRecorder.

    A string stream of type Markers named NAME (irregular rate, one channel); each sample is a JSON object:
    ``epoch`` (the stimulus number), ``image`` (the file name) and ``path``, ``code``, ``description``,
    ``stimulus_time``, ``window_end``, ``image_written`` (LSL clock) and ``latency_ms`` as ``epochs.jsonl``
    has them, stamped with ``image_written``: recorded beside the EEG and the stimuli, on one clock.
    """

    def __init__(self, name: str, out_dir: Path):
        from mne_lsl.lsl import StreamInfo, StreamOutlet

        info = StreamInfo(name, "Markers", 1, 0.0, "string", f"eeg2img-deploy-{name}")
        info.set_channel_names(["reconstruction"])
        self.name, self.out_dir = name, Path(out_dir).resolve()
        self.outlet = StreamOutlet(info)

    @staticmethod
    def marker(record: dict, out_dir: Path) -> dict:
        return {"epoch": record["index"], "image": record["image"], "path": str(Path(out_dir) / record["image"]),
                "code": record["code"], "description": record["description"], "stimulus_time": record["event_time"],
                "window_end": record["window_end"], "image_written": record["image_written"],
                "latency_ms": record["latency_ms"], "batch_size": record["batch_size"]}

    def push(self, record: dict) -> None:
        sample = json.dumps(self.marker(record, self.out_dir), allow_nan=False)
        self.outlet.push_sample([sample], timestamp=record["image_written"])

    def close(self) -> None:
        del self.outlet


class LiveState:
    """Counters and recent epochs, shared by the live line and the ``--view`` page (thread-safe)."""

    def __init__(self, recent: int = 24, plot_points: int = 600):
        self._lock = threading.Lock()
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.recent: deque[dict] = deque(maxlen=recent)
        self.plot: deque[tuple[int, float, float]] = deque(maxlen=plot_points)
        self.stats = StreamStats()
        self.status = "connecting"

    def add(self, record: dict, stats: StreamStats) -> None:
        with self._lock:
            lat = record["latency_ms"]
            self.latencies.append(lat["from_stimulus"])
            self.recent.appendleft({"index": record["index"], "image": record["image"],
                                    "latency_ms": round(lat["from_stimulus"], 1)})
            self.plot.append((record["index"], round(lat["from_stimulus"], 1), round(lat["from_window_end"], 1)))
            self.stats = stats
            self.status = "running"

    def percentiles(self) -> tuple[float, float]:
        with self._lock:
            if not self.latencies:
                return float("nan"), float("nan")
            p50, p99 = np.percentile(np.fromiter(self.latencies, float), [50, 99])
        return float(p50), float(p99)

    def line(self) -> str:
        p50, p99 = self.percentiles()
        lat = "-" if np.isnan(p50) else f"{p50:.0f}/{p99:.0f} ms"
        return (f"epochs {self.stats.epochs}  dropped {self.stats.n_dropped}  "
                f"stimulus-to-image p50/p99 {lat}")

    def snapshot(self) -> dict:
        p50, p99 = self.percentiles()
        with self._lock:
            return {
                "status": self.status, "epochs": self.stats.epochs, "dropped": self.stats.n_dropped,
                "p50_ms": None if np.isnan(p50) else round(p50, 1), "p99_ms": None if np.isnan(p99) else round(p99, 1),
                "recent": list(self.recent), "plot": [list(p) for p in self.plot],
            }
