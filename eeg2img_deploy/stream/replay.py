"""Replay a recording as a live LSL stream (mne-lsl's ``PlayerLSL``), with its annotations as markers.

An XDF recording is read into the same mne Raw ``infer`` epochs (``eeg/xdf.py``: the EEG stream in volts,
its markers as annotations) and played like any other, so a replay equals ``infer`` on the file. (pyxdf's
playback example republishes every stream as recorded, through pylsl, a second liblsl, in the file's units.)

``stream --replay FILE`` starts one in the same process; ``python -m eeg2img_deploy.stream.replay FILE``
runs one on its own (another terminal, or the tests' subprocess).

Two adjustments, both to the copy that is played, never to the file:

- ``lead_s`` seconds of flat signal go before the recording, so that a reader that connects just after
  the player starts still sees the first stimulus's window (LSL sends no history to a new inlet).
- mne-lsl 1.14's ``PlayerLSL`` stamps each annotation with the time of the sample *before* its onset
  (it counts from the previous chunk's last sample), one sample early. The played annotations are
  moved one sample later so that markers land on their samples and the live epochs equal the offline
  ones (``tests/stream/test_stream.py`` checks it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ANNOTATION_SAMPLE_SHIFT = 1  # see the module docstring


def read_recording(path: str | Path, xdf: dict | None = None):
    """A raw recording (.fif/.edf/.bdf/.vhdr) or an XDF file's EEG and markers (``xdf``: ``read_xdf``'s
    source/event_stream/stream_unit), as the mne Raw in volts that ``infer`` epochs."""
    from ..eeg.mne_preprocess import read_raw

    if str(path).lower().endswith(".xdf"):
        from ..eeg.xdf import read_xdf

        return read_xdf(path, **(xdf or {}))[0]
    return read_raw(path)


def prepare_raw(path: str | Path, *, lead_s: float = 2.0, chunk_size: int = 10, xdf: dict | None = None):
    """The recording as it will be played: lead-in prepended, annotations shifted; returns an mne Raw."""
    import mne

    raw = read_recording(path, xdf)
    sfreq = raw.info["sfreq"]
    data = raw.get_data()
    n_lead = int(round(lead_s * sfreq))
    while (n_lead + data.shape[1]) % chunk_size in (0, 1):
        n_lead += 1  # mne-lsl warns about a last chunk of 0 or 1 samples
    lead = np.repeat(data[:, :1], n_lead, axis=1)  # flat at the first sample's values: no step
    played = mne.io.RawArray(np.concatenate([lead, data], axis=1), raw.info.copy(), verbose="error")
    ann = raw.annotations
    onsets = ann.onset - raw.first_samp / sfreq + (n_lead + ANNOTATION_SAMPLE_SHIFT) / sfreq
    played.set_annotations(mne.Annotations(onsets, ann.duration, ann.description))
    return played


def start_player(path: str | Path, *, name: str = "eeg2img-replay", lead_s: float = 2.0, chunk_size: int = 10,
                 xdf: dict | None = None):
    """Start a PlayerLSL on ``path`` (played once); returns it (``.stop()`` it, or it stops at the end).

    An XDF file plays its EEG stream (in volts) and its marker stream as annotations (``xdf``: which streams,
    and the unit, as ``read_xdf`` takes them)."""
    from .lsl import import_mne_lsl

    import_mne_lsl()
    from mne_lsl.player import PlayerLSL

    raw = prepare_raw(path, lead_s=lead_s, chunk_size=chunk_size, xdf=xdf)
    player = PlayerLSL(raw, chunk_size=chunk_size, n_repeat=1, name=name, source_id=f"{name}-source",
                       annotations=len(raw.annotations) > 0)
    return player.start()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Replay a raw EEG recording as an LSL stream (with its annotations).")
    ap.add_argument("file")
    ap.add_argument("--name", default="eeg2img-replay")
    ap.add_argument("--lead", type=float, default=2.0, help="seconds of flat signal before the recording")
    args = ap.parse_args(argv)
    player = start_player(args.file, name=args.name, lead_s=args.lead)
    print(f"replaying {args.file} as LSL stream {args.name!r}", flush=True)
    while player.running:
        time.sleep(0.1)


if __name__ == "__main__":
    main()
