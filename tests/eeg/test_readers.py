import numpy as np
import pytest

from eeg2img_deploy.eeg.readers import load_eeg, save_eeg_npz
from eeg2img_deploy.eeg.trials import EEGTrials
from eeg2img_deploy.eeg.whitening import apply_whitening, load_whitening
from eeg2img_deploy.eeg.spec import CHANNELS_63
from eeg2img_deploy.errors import EEGInputError

RNG = np.random.default_rng(0)


def _things_dict(n_cond=3, n_rep=4, n_times=300, n_time_values=300, ch_names=CHANNELS_63):
    data = RNG.standard_normal((n_cond, n_rep, 63, n_times)).astype(np.float32)
    times = np.round(-0.2 + np.arange(n_time_values) / 250.0, 3)  # -0.2 .. 0.996 s
    return {"preprocessed_eeg_data": data, "ch_names": list(ch_names), "times": times}


def _save_things(tmp_path, d, name="preprocessed_eeg_test.npy"):
    path = tmp_path / name
    np.save(path, d)  # a dict becomes a pickled 0-d object array, as in THINGS-EEG2
    return path


# --- plain .npy ---------------------------------------------------------------------------------


def test_npy_batch_round_trip(tmp_path):
    x = RNG.standard_normal((5, 63, 250)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    trials = load_eeg(tmp_path / "x.npy")
    assert isinstance(trials, EEGTrials) and len(trials) == 5
    np.testing.assert_array_equal(trials.data, x)
    assert trials.channel_names == CHANNELS_63 and trials.sfreq == 250.0
    assert trials.condition_index is None and "x.npy" in trials.source


def test_npy_single_trial_float64(tmp_path):
    x = RNG.standard_normal((63, 250))
    np.save(tmp_path / "one.npy", x)
    trials = load_eeg(tmp_path / "one.npy")
    assert trials.data.shape == (1, 63, 250) and trials.data.dtype == np.float32
    np.testing.assert_allclose(trials.data[0], x, rtol=1e-6, atol=1e-6)


def test_npy_bad_shape_names_the_fix(tmp_path):
    np.save(tmp_path / "long.npy", np.zeros((2, 63, 300), dtype=np.float32))
    with pytest.raises(EEGInputError, match="drops the first 50 samples"):
        load_eeg(tmp_path / "long.npy")


# --- THINGS-EEG2 preprocessed dict --------------------------------------------------------------


def test_things_pickle_refused_without_flag(tmp_path):
    path = _save_things(tmp_path, _things_dict())
    with pytest.raises(EEGInputError, match="is a pickle.*Pass --trusted-pickle"):
        load_eeg(path)


def test_things_average_and_crop(tmp_path):
    d = _things_dict()
    path = _save_things(tmp_path, d)
    trials = load_eeg(path, trusted_pickle=True)
    expected = d["preprocessed_eeg_data"].astype(np.float64).mean(axis=1)[..., 50:]
    assert trials.data.shape == (3, 63, 250) and trials.data.dtype == np.float32
    np.testing.assert_allclose(trials.data, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(trials.condition_index, [0, 1, 2])
    assert "3 conditions, 4 repetitions averaged" in trials.source


def test_things_released_layout_250_samples_300_times(tmp_path):
    d = _things_dict(n_times=250)
    trials = load_eeg(_save_things(tmp_path, d), trusted_pickle=True)
    np.testing.assert_allclose(
        trials.data,
        d["preprocessed_eeg_data"].astype(np.float64).mean(axis=1),
        rtol=1e-6,
        atol=1e-6,
    )


def test_things_keep_repetitions(tmp_path):
    d = _things_dict()
    trials = load_eeg(_save_things(tmp_path, d), trusted_pickle=True, average_repetitions=False)
    assert trials.data.shape == (12, 63, 250)
    np.testing.assert_array_equal(trials.data[5], d["preprocessed_eeg_data"][1, 1, :, 50:])
    np.testing.assert_array_equal(trials.condition_index, np.repeat([0, 1, 2], 4))


def test_things_channel_order_checked(tmp_path):
    names = list(CHANNELS_63)
    names[0], names[1] = names[1], names[0]
    path = _save_things(tmp_path, _things_dict(ch_names=names))
    with pytest.raises(EEGInputError, match="order differs.*index 0"):
        load_eeg(path, trusted_pickle=True)


def test_things_wrong_sampling_rate(tmp_path):
    d = _things_dict()
    d["times"] = -0.2 + np.arange(300) / 100.0
    with pytest.raises(EEGInputError, match="is 100 Hz; expected 250 Hz"):
        load_eeg(_save_things(tmp_path, d), trusted_pickle=True)


def test_things_times_mismatch(tmp_path):
    d = _things_dict(n_times=280, n_time_values=300)
    with pytest.raises(EEGInputError, match="data has 280 time samples but 'times' has 300"):
        load_eeg(_save_things(tmp_path, d), trusted_pickle=True)


def test_things_window_not_at_onset(tmp_path):
    d = _things_dict(n_times=250, n_time_values=250)
    d["times"] = -0.2 + np.arange(250) / 250.0
    with pytest.raises(EEGInputError, match="first sample is at -0.2000 s; expected 0 s"):
        load_eeg(_save_things(tmp_path, d), trusted_pickle=True)


def test_pickle_without_things_keys(tmp_path):
    path = _save_things(tmp_path, {"data": np.zeros(3)}, name="other.npy")
    with pytest.raises(EEGInputError, match="not a THINGS-EEG2 dict"):
        load_eeg(path, trusted_pickle=True)


# --- .npz ---------------------------------------------------------------------------------------


def test_npz_round_trip(tmp_path):
    x = RNG.standard_normal((4, 63, 250)).astype(np.float32)
    path = save_eeg_npz(tmp_path / "trials.npz", x, condition_index=np.array([7, 8, 9, 10]))
    trials = load_eeg(path)
    np.testing.assert_array_equal(trials.data, x)
    np.testing.assert_array_equal(trials.condition_index, [7, 8, 9, 10])
    assert "channels and sfreq checked" in trials.source


def test_npz_eeg_only(tmp_path):
    x = RNG.standard_normal((2, 63, 250)).astype(np.float32)
    np.savez(tmp_path / "bare.npz", eeg=x)
    np.testing.assert_array_equal(load_eeg(tmp_path / "bare.npz").data, x)


def test_npz_missing_eeg_key(tmp_path):
    np.savez(tmp_path / "wrong.npz", data=np.zeros((2, 63, 250)))
    with pytest.raises(EEGInputError, match=r"no 'eeg' array; found keys \['data'\]"):
        load_eeg(tmp_path / "wrong.npz")


def test_npz_wrong_sfreq(tmp_path):
    path = save_eeg_npz(tmp_path / "t.npz", np.zeros((2, 63, 250)), sfreq=1000.0)
    with pytest.raises(EEGInputError, match="Resample to 250 Hz"):
        load_eeg(path)


def test_npz_missing_channel(tmp_path):
    names = [c for c in CHANNELS_63 if c != "Oz"] + ["Cz2"]
    path = save_eeg_npz(tmp_path / "t.npz", np.zeros((2, 63, 250)), channel_names=names)
    with pytest.raises(EEGInputError, match=r"missing \['Oz'\], extra \['Cz2'\]"):
        load_eeg(path)


def test_npz_object_array_refused(tmp_path):
    np.savez(
        tmp_path / "obj.npz",
        eeg=np.zeros((1, 63, 250)),
        ch_names=np.array(list(CHANNELS_63), dtype=object),
    )
    with pytest.raises(EEGInputError, match="stores Python objects"):
        load_eeg(tmp_path / "obj.npz")


def test_npz_bad_condition_index(tmp_path):
    np.savez(tmp_path / "c.npz", eeg=np.zeros((2, 63, 250)), condition_index=np.array([1.5, 2.5]))
    with pytest.raises(EEGInputError, match="condition_index has dtype float64"):
        load_eeg(tmp_path / "c.npz")


# --- dispatch and whitening ---------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(EEGInputError, match="does not exist"):
        load_eeg(tmp_path / "nope.npy")


def test_unknown_suffix(tmp_path):
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(EEGInputError, match="unknown suffix"):
        load_eeg(tmp_path / "x.csv")


def test_not_an_npy_file(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"hello world, not numpy")
    with pytest.raises(EEGInputError, match="not a numpy .npy file"):
        load_eeg(tmp_path / "x.npy")


def test_events_refused_for_epoched_files(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 63, 250), dtype=np.float32))
    with pytest.raises(EEGInputError, match="--events, --event-id, --rename-channels and --allow-resample only apply"):
        load_eeg(tmp_path / "x.npy", event_id=1)


def test_whitening_applied_per_trial(tmp_path):
    x = RNG.standard_normal((3, 63, 250)).astype(np.float32)
    w = RNG.standard_normal((63, 63))
    np.save(tmp_path / "w.npy", w)
    np.testing.assert_array_equal(load_whitening(tmp_path / "w.npy"), w)
    expected = np.stack([w @ xi.astype(np.float64) for xi in x])
    np.testing.assert_allclose(apply_whitening(x, w), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(apply_whitening(x, tmp_path / "w.npy"), expected, rtol=1e-5, atol=1e-5)


def test_readers_never_whiten():
    # Bug 11: whitening in the reader and again in the pipeline. The readers have no such argument now.
    with pytest.raises(TypeError):
        load_eeg("x.npy", whitening=np.eye(63))


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint16])
def test_integer_npy_refused(tmp_path, dtype):
    # Bug 10: integer EEG (ADC counts) was cast silently; its scale is unknown, so it is refused.
    np.save(tmp_path / "x.npy", np.ones((2, 63, 250), dtype=dtype))
    with pytest.raises(EEGInputError, match=rf"holds integers \({np.dtype(dtype).name}\).*float32"):
        load_eeg(tmp_path / "x.npy")


def test_integer_npz_refused(tmp_path):
    np.savez(tmp_path / "x.npz", eeg=np.ones((2, 63, 250), dtype=np.int16))
    with pytest.raises(EEGInputError, match="holds integers"):
        load_eeg(tmp_path / "x.npz")


@pytest.mark.parametrize(
    "w, phrase",
    [
        (np.eye(62), r"shape \(62, 62\); expected \(63, 63\)"),
        (np.full((63, 63), np.nan), "3969 non-finite values"),
    ],
)
def test_bad_whitening(tmp_path, w, phrase):
    np.save(tmp_path / "w.npy", w)
    with pytest.raises(EEGInputError, match=phrase):
        load_whitening(tmp_path / "w.npy")


def test_whitening_wrong_suffix(tmp_path):
    (tmp_path / "w.txt").write_text("1")
    with pytest.raises(EEGInputError, match="must be a .npy array"):
        load_whitening(tmp_path / "w.txt")


def test_trials_condition_index_length_checked():
    with pytest.raises(EEGInputError, match="2 condition indices for 1 trials"):
        EEGTrials(np.zeros((1, 63, 250), np.float32), CHANNELS_63, 250.0, "x", np.array([1, 2]))
