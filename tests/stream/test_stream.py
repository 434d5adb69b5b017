"""`stream`: live reconstruction from LSL, tested against replays of short recordings on this machine.

Every replay is a real mne-lsl ``PlayerLSL`` (in a subprocess, or in-process for ``--replay``) on a
stream name of its own, so the tests do not see each other's streams. Recordings are a few seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("mne")
pytest.importorskip("mne_lsl")

from eeg2img_deploy.core.options import RunOptions  # noqa: E402
from eeg2img_deploy.cli import cli  # noqa: E402
from eeg2img_deploy.eeg.synthetic import write_tiny_recording  # noqa: E402
from eeg2img_deploy.stream.reconstructor import StreamReconstructor, StreamSettings  # noqa: E402

PRIOR_STEPS = "3"  # the loop, not the prior, is under test


def _name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def _images(folder: Path, pattern: str) -> dict[str, np.ndarray]:
    from PIL import Image

    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob(pattern))}


def _lines(out: Path) -> list[dict]:
    """epochs.jsonl's epoch lines (after its header line)."""
    from eeg2img_deploy.stream.output import read_epochs_jsonl

    path = out / "epochs.jsonl"
    return read_epochs_jsonl(path)[1] if path.exists() else []


def _no_partial_files(out: Path) -> None:
    assert not [p.name for p in out.glob(".*partial")], "a temporary file was left behind"


class Player:
    """`python -m eeg2img_deploy.stream.replay FILE` in a subprocess: an LSL source outside this process."""

    def __init__(self, path: Path, name: str):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.proc = subprocess.Popen([sys.executable, "-m", "eeg2img_deploy.stream.replay", str(path), "--name", name],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        line = self.proc.stdout.readline()  # printed once the outlets exist; the lead-in gives 2 s to connect
        assert line.startswith("replaying"), line

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def player_factory():
    players = []

    def start(path: Path, name: str) -> Player:
        players.append(Player(path, name))
        return players[-1]

    yield start
    for p in players:
        p.kill()


def test_replay_in_a_subprocess_gives_infers_images(tiny_bundle, tmp_path, monkeypatch, capsys, player_factory):
    """N annotated stimuli -> exactly N epochs whose images equal `infer` on the recording read offline.

    The player process then ends: to the reader, a stream gone mid-run. `stream` waits
    --reconnect-timeout, exits 2 with one line, and leaves N whole images and N whole JSON lines.
    """
    n = 5
    rec = write_tiny_recording(tmp_path / "rec_raw.fif", n_stimuli=n, soa_s=0.3, seed=1)
    name = _name()
    out = tmp_path / "stream"
    # stream looks for the player at once (its engines open meanwhile); the player process takes its time to
    # start on a loaded machine, so stream waits for it up to --connect-timeout
    args = _stream_args(tiny_bundle, out, "--source", name, "--event-stream", f"{name}-annotations", "--seed", "3",
                        "--reconnect-timeout", "1", "--connect-timeout", "90")
    started = threading.Timer(2.0, lambda: player_factory(rec, name))  # stream is loading and looking for it
    started.start()
    code, cap = _run_main(monkeypatch, capsys, args)
    started.join()
    assert code == 2, cap.err
    assert "sent nothing for" in cap.err and "did not come back within --reconnect-timeout 1 s" in cap.err
    assert "Traceback" not in cap.err and len(cap.err.strip().splitlines()[-1:]) == 1
    lines = _lines(out)
    assert [x["index"] for x in lines] == list(range(n))
    assert all(x["window_end"] - x["event_time"] == pytest.approx(1.0, abs=0.003) for x in lines)
    online = _images(out, "epoch_*.png")
    assert list(online) == [x["image"] for x in lines]
    _no_partial_files(out)

    offline_dir = tmp_path / "infer"
    res = CliRunner().invoke(cli, ["infer", "--bundle", str(tiny_bundle), "--eeg", str(rec), "--subject", "8",
                                   "--seed", "3", "--prior-steps", PRIOR_STEPS, "--out", str(offline_dir)])
    assert res.exit_code == 0, res.output
    offline = list(_images(offline_dir, "image_*.png").values())
    assert len(offline) == n
    for a, b in zip(online.values(), offline):
        np.testing.assert_array_equal(a, b)
    # The images differ from stimulus to stimulus, so the equality above is not of a constant.
    assert np.abs(offline[0].astype(int) - offline[1]).mean() > 5


def test_faster_than_real_time_batches_and_bounds_the_queue(tiny_bundle, tmp_path):
    """A stimulus every 10 ms: waiting epochs go out in batches, the queue stays bounded, drops are counted."""
    from eeg2img_deploy.runtime.pipeline import Pipeline
    from eeg2img_deploy.stream.replay import start_player

    n = 30
    rec = write_tiny_recording(tmp_path / "fast_raw.fif", n_stimuli=n, soa_s=0.01, seed=2)
    pipe = Pipeline.from_bundle(tiny_bundle)
    player = start_player(rec, name=_name(), lead_s=1.0)
    settings = StreamSettings(subject=8, queue_size=4, run=RunOptions(prior_steps=50))
    rec_ = StreamReconstructor(pipe, settings, player=player)
    results = list(rec_)
    stats = rec_.stats
    assert stats.epochs == len(results) and stats.epochs + stats.n_dropped == n, stats
    assert stats.max_queue <= 4
    assert max(stats.batches) > 1, f"no batching: {stats.batches}"
    assert stats.dropped["queue full: the oldest waiting epoch is dropped"] > 0, stats
    assert [r.index for r in results] == sorted(r.index for r in results)


def test_stim_channel_in_the_eeg_stream(tiny_bundle, tmp_path):
    """--event-channel: stimuli as codes on a stim channel of the EEG stream; --event-id picks code 2."""
    from eeg2img_deploy.eeg.readers import load_eeg
    from eeg2img_deploy.runtime.pipeline import Pipeline
    from eeg2img_deploy.stream.replay import start_player

    rec = write_tiny_recording(tmp_path / "stim_raw.fif", n_stimuli=5, soa_s=0.25, stim_channel="STI 014")
    pipe = Pipeline.from_bundle(tiny_bundle)
    player = start_player(rec, name=_name(), lead_s=1.0)
    settings = StreamSettings(subject=8, event_channel="STI 014", event_id=[2], run=RunOptions(prior_steps=2))
    results = list(StreamReconstructor(pipe, settings, player=player))
    offline = load_eeg(rec, event_id=[2])  # the stimuli with code 2: the 2nd and 4th
    assert [r.code for r in results] == [2, 2] and [r.index for r in results] == [0, 1]
    expected = pipe(offline.data, 8, 0, prior_steps=2).images
    np.testing.assert_array_equal(np.stack([r.image for r in results]), expected)


def test_queue_policy_drops_the_oldest():
    from eeg2img_deploy.stream.epocher import Epoch
    from eeg2img_deploy.stream.reconstructor import EpochQueue

    q = EpochQueue(3)
    dropped = [q.push(Epoch(i, float(i), 1, "s")) for i in range(5)]
    assert [d.index if d else None for d in dropped] == [None, None, None, 0, 1]
    assert [e.index for e in q.take(2)] == [2, 3] and len(q) == 1


def _stream_args(bundle, out, *extra):
    return ["stream", "--bundle", str(bundle), "--subject", "8", "--out", str(out), "--prior-steps", PRIOR_STEPS,
            "--reconnect-timeout", "3", *extra]


def _run_main(monkeypatch, capsys, args):
    from eeg2img_deploy.cli import main

    monkeypatch.setattr("sys.argv", ["eeg2img-deploy", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code or 0
    return code, capsys.readouterr()


def test_replay_command_writes_images_and_lines(tiny_bundle, tmp_path, monkeypatch, capsys):
    rec = write_tiny_recording(tmp_path / "rec_raw.fif", n_stimuli=4, soa_s=0.3)
    out = tmp_path / "out"
    code, cap = _run_main(monkeypatch, capsys, _stream_args(tiny_bundle, out, "--replay", rec, "--max-epochs", "3"))
    assert code == 0, cap.err
    lines = _lines(out)
    assert [x["index"] for x in lines] == [0, 1, 2]
    assert sorted(p.name for p in out.glob("epoch_*.png")) == [x["image"] for x in lines]
    first = lines[0]
    assert first["subject"] == 8 and first["seed"] == 0 and first["description"] == "stimulus"
    assert first["event_time"] < first["window_end"] < first["cut_time"] < first["image_time"] <= first["image_written"]
    assert first["latency_ms"]["from_stimulus"] > first["latency_ms"]["from_window_end"] > 0
    assert set(first["stages_ms"]) >= {"encoder", "prior", "unet", "decoder", "total"}
    assert "3 epoch(s) written" in cap.out and "p50" in cap.out
    # A second run into the same folder is refused rather than mixing runs.
    code, cap = _run_main(monkeypatch, capsys, _stream_args(tiny_bundle, out, "--replay", rec, "--max-epochs", "1"))
    assert code == 2 and "holds an earlier stream run" in cap.err and "--overwrite" in cap.err


@pytest.mark.parametrize("case, message", [
    ("channels", "lacks 1 of the 63 channels the encoder needs: missing ['Oz']. It has 63 channels"),
    ("rate", "sampled at 100 Hz, below the 250 Hz the encoder was trained on"),
])
def test_wrong_stream_gets_the_files_error_before_any_epoch(tiny_bundle, tmp_path, monkeypatch, capsys, case, message):
    import mne

    rec = write_tiny_recording(tmp_path / "rec_raw.fif", n_stimuli=2, sfreq=100.0 if case == "rate" else 500.0)
    if case == "channels":
        raw = mne.io.read_raw_fif(rec, preload=True, verbose="error")
        raw.rename_channels({"Oz": "EOG1"})
        raw.save(rec, overwrite=True, verbose="error")
    out = tmp_path / "out"
    code, cap = _run_main(monkeypatch, capsys, _stream_args(tiny_bundle, out, "--replay", rec))
    assert code == 2, cap.err
    assert message in cap.err and "Traceback" not in cap.err
    assert not out.exists()
    # ... and the same words as reading the file offline.
    code, cap = _run_main(monkeypatch, capsys, ["infer", "--bundle", tiny_bundle, "--eeg", rec, "--subject", "8",
                                                "--out", out])
    assert code == 2 and message in cap.err


def _wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _stream_subprocess(bundle, out, rec, *extra) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "eeg2img_deploy.cli", *_stream_args(bundle, out, "--replay", rec, *extra)]
    return subprocess.Popen(list(map(str, args)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)


def _chromium(url: str, profile: Path, *args: str) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           "--virtual-time-budget=3000", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout


def _epochs_shown(dom: str) -> int:
    import re

    m = re.search(r'id="epochs">(\d+)<', dom)
    assert m, f"no counter in the page: {dom[:500]!r}"
    return int(m.group(1))


def _check_view_page(url: str, out: Path, tmp_path: Path) -> None:
    """Load the live page in headless Chromium twice and take a screenshot between."""
    import re

    from PIL import Image

    dom1 = _chromium(url, tmp_path / "profile1", "--dump-dom")
    n1 = _epochs_shown(dom1)
    _wait_for(lambda: len(_lines(out)) >= n1 + 2, 60, "more epochs")
    shot = tmp_path / "view.png"
    _chromium(url, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=900,700")
    dom2 = _chromium(url, tmp_path / "profile3", "--dump-dom")
    n2 = _epochs_shown(dom2)
    assert 1 <= n1 < n2, (n1, n2)  # the counter advanced
    loaded = re.findall(r'<img class="recon"[^>]*src="/images/(epoch_\d+\.png)" data-loaded="1"', dom2)
    assert len(loaded) >= 2 and loaded == sorted(loaded, reverse=True), dom2[:3000]  # images shown, newest first
    assert re.search(r"#\d+ · [\d.]+ ms", dom2)  # each with its stimulus-to-image latency
    assert "<polyline" in dom2  # the running latency plot
    img = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert img.shape[:2] == (700, 900)
    # The reconstructions (noise images) make the lower part of the page far from the flat background.
    assert img[300:, :].std() > 20, img[300:, :].std()


def test_live_view_in_chromium_and_ctrl_c(tiny_bundle, tmp_path):
    """One `stream --replay --view` process: its page in a real headless browser, then Ctrl-C stops it cleanly."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rec = write_tiny_recording(tmp_path / "rec_raw.fif", n_stimuli=100, soa_s=0.2)
    out = tmp_path / "out"
    proc = _stream_subprocess(tiny_bundle, out, rec, "--view", "--view-port", str(port))
    try:
        _wait_for(lambda: len(_lines(out)) >= 2 or proc.poll() is not None, 120, "two epochs")
        assert proc.poll() is None, proc.communicate()[1]
        if CHROMIUM is not None:
            _check_view_page(f"http://127.0.0.1:{port}/", out, tmp_path)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "stopping after the epoch in flight" in stderr and "Traceback" not in stderr
    lines = _lines(out)
    assert 2 <= len(lines) < 100 and f"{len(lines)} epoch(s) written" in stdout
    assert sorted(p.name for p in out.glob("epoch_*.png")) == [x["image"] for x in lines]
    _no_partial_files(out)


def test_a_stream_that_goes_away_and_comes_back_resumes(tiny_bundle, tmp_path, caplog):
    """The source stops, and a new one with the same name and source id starts within --reconnect-timeout
    (an amplifier's software restarted): LSL's inlets recover, the reader says so and goes on where it was.

    Stimulus k of the run draws noise stream (seed, k) across the gap: the second recording's epochs are the
    run's 3..5, each equal to the pipeline on that recording's offline epochs with those sample indices.
    """
    from eeg2img_deploy.eeg.readers import load_eeg
    from eeg2img_deploy.runtime.pipeline import Pipeline
    from eeg2img_deploy.stream.replay import start_player

    n = 3
    recs = [write_tiny_recording(tmp_path / f"part{i}_raw.fif", n_stimuli=n, soa_s=0.3, seed=10 + i) for i in (1, 2)]
    name = _name()
    pipe = Pipeline.from_bundle(tiny_bundle)
    players = [start_player(recs[0], name=name, lead_s=1.0)]

    def restart_after_the_first_ends():
        while players[0].running:
            time.sleep(0.05)
        time.sleep(2.0)  # longer than the reader's stall_s: it notices the stream is gone
        players.append(start_player(recs[1], name=name, lead_s=5.0))  # LSL keeps no history: time to reconnect

    restarter = threading.Thread(target=restart_after_the_first_ends, daemon=True)
    restarter.start()
    settings = StreamSettings(subject=8, source=name, event_stream=f"{name}-annotations", max_epochs=2 * n,
                              reconnect_timeout=30.0, run=RunOptions(seed=3, prior_steps=2))
    try:
        with caplog.at_level("WARNING", logger="eeg2img_deploy.stream.reconstructor"):
            results = list(StreamReconstructor(pipe, settings))
    finally:
        restarter.join(timeout=30)
        for p in players:
            if p.running:
                p.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert any("sent nothing for" in m for m in messages), messages
    assert any("EEG stream is back after" in m for m in messages), messages
    assert [r.index for r in results] == list(range(2 * n))
    for part, rec in enumerate(recs):
        offline = load_eeg(rec).data
        expected = pipe(offline, 8, 3, prior_steps=2, sample_indices=np.arange(part * n, (part + 1) * n)).images
        np.testing.assert_array_equal(np.stack([r.image for r in results[part * n:(part + 1) * n]]), expected)
    assert np.abs(results[0].image.astype(int) - results[n].image).mean() > 5  # two recordings, two images
