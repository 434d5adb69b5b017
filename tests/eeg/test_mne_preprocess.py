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


def test_explicit_events_and_whitening():
    w = np.diag(np.linspace(1e5, 2e5, 63))
    events = np.array([[ONSETS[1], 0, 7]])
    trials = preprocess_raw(_make_raw(with_stim=False), events=events, whitening=w)
    plain = preprocess_raw(_make_raw(with_stim=False), events=events)
    np.testing.assert_allclose(
        trials.data, (w @ plain.data.astype(np.float64)), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(trials.condition_index, [7])


def test_missing_channel_is_named(tmp_path):
    path = tmp_path / "rec_raw.fif"
    _make_raw(drop=("Oz", "T7")).save(path, verbose="error")
    with pytest.raises(EEGInputError, match=r"missing \['T7', 'Oz'\]"):
        load_eeg(path)


def test_no_events():
    with pytest.raises(EEGInputError, match="found no stimulus events"):
        preprocess_raw(_make_raw(with_stim=False))


def test_unknown_event_code():
    with pytest.raises(EEGInputError, match=r"event codes present: \[1, 2, 3\]"):
        preprocess_raw(_make_raw(), event_id=42)


def test_events_at_edge_only():
    with pytest.raises(EEGInputError, match="no epochs remain"):
        preprocess_raw(_make_raw(with_stim=False), events=np.array([[50, 0, 1]]))


def test_bad_events_array():
    with pytest.raises(EEGInputError, match=r"expected integer \(n, 3\)"):
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
