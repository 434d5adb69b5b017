"""Live-input helpers (importable as ``live_support``): µV recordings, a pylsl amplifier in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

AMPLIFIER = Path(__file__).parent / "stream" / "amplifier.py"
LISTENER = Path(__file__).parent / "stream" / "listener.py"
UV_PER_UNIT_VARIANCE = 10.0  # the tiny recording's unit-variance noise, as ~10 µV of EEG
# The paper's whitening is sigma^-1/2 of the recording: for EEG in volts (~1e-5 V) its entries are ~1e5,
# so a run fed microvolts as volts reaches the encoder 1e6 times too large (and the tiny encoder's images
# change: the test shows it).
W_VOLTS = 1.0 / (UV_PER_UNIT_VARIANCE * 1e-6) * (np.eye(63) + 0.05 * np.random.default_rng(5).standard_normal((63, 63)))


def stream_name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@dataclass
class Recording:
    volts_fif: Path  # the recording in volts (stored as float64), with its stimuli as annotations
    microvolts_npz: Path  # the same samples in µV (float32), as the amplifier sends them (amplifier.py)
    n_stimuli: int


def microvolt_recording(folder: Path, *, n_stimuli: int = 3, soa_s: float = 0.3, seed: int = 1) -> Recording:
    """One recording twice: µV float32 for the amplifier, and exactly those values times 1e-6 in a FIF in volts."""
    import mne

    from eeg2img_deploy.eeg.synthetic import write_tiny_recording

    src = write_tiny_recording(folder / "src_raw.fif", n_stimuli=n_stimuli, soa_s=soa_s, seed=seed)
    raw = mne.io.read_raw_fif(src, preload=True, verbose="error")
    uv = (raw.get_data() * UV_PER_UNIT_VARIANCE).astype(np.float32)
    volts = mne.io.RawArray(uv.astype(np.float64) * 1e-6, raw.info, verbose="error")  # what `stream` computes
    volts.set_annotations(raw.annotations)
    fif = folder / "volts_raw.fif"
    volts.save(fif, fmt="double", overwrite=True, verbose="error")
    npz = folder / "microvolts.npz"
    stimuli = np.round(raw.annotations.onset * raw.info["sfreq"]).astype(np.int64)
    np.savez(npz, eeg=uv, ch_names=np.array(raw.ch_names), sfreq=raw.info["sfreq"], stimuli=stimuli)
    return Recording(fif, npz, n_stimuli)


class Amplifier:
    """``tests/stream/amplifier.py`` in a subprocess: pylsl outlets NAME (EEG) and NAME-markers."""

    def __init__(self, data: Path, name: str, *args: str):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.name = name
        self.proc = subprocess.Popen([sys.executable, str(AMPLIFIER), str(data), "--name", name, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        self.said: list[str] = []
        self.wait_for("ready", 60)

    def wait_for(self, word: str, timeout: float) -> str:
        """Block until the amplifier prints a line starting with ``word``; returns the line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().strip()
            if line:
                self.said.append(line)
            if line.startswith(word):
                return line
            if not line and self.proc.poll() is not None:
                break
        raise AssertionError(f"the amplifier did not say {word!r} (said {self.said})")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()


def xdf_recording(rec: Recording, path: Path, *, unit: str | None = "microvolts", t0: float = 1000.0) -> Path:
    """``rec``'s µV samples as LabRecorder would have recorded them: an XDF file with the EEG stream "Amp"
    (type EEG, float32, each channel's label, type and unit), its stimuli on the string stream "Stimuli"
    (type Markers), a reconstruction stream "eeg2img" (type Markers too, as `stream --outlet` writes) and an
    accelerometer "Acc" (type ACC, 50 Hz): a file where the EEG and marker streams must be chosen by name."""
    from xdf_writer import Stream, write_xdf

    z = np.load(rec.microvolts_npz)
    eeg, names, sfreq, stimuli = z["eeg"], [str(c) for c in z["ch_names"]], float(z["sfreq"]), z["stimuli"]
    stamps = t0 + np.arange(eeg.shape[1]) / sfreq
    chans = [{"label": c, "type": "EEG", **({"unit": unit} if unit else {})} for c in names]
    acc_t = t0 + np.arange(int(eeg.shape[1] / sfreq * 50)) / 50.0
    streams = [
        Stream("Amp", "EEG", "float32", sfreq, eeg.T, stamps, chans),
        Stream("Stimuli", "Markers", "string", 0.0, [["stimulus"]] * len(stimuli), stamps[stimuli]),
        Stream("eeg2img", "Markers", "string", 0.0, [[f'{{"epoch": {k}}}'] for k in range(len(stimuli))],
               stamps[stimuli] + 1.5),
        Stream("Acc", "ACC", "float32", 50.0, np.zeros((len(acc_t), 3), np.float32), acc_t,
               [{"label": a, "unit": "g"} for a in "XYZ"]),
    ]
    return write_xdf(path, streams)
