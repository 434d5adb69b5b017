import sys

import numpy as np
import pytest

mne = pytest.importorskip("mne")

from eeg2img_deploy.eeg import mne_preprocess
from eeg2img_deploy.eeg.mne_preprocess import preprocess_raw, read_raw
from eeg2img_deploy.eeg.readers import load_eeg
from eeg2img_deploy.eeg.spec import CHANNELS_63
from eeg2img_deploy.errors import EEGInputError

SFREQ = 1000.0
ONSETS = (1000, 3000, 5000)  # samples
CODES = (1, 2, 3)
AMP = 10e-6  # volts
FREQ = 5.0  # Hz


def _make_raw(with_stim=True, drop=(), sfreq=SFREQ):
    """63 EEG channels with a per-channel DC offset and a smooth 1 s bump train after each onset."""
    n = int(7 * sfreq)
    t = np.arange(n) / sfreq
    onsets = [int(o * sfreq / SFREQ) for o in ONSETS]
    offsets = np.linspace(-50e-6, 50e-6, 63)[:, None]
    signal = np.zeros(n)
    for onset in onsets:
        # sin^2 starts and ends (at 1.0 s) with zero value and slope, so FFT resampling does not ring.
        seg = slice(onset, onset + int(sfreq))
        signal[seg] = AMP * np.sin(2 * np.pi * FREQ * (t[seg] - t[onset])) ** 2
    data = offsets + signal[None] * np.linspace(1, 2, 63)[:, None]
    names = list(CHANNELS_63)
    types = ["eeg"] * 63
    if with_stim:
        stim = np.zeros((1, n))
        stim[0, onsets] = CODES
        data = np.vstack([data, stim])
        names.append("STI 014")
        types.append("stim")
    keep = [i for i, c in enumerate(names) if c not in drop]
    info = mne.create_info([names[i] for i in keep], sfreq, [types[i] for i in keep])
    return mne.io.RawArray(data[keep], info, verbose="error")


def _expected():
    """What the paper's pipeline should give: the sine at 0..996 ms, offsets removed."""
    t = np.arange(250) / 250.0
    return (
        AMP * (np.sin(2 * np.pi * FREQ * t) ** 2)[None, None] * np.linspace(1, 2, 63)[None, :, None]
    )


def test_fif_round_trip_through_load_eeg(tmp_path):
    path = tmp_path / "rec_raw.fif"
    _make_raw().save(path, verbose="error")
    trials = load_eeg(path)
    assert trials.data.shape == (3, 63, 250) and trials.data.dtype == np.float32
    assert trials.channel_names == CHANNELS_63 and trials.sfreq == 250.0
    np.testing.assert_array_equal(trials.condition_index, CODES)
    # Baseline-corrected (offsets up to 50 uV are gone). The paper's FFT resampling maps 1201 samples
    # to 300, stretching time by 1201/1200 (up to 1 ms late at the end): hence 8 % of AMP here; a
    # one-sample (4 ms) misalignment would be off by up to ~25 % of AMP.
    np.testing.assert_allclose(
        trials.data, np.broadcast_to(_expected(), (3, 63, 250)), atol=0.08 * AMP
    )
    assert "rec_raw.fif" in trials.source


def test_channel_order_follows_spec_not_recording():
    raw = _make_raw()
    raw.reorder_channels(list(reversed(raw.ch_names)))
    trials = preprocess_raw(raw)
    np.testing.assert_allclose(trials.data[0], _expected()[0], atol=0.08 * AMP)


def test_250hz_recording_is_cut_exactly_at_onset():
    # No resampling at 250 Hz: the 301-sample epoch minus its 50 pre-onset samples is exact.
    trials = preprocess_raw(_make_raw(sfreq=250.0))
    assert trials.data.shape == (3, 63, 250)
    np.testing.assert_allclose(
        trials.data, np.broadcast_to(_expected(), (3, 63, 250)), atol=1e-4 * AMP
    )


def test_event_id_selects_trials():
    trials = preprocess_raw(_make_raw(), event_id=[1, 3])
    np.testing.assert_array_equal(trials.condition_index, [1, 3])


def test_annotations_instead_of_stim_channel():
    raw = _make_raw(with_stim=False)
    raw.set_annotations(mne.Annotations([o / SFREQ for o in ONSETS], [0.0] * 3, ["stim"] * 3))
    trials = preprocess_raw(raw)
    assert trials.data.shape == (3, 63, 250)
    np.testing.assert_allclose(trials.data[1], _expected()[0], atol=0.08 * AMP)


def test_explicit_events():
    events = np.array([[ONSETS[1], 0, 7]])
    trials = preprocess_raw(_make_raw(with_stim=False), events=events)
    np.testing.assert_allclose(trials.data[0], _expected()[0], atol=0.08 * AMP)
    np.testing.assert_array_equal(trials.condition_index, [7])


def test_missing_channel_is_named_and_the_files_channels_listed(tmp_path):
    path = tmp_path / "rec_raw.fif"
    _make_raw(drop=("Oz", "T7")).save(path, verbose="error")
    with pytest.raises(EEGInputError, match=r"missing \['T7', 'Oz'\]") as e:
        load_eeg(path)
    msg = str(e.value)
    assert "It has 62 channels: ['Fp1', 'Fp2'," in msg and "'STI 014'" in msg
    assert "--rename-channels FILE.json" in msg and "rename_channels" not in msg.replace("--rename-channels", "")


def test_no_events():
    with pytest.raises(EEGInputError, match="found no stimulus events.*--events FILE"):
        preprocess_raw(_make_raw(with_stim=False))


def test_unknown_event_code():
    with pytest.raises(EEGInputError, match=r"event codes present: \[1, 2, 3\]"):
        preprocess_raw(_make_raw(), event_id=42)


def test_events_at_edge_only():
    with pytest.raises(EEGInputError, match="no epochs remain"):
        preprocess_raw(_make_raw(with_stim=False), events=np.array([[50, 0, 1]]))


def test_bad_events_array():
    with pytest.raises(EEGInputError, match=r"expected integer \(n, 3\) rows .*--events FILE"):
        preprocess_raw(_make_raw(), events=np.array([1000, 3000]))


def test_read_raw_unknown_suffix(tmp_path):
    with pytest.raises(EEGInputError, match="not a raw recording"):
        read_raw(tmp_path / "x.set")


def test_read_raw_corrupt_file(tmp_path):
    (tmp_path / "bad_raw.fif").write_bytes(b"not a fif file at all")
    with pytest.raises(EEGInputError, match="mne could not read bad_raw.fif"):
        read_raw(tmp_path / "bad_raw.fif")


def test_missing_mne_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mne", None)  # makes `import mne` raise ImportError
    with pytest.raises(EEGInputError, match=r"pip install 'eeg2img-deploy\[eeg\]'"):
        mne_preprocess._import_mne()


# --- bug 9: rates below 250 Hz -----------------------------------------------------------------


def test_low_rate_refused_without_allow_resample(tmp_path, caplog):
    # Bug 9: a 100 Hz recording was upsampled with only a warning; the README promised an error.
    path = tmp_path / "slow_raw.fif"
    _make_raw(sfreq=100.0).save(path, verbose="error")
    with pytest.raises(EEGInputError, match=r"sampled at 100 Hz, below the 250 Hz.*--allow-resample"):
        load_eeg(path)
    trials = load_eeg(path, allow_resample=True)
    assert trials.data.shape == (3, 63, 250)
    assert "upsampling (--allow-resample)" in caplog.text


def test_higher_rate_is_downsampled_without_asking():
    assert preprocess_raw(_make_raw(sfreq=500.0)).data.shape == (3, 63, 250)


# --- --events FILE and --rename-channels FILE.json ----------------------------------------------


@pytest.mark.parametrize("fmt", ["npy", "eve"])
def test_events_file(tmp_path, fmt):
    path = tmp_path / "rec_raw.fif"
    _make_raw(with_stim=False).save(path, verbose="error")
    events = np.array([[ONSETS[0], 0, 5], [ONSETS[2], 0, 6]])
    if fmt == "npy":
        np.save(tmp_path / "ev.npy", events)
        ev_path = tmp_path / "ev.npy"
    else:
        ev_path = tmp_path / "rec-eve.txt"
        mne.write_events(ev_path, events, verbose="error")
    trials = load_eeg(path, events=ev_path)
    np.testing.assert_array_equal(trials.condition_index, [5, 6])
    np.testing.assert_allclose(trials.data[1], _expected()[0], atol=0.08 * AMP)


def test_events_file_errors(tmp_path):
    path = tmp_path / "rec_raw.fif"
    _make_raw(with_stim=False).save(path, verbose="error")
    with pytest.raises(EEGInputError, match="check --events"):
        load_eeg(path, events=tmp_path / "none.npy")
    np.save(tmp_path / "ev.npy", np.array([1.0, 2.0]))
    with pytest.raises(EEGInputError, match=r"events file ev.npy has shape \(2,\)"):
        load_eeg(path, events=tmp_path / "ev.npy")


def test_rename_channels_file(tmp_path):
    raw = _make_raw()
    raw.rename_channels({"Fp1": "EEG001", "Oz": "oz"})
    path = tmp_path / "rec_raw.fif"
    raw.save(path, verbose="error")
    with pytest.raises(EEGInputError, match=r'differ only in case.*--rename-channels FILE.json, e.g. \{"oz": "Oz"\}'):
        load_eeg(path)
    (tmp_path / "names.json").write_text('{"EEG001": "Fp1", "oz": "Oz"}')
    trials = load_eeg(path, rename_channels=tmp_path / "names.json")
    np.testing.assert_allclose(trials.data[0], _expected()[0], atol=0.08 * AMP)
    (tmp_path / "bad.json").write_text('{"nope": "Fp1"}')
    with pytest.raises(EEGInputError, match=r"--rename-channels names \['nope'\], which the recording does not have"):
        load_eeg(path, rename_channels=tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(EEGInputError, match="must hold one JSON object"):
        load_eeg(path, rename_channels=tmp_path / "list.json")
