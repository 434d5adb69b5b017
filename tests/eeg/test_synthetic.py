"""init-tiny's recording: a real raw file (FIF) with 63 channels, >= 250 Hz and annotated stimuli."""

import pytest

mne = pytest.importorskip("mne")

from eeg2img_deploy.eeg.readers import load_eeg  # noqa: E402
from eeg2img_deploy.eeg.spec import CHANNELS_63  # noqa: E402
from eeg2img_deploy.tiny import RECORDING  # noqa: E402


def test_init_tiny_writes_a_raw_recording(tiny_dir):
    path = tiny_dir / "eeg" / RECORDING
    raw = mne.io.read_raw_fif(path, verbose="error")
    assert raw.ch_names == list(CHANNELS_63) and raw.info["sfreq"] >= 250
    assert len(raw.annotations) == 6 and set(raw.annotations.description) == {"stimulus"}
    assert path.stat().st_size < 2_000_000  # small
    trials = load_eeg(path)  # every stimulus gives a whole epoch, each different
    assert trials.data.shape == (6, 63, 250)
    assert abs(trials.data[0] - trials.data[1]).mean() > 0.5


def test_infer_cli_events_file_and_event_id(tiny_dir, tiny_bundle, tmp_path):
    """--events FILE for a recording without stim channel or annotations; --event-id picks among them."""
    import json

    import numpy as np
    from click.testing import CliRunner

    from eeg2img_deploy.cli import cli
    from eeg2img_deploy.errors import EEGInputError

    raw = mne.io.read_raw_fif(tiny_dir / "eeg" / RECORDING, preload=True, verbose="error")
    onsets = raw.time_as_index(raw.annotations.onset)
    raw.set_annotations(None)
    raw.save(tmp_path / "plain_raw.fif", verbose="error")
    np.save(tmp_path / "ev.npy", np.array([[s, 0, 1 + i % 2] for i, s in enumerate(onsets)]))
    args = ["infer", "--bundle", str(tiny_bundle), "--eeg", str(tmp_path / "plain_raw.fif"), "--subject", "8",
            "--prior-steps", "2"]
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a"), "--events", str(tmp_path / "ev.npy"),
                                 "--event-id", "[2]"])
    assert r.exit_code == 0, r.output
    assert len(json.loads((tmp_path / "a" / "result.json").read_text())["subject_ids"]) == 3
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "b")])
    assert isinstance(r.exception, EEGInputError) and "--events FILE" in str(r.exception)
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "c"), "--event-id", "{bad"])
    assert r.exit_code == 2 and "--event-id" in r.output
