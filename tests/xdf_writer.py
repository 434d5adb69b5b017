"""A small XDF 1.0 writer for the tests (no LabRecorder here), written from the format specification
(sccn/xdf wiki, "Specifications"): the magic ``XDF:``, then chunks ``[NumLengthBytes][Length][Tag][Content]``
with tags 1 FileHeader, 2 StreamHeader, 3 Samples, 4 ClockOffset, 6 StreamFooter; every number little-endian.
Each sample carries its own time stamp (TimeStampBytes 8); strings are ``[NumLengthBytes][Length][bytes]``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

FORMATS = {"float32": "<f4", "double64": "<f8", "int32": "<i4", "int16": "<i2", "int8": "<i1", "int64": "<i8"}


def _varlen(n: int) -> bytes:
    if n < 256:
        return b"\x01" + struct.pack("<B", n)
    if n < 2**32:
        return b"\x04" + struct.pack("<I", n)
    return b"\x08" + struct.pack("<Q", n)


def _chunk(tag: int, content: bytes) -> bytes:
    return _varlen(len(content) + 2) + struct.pack("<H", tag) + content


@dataclass
class Stream:
    name: str
    type: str
    channel_format: str  # "float32", "double64", "int32", ..., "string"
    nominal_srate: float
    time_series: list | np.ndarray  # (samples, channels); strings: a list of lists
    time_stamps: np.ndarray
    channels: list[dict[str, str]] = field(default_factory=list)  # label/unit/type per channel, for desc

    @property
    def channel_count(self) -> int:
        return len(self.time_series[0]) if len(self.time_series) else len(self.channels)

    def header(self) -> str:
        desc = ""
        if self.channels:
            chans = "".join("<channel>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in ch.items()) + "</channel>"
                            for ch in self.channels)
            desc = f"<channels>{chans}</channels>"
        return (f'<?xml version="1.0"?><info><name>{escape(self.name)}</name><type>{escape(self.type)}</type>'
                f"<channel_count>{self.channel_count}</channel_count><nominal_srate>{self.nominal_srate:g}</nominal_srate>"
                f"<channel_format>{self.channel_format}</channel_format><source_id>{escape(self.name)}-src</source_id>"
                f"<created_at>{float(self.time_stamps[0]) if len(self.time_stamps) else 0.0}</created_at>"
                f"<desc>{desc}</desc></info>")

    def samples(self, lo: int, hi: int) -> bytes:
        out = [_varlen(hi - lo)]
        for row, t in zip(self.time_series[lo:hi], self.time_stamps[lo:hi]):
            out.append(b"\x08" + struct.pack("<d", float(t)))
            if self.channel_format == "string":
                for v in row:
                    b = str(v).encode("utf-8")
                    out.append(_varlen(len(b)) + b)
            else:
                out.append(np.asarray(row, dtype=FORMATS[self.channel_format]).tobytes())
        return b"".join(out)

    def footer(self) -> str:
        ts = self.time_stamps
        return (f'<?xml version="1.0"?><info><first_timestamp>{ts[0] if len(ts) else 0}</first_timestamp>'
                f"<last_timestamp>{ts[-1] if len(ts) else 0}</last_timestamp><sample_count>{len(ts)}</sample_count>"
                "<clock_offsets/></info>")


def write_xdf(path: Path, streams: list[Stream], chunk: int = 250) -> Path:
    """Write ``streams`` (ids 1, 2, ...) with interleaved Samples chunks and two ClockOffset chunks each."""
    parts = [b"XDF:", _chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')]
    for sid, s in enumerate(streams, 1):
        parts.append(_chunk(2, struct.pack("<I", sid) + s.header().encode("utf-8")))
    longest = max(len(s.time_stamps) for s in streams)
    span = [float(min(s.time_stamps[0] for s in streams if len(s.time_stamps))),
            float(max(s.time_stamps[-1] for s in streams if len(s.time_stamps)))]
    for lo in range(0, longest, chunk):
        for sid, s in enumerate(streams, 1):
            hi = min(lo + chunk, len(s.time_stamps))
            if lo < hi:
                parts.append(_chunk(3, struct.pack("<I", sid) + s.samples(lo, hi)))
    for sid, _ in enumerate(streams, 1):
        for t in span:  # the same clock: offset 0
            parts.append(_chunk(4, struct.pack("<I", sid) + struct.pack("<dd", t, 0.0)))
    for sid, s in enumerate(streams, 1):
        parts.append(_chunk(6, struct.pack("<I", sid) + s.footer().encode("utf-8")))
    path.write_bytes(b"".join(parts))
    return path
