"""`stream` against sources no one here wrote: a pylsl amplifier declaring microvolts, markers sent while the
engines open, simultaneous markers, liblsl's log (issue 19)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("mne")
pytest.importorskip("mne_lsl")

from live_support import microvolt_recording, stream_name  # noqa: E402
from support import run_main  # noqa: E402

from eeg2img_deploy.cli import cli  # noqa: E402
from eeg2img_deploy.errors import EEGInputError  # noqa: E402
from eeg2img_deploy.stream.output import read_epochs_jsonl  # noqa: E402

PRIOR_STEPS = "3"


def _images(folder, pattern):
    from PIL import Image

    return [np.asarray(Image.open(p)) for p in sorted(folder.glob(pattern))]


def _stream(bundle, out, name, *extra):
    return ["stream", "--bundle", bundle, "--subject", "8", "--out", out, "--prior-steps", PRIOR_STEPS,
            "--source", name, "--event-stream", f"{name}-markers", "--reconnect-timeout", "3", *extra]


def test_microvolt_amplifier_equals_infer_on_the_file_in_volts(volts_bundle, tmp_path, monkeypatch, capsys, amplifier):
    """Bugs 1 and 2. A pylsl amplifier sends µV and says so (desc/channels/channel/unit = "microvolts"); its
    stimuli are all sent while `stream` is still opening its engines. Every stimulus becomes an image, numbered
    from 0, equal to `infer` on the same samples in volts through a bundle whose whitening expects volts."""
    from eeg2img_deploy.cli_options import RuntimeOptions

    rec = microvolt_recording(tmp_path, n_stimuli=3)
    name = stream_name()
    amp = amplifier(rec.microvolts_npz, name, "--unit", "microvolts", "--wait", "20")
    sent = threading.Event()
    threading.Thread(target=lambda: (amp.wait_for("sent", 90), sent.set()), daemon=True).start()
    real_open = RuntimeOptions.open

    def open_after_the_stimuli(self, *a, **kw):  # engines that take longer to open than the stimuli to come
        sent.wait(90)
        return real_open(self, *a, **kw)

    monkeypatch.setattr(RuntimeOptions, "open", open_after_the_stimuli)
    out = tmp_path / "live"
    code, _, err = run_main(monkeypatch, capsys, _stream(volts_bundle, out, name, "--seed", "3", "--max-epochs", "3"))
    assert code == 0, err
    assert "consumers" in amp.said, amp.said  # the stream had connected before the stimuli began
    header, lines = read_epochs_jsonl(out / "epochs.jsonl")
    assert header["units"] == {"declared": {"microvolts": 63}, "stream_unit": None, "volts_per_unit": 1e-6}
    assert header["stream"]["name"] == name and [x["index"] for x in lines] == [0, 1, 2]

    offline = tmp_path / "infer"
    res = CliRunner().invoke(cli, ["infer", "--bundle", str(volts_bundle), "--eeg", str(rec.volts_fif), "--subject", "8",
                                   "--seed", "3", "--prior-steps", PRIOR_STEPS, "--out", str(offline)])
    assert res.exit_code == 0, res.output
    live, expected = _images(out, "epoch_*.png"), _images(offline, "image_*.png")
    assert len(live) == len(expected) == 3
    for a, b in zip(live, expected):
        np.testing.assert_array_equal(a, b)

    # Sensitivity: the same epochs read as volts (the bug: 1e6 too large) give other images through this
    # bundle, so the equality above holds only with the unit applied.
    from eeg2img_deploy.eeg.readers import load_eeg
    from eeg2img_deploy.runtime.pipeline import Pipeline

    pipe = Pipeline.from_bundle(volts_bundle)
    epochs = load_eeg(rec.volts_fif).data
    right = pipe(epochs, 8, 3, prior_steps=int(PRIOR_STEPS)).images
    wrong = pipe(epochs * 1e6, 8, 3, prior_steps=int(PRIOR_STEPS)).images
    np.testing.assert_array_equal(right, np.stack(expected))
    assert np.abs(wrong.astype(int) - right).mean() > 5


def test_a_stream_without_units_is_refused_naming_the_option(tiny_bundle, tmp_path, monkeypatch, capsys, amplifier):
    rec = microvolt_recording(tmp_path, n_stimuli=1)
    name = stream_name()
    amplifier(rec.microvolts_npz, name, "--unit", "", "--wait", "0")
    out = tmp_path / "live"
    code, _, err = run_main(monkeypatch, capsys, _stream(tiny_bundle, out, name))
    assert code == 2, err
    assert "declares no unit" in err and "--stream-unit uV|mV|V" in err and "Traceback" not in err
    assert len(err.strip().splitlines()[-1:]) == 1 and not out.exists()


def test_a_non_ascii_unit_crosses_liblsl(tmp_path, amplifier):
    """"µV" as an amplifier's app declares it (UTF-8 in the stream's XML) reaches the unit rule intact through
    liblsl and mne-lsl: connecting alone (no engines) records it, and the factor 1e-6, in epochs.jsonl's header."""
    from eeg2img_deploy.eeg.spec import DEFAULT_SPEC
    from eeg2img_deploy.stream.reconstructor import StreamReconstructor, StreamSettings

    rec = microvolt_recording(tmp_path, n_stimuli=1)
    name = stream_name()
    amplifier(rec.microvolts_npz, name, "--unit", "µV", "--wait", "0")
    live = StreamReconstructor(None, StreamSettings(subject=8, source=name, event_stream=f"{name}-markers",
                                                    connect_timeout=30), spec=DEFAULT_SPEC)
    try:
        live.connect()
        assert live.header["units"] == {"declared": {"µV": 63}, "stream_unit": None, "volts_per_unit": 1e-6}
    finally:
        live.close()


def test_iterating_after_a_connect_that_failed_half_way_connects_again(tmp_path, amplifier):
    """connect() that fails after the EEG is connected (here: a stim channel the stream lacks) leaves no epocher;
    iterating then connects again and fails the same way (it was an AttributeError on the missing epocher), and
    the first attempt's EEG connection is closed, not left running."""
    from types import SimpleNamespace

    from eeg2img_deploy.eeg.spec import DEFAULT_SPEC
    from eeg2img_deploy.stream.reconstructor import StreamReconstructor, StreamSettings

    rec = microvolt_recording(tmp_path, n_stimuli=1)
    name = stream_name()
    amplifier(rec.microvolts_npz, name, "--unit", "microvolts", "--wait", "0")
    pipeline = SimpleNamespace(eeg_spec=DEFAULT_SPEC, max_batch=1)  # never called: no epoch is cut
    live = StreamReconstructor(pipeline, StreamSettings(subject=8, source=name, event_channel="NOPE",
                                                        connect_timeout=30))
    try:
        with pytest.raises(EEGInputError, match="--event-channel 'NOPE' is not in"):
            live.connect()
        first = live.stream
        assert first.connected
        with pytest.raises(EEGInputError, match="--event-channel 'NOPE' is not in"):
            next(iter(live))
        assert not first.connected
    finally:
        live.close()


@pytest.mark.parametrize("unit, volts", [("microvolts", 1e-6), ("µV", 1e-6), ("μV", 1e-6), ("uV", 1e-6),
                                         ("millivolts", 1e-3), ("mV", 1e-3), ("V", 1.0), ("volts", 1.0),
                                         ("-6", 1e-6), ("0", 1.0), ("counts", None), ("MV", None), ("", None)])
def test_declared_units(unit, volts):
    from eeg2img_deploy.eeg.units import volts_per_unit

    assert volts_per_unit(unit) == volts


def test_channel_scales_override_and_errors():
    from eeg2img_deploy.eeg.units import channel_scales
    from eeg2img_deploy.errors import EEGInputError

    names, needed = ["Fz", "Cz", "STI"], ["Fz", "Cz"]
    scales, rec = channel_scales(names, ["µV", "mV", None], needed)
    assert scales.tolist() == [1e-6, 1e-3, 1.0] and rec["volts_per_unit"] == {"Fz": 1e-6, "Cz": 1e-3}
    scales, rec = channel_scales(names, ["volts", "volts", None], needed, override="uV")  # a wrong declaration
    assert scales.tolist() == [1e-6, 1e-6, 1.0] and rec == {"declared": {"volts": 2}, "stream_unit": "uV",
                                                             "volts_per_unit": 1e-6}
    with pytest.raises(EEGInputError, match=r"no unit for 1 EEG channel\(s\) \['Cz'\].*--stream-unit"):
        channel_scales(names, ["uV", "", "none"], needed)
    with pytest.raises(EEGInputError, match=r"unit\(s\) \['counts'\].*--stream-unit"):
        channel_scales(names, ["uV", "counts", None], needed)


def _concatenated_recording(path):
    """Two recordings joined by mne (BAD boundary + EDGE boundary at the join, one sample), each stimulus
    also marked "trial" at its own sample: an amplifier that sends a stimulus and a trial marker together."""
    import mne

    from eeg2img_deploy.eeg.synthetic import write_tiny_recording

    parts = []
    for seed in (1, 2):
        raw = mne.io.read_raw_fif(write_tiny_recording(path.parent / f"part{seed}_raw.fif", n_stimuli=2, soa_s=0.3,
                                                       seed=seed), preload=True, verbose="error")
        ann = raw.annotations
        raw.set_annotations(ann + mne.Annotations(ann.onset, ann.duration, ["trial"] * len(ann)))
        parts.append(raw)
    joined = mne.concatenate_raws(parts, verbose="error")
    assert {"BAD boundary", "EDGE boundary"} <= set(joined.annotations.description)
    joined.save(path, overwrite=True, verbose="error")
    return path


def test_simultaneous_markers_and_boundaries_replay_equals_infer(tiny_bundle, tmp_path, monkeypatch, capsys):
    """Bug 5: `stream --replay` of a concatenated recording (BAD/EDGE boundaries at one sample, a stimulus and a
    trial marker at each stimulus' sample) gives one image per stimulus, equal to `infer`'s; before, mne's
    "Event time samples were not unique" ended both commands. --event-id picks "stimulus" explicitly too."""
    rec = _concatenated_recording(tmp_path / "joined_raw.fif")
    out, offline = tmp_path / "live", tmp_path / "infer"
    code, stdout, err = run_main(monkeypatch, capsys, ["stream", "--bundle", tiny_bundle, "--subject", "8", "--out", out,
                                                       "--prior-steps", PRIOR_STEPS, "--replay", rec])
    assert code == 0, err
    assert "4 epoch(s) written" in stdout and "4 marker(s) ignored" in stdout and "at the same sample" in stdout
    code, stdout, err = run_main(monkeypatch, capsys, ["infer", "--bundle", tiny_bundle, "--eeg", rec, "--subject", "8",
                                                       "--prior-steps", PRIOR_STEPS, "--out", offline])
    assert code == 0, err
    assert "4 event(s) at the same sample as an earlier one ignored" in " ".join(err.split())  # rich wraps
    live, expected = _images(out, "epoch_*.png"), _images(offline, "image_*.png")
    assert len(live) == len(expected) == 4
    for a, b in zip(live, expected):
        np.testing.assert_array_equal(a, b)
    assert np.abs(expected[0].astype(int) - expected[2]).mean() > 5  # two recordings, two images
    # --event-id chooses among simultaneous markers: "trial" alone gives the same four stimuli.
    code, stdout, err = run_main(monkeypatch, capsys, ["infer", "--bundle", tiny_bundle, "--eeg", rec, "--subject", "8",
                                                       "--prior-steps", PRIOR_STEPS, "--out", tmp_path / "trial",
                                                       "--event-id", '{"trial": 7}'])
    assert code == 0 and "same sample" not in err, err
    for a, b in zip(_images(tmp_path / "trial", "image_*.png"), expected):
        np.testing.assert_array_equal(a, b)


class _Buffer:
    """What Epocher reads of mne-lsl's StreamLSL: a buffer whose first sample is at t=100 s, 500 Hz."""

    info = {"sfreq": 500.0}
    ch_names = ["Cz"]
    n_buffer = 5000

    def get_data(self, winsize=None, picks=None, exclude=()):
        ts = 100.0 + np.arange(1000) / 500.0
        return np.zeros((1, len(ts))), ts


@pytest.mark.parametrize("codes, kept", [(None, ["stimulus", "late"]), ({2}, ["trial"])])
def test_epocher_numbers_from_the_buffer_and_resolves_simultaneous_markers(codes, kept):
    from eeg2img_deploy.eeg.spec import DEFAULT_SPEC
    from eeg2img_deploy.stream.epocher import Epocher
    from eeg2img_deploy.stream.lsl import Marker

    ep = Epocher(_Buffer(), spec=DEFAULT_SPEC, ch_names=["Cz"], event_codes=codes)
    ep.add_markers([Marker(99.0, "before", 1), Marker(100.5, "stimulus", 1), Marker(100.5004, "trial", 2)])
    ep.add_markers([Marker(101.0, "late", 1)])
    assert [e.description for e in ep.pending] == kept
    assert [e.index for e in ep.pending] == list(range(len(kept)))  # stimulus 0: the first the buffer holds
    assert sum(ep.ignored.values()) == (2 if codes is None else 0)


def test_liblsl_log_records_and_levels():
    import logging

    from eeg2img_deploy.stream.lsl import LiblslLog

    text = ("date       time         ( uptime  ) [ thread name/id ]   file:line     v| \n"
            "2026-12-06 07:01:24.588 (  14.077s) [R_eeg2img-repl  ]      data_receiver.cpp:344    ERR| Stream "
            "transmission broke off (Input stream error.); re-connecting...\n"
            "2026-12-06 07:01:24.600 (   3.293s) [        CB22CB80]         api_config.cpp:126   INFO| Loaded default "
            "config2026-12-06 07:01:24.700 (   3.300s) [        CB22CB80]     udp_server.cpp:10    ERR| Could not bind\n")
    got = list(LiblslLog.records(text))
    assert got == [(logging.INFO, "data_receiver.cpp:344",
                    "Stream transmission broke off (Input stream error.); re-connecting..."),
                   (logging.DEBUG, "api_config.cpp:126", "Loaded default config"),
                   (logging.WARNING, "udp_server.cpp:10", "Could not bind")]


def test_liblsl_says_nothing_on_the_terminal(tiny_bundle, tmp_path):
    """Bug 6: a whole `stream --replay` run in its own process: no liblsl line on stderr (its log goes through
    ours), and the run's summary is there."""
    import os
    import re
    import subprocess
    import sys

    from eeg2img_deploy.eeg.synthetic import write_tiny_recording

    rec = write_tiny_recording(tmp_path / "rec_raw.fif", n_stimuli=2, soa_s=0.3)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("LSLAPICFG", None)
    proc = subprocess.run([sys.executable, "-m", "eeg2img_deploy.cli", "stream", "--bundle", str(tiny_bundle),
                           "--subject", "8", "--out", str(tmp_path / "out"), "--prior-steps", PRIOR_STEPS,
                           "--replay", str(rec)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "2 epoch(s) written" in proc.stdout
    assert not re.search(r"\d\d:\d\d:\d\d\.\d+ \(\s*[\d.]+s\) \[", proc.stderr), proc.stderr  # loguru's lines
    assert "ERR|" not in proc.stderr and "INFO|" not in proc.stderr, proc.stderr


def test_outlet_publishes_one_marker_per_image(tiny_bundle, tmp_path, monkeypatch, capsys):
    """`stream --outlet NAME`: an experiment program's pylsl inlet (another process) gets one Markers sample per
    image, a JSON object matching epochs.jsonl's line, stamped on the LSL clock when the image was written."""
    import json
    import os
    import subprocess
    import sys

    from live_support import LISTENER

    from eeg2img_deploy.eeg.synthetic import write_tiny_recording

    pytest.importorskip("pylsl")
    n = 4
    rec = write_tiny_recording(tmp_path / "rec_raw.fif", n_stimuli=n, soa_s=0.3)
    name = stream_name()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    listener = subprocess.Popen([sys.executable, str(LISTENER), name, str(n)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=env)
    said: list[str] = []
    subscribed = threading.Event()

    def read():
        for line in listener.stdout:
            said.append(line.strip())
            if line.strip() == "connected":
                subscribed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    from eeg2img_deploy.stream.output import ImageOutlet

    push = ImageOutlet.push

    def push_once_subscribed(self, record):  # the experiment program subscribes before the first image
        subscribed.wait(90)
        push(self, record)

    monkeypatch.setattr(ImageOutlet, "push", push_once_subscribed)
    try:
        out = tmp_path / "live"
        code, stdout, err = run_main(monkeypatch, capsys, ["stream", "--bundle", tiny_bundle, "--subject", "8",
                                                           "--out", out, "--prior-steps", PRIOR_STEPS, "--replay", rec,
                                                           "--outlet", name])
        listener.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        listener.kill()
    assert code == 0, err
    assert f"publishing a marker per image on LSL stream {name!r}" in err
    assert json.loads(said[0]) == {"type": "Markers", "format": 3, "channels": 1} and said[1] == "connected", said
    _, lines = read_epochs_jsonl(out / "epochs.jsonl")
    got = [json.loads(x) for x in said[2:]]
    assert [json.loads(g["sample"])["epoch"] for g in got] == [x["index"] for x in lines] == list(range(n))
    for g, line in zip(got, lines):
        marker = json.loads(g["sample"])
        assert marker["image"] == line["image"] and (out / marker["image"]).is_file()
        assert marker["stimulus_time"] == line["event_time"] and marker["latency_ms"] == line["latency_ms"]
        assert marker["image_written"] == line["image_written"]
        assert g["timestamp"] == pytest.approx(line["image_written"], abs=2e-3)  # one clock, this machine


def test_xdf_infer_and_replay_equal_the_file_in_volts(volts_bundle, tmp_path, monkeypatch, capsys):
    """An XDF file as LabRecorder writes it (tests/xdf_writer.py, from the XDF specification): the EEG stream in
    µV (declared), its stimuli, a reconstruction marker stream and an accelerometer. `infer --eeg rec.xdf` and
    `stream --replay rec.xdf` give `infer`'s images on the same samples in volts; the marker stream is chosen by
    name; a file without units is refused naming --stream-unit, and --stream-unit uV reads it. The counterfactual:
    a file that declares volts for its µV (the bug's reading, 1e6 too large) gives other images, and --stream-unit
    uV, overriding the wrong declaration, gives the right ones back."""
    from live_support import xdf_recording

    rec = microvolt_recording(tmp_path, n_stimuli=3)
    xdf = xdf_recording(rec, tmp_path / "rec.xdf")
    common = ["--bundle", volts_bundle, "--subject", "8", "--seed", "3", "--prior-steps", PRIOR_STEPS]
    code, _, err = run_main(monkeypatch, capsys, ["infer", *common, "--eeg", rec.volts_fif, "--out", tmp_path / "fif"])
    assert code == 0, err
    expected = _images(tmp_path / "fif", "image_*.png")
    assert len(expected) == 3

    code, _, err = run_main(monkeypatch, capsys, ["infer", *common, "--eeg", xdf, "--out", tmp_path / "no"])
    assert code == 2 and "2 streams of the XDF file could be the marker stream" in err and "--event-stream NAME" in err, err
    assert "Traceback" not in err and not (tmp_path / "no").exists()
    code, _, err = run_main(monkeypatch, capsys, ["infer", *common, "--eeg", xdf, "--event-stream", "Stimuli",
                                                  "--source", "EEG", "--out", tmp_path / "xdf"])
    assert code == 0, err
    for a, b in zip(_images(tmp_path / "xdf", "image_*.png"), expected, strict=True):
        np.testing.assert_array_equal(a, b)

    code, stdout, err = run_main(monkeypatch, capsys, ["stream", *common, "--replay", xdf, "--event-stream", "Stimuli",
                                                       "--out", tmp_path / "live"])
    assert code == 0, err
    assert "3 epoch(s) written" in stdout
    for a, b in zip(_images(tmp_path / "live", "epoch_*.png"), expected, strict=True):
        np.testing.assert_array_equal(a, b)

    bare = xdf_recording(rec, tmp_path / "bare.xdf", unit=None)
    code, _, err = run_main(monkeypatch, capsys, ["infer", *common, "--eeg", bare, "--event-stream", "Stimuli",
                                                  "--out", tmp_path / "bare"])
    assert code == 2 and "declares no unit" in err and "--stream-unit uV|mV|V" in err, err
    code, _, err = run_main(monkeypatch, capsys, ["infer", *common, "--eeg", bare, "--event-stream", "Stimuli",
                                                  "--stream-unit", "uV", "--out", tmp_path / "bare"])
    assert code == 0, err
    for a, b in zip(_images(tmp_path / "bare", "image_*.png"), expected, strict=True):
        np.testing.assert_array_equal(a, b)

    wrong = xdf_recording(rec, tmp_path / "wrong.xdf", unit="volts")
    code, _, err = run_main(monkeypatch, capsys, ["infer", *common, "--eeg", wrong, "--event-stream", "Stimuli",
                                                  "--out", tmp_path / "as_volts"])
    assert code == 0, err
    for a, b in zip(_images(tmp_path / "as_volts", "image_*.png"), expected, strict=True):
        assert np.abs(a.astype(int) - b).mean() > 5  # the unit moves every image far more than a rounding step
    code, _, err = run_main(monkeypatch, capsys, ["infer", *common, "--eeg", wrong, "--event-stream", "Stimuli",
                                                  "--stream-unit", "uV", "--out", tmp_path / "overridden"])
    assert code == 0, err
    for a, b in zip(_images(tmp_path / "overridden", "image_*.png"), expected, strict=True):
        np.testing.assert_array_equal(a, b)
