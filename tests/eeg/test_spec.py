import sys

import numpy as np
import pytest

from eeg2img_deploy.eeg.spec import (
    CHANNELS_63,
    EEGSpec,
    reorder_channels,
    validate_channel_names,
    validate_eeg,
    validate_sfreq,
    validate_subject_ids,
)
from eeg2img_deploy.errors import EEGInputError


def _trials(n=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 63, 250))


def test_channel_list_matches_paper():
    assert len(CHANNELS_63) == 63 == len(set(CHANNELS_63))
    assert CHANNELS_63[:5] == ("Fp1", "Fp2", "AF7", "AF3", "AFz")
    assert CHANNELS_63[-3:] == ("O1", "Oz", "O2")
    assert CHANNELS_63.index("Cz") == 30


def test_spec_module_is_torch_and_mne_free():
    import subprocess

    code = (
        "import sys; import eeg2img_deploy.eeg.spec, eeg2img_deploy.eeg.readers; "
        "bad = [m for m in ('torch', 'mne') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_spec_dict_round_trip():
    spec = EEGSpec()
    d = spec.to_dict()
    assert d == {"channels": list(CHANNELS_63), "sfreq": 250.0, "n_times": 250, "tmin": 0.0}
    assert EEGSpec.from_dict(d) == spec
    assert spec.times[0] == 0.0 and spec.times[-1] == pytest.approx(0.996)


def test_spec_from_dict_rejects_unknown_keys():
    with pytest.raises(EEGInputError, match="unknown keys"):
        EEGSpec.from_dict({**EEGSpec().to_dict(), "lowpass": 40})


def test_validate_returns_float32_batch():
    x = _trials(3)
    out = validate_eeg(x)
    assert out.dtype == np.float32 and out.shape == (3, 63, 250) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, x.astype(np.float32))


def test_single_trial_gets_batch_axis():
    assert validate_eeg(_trials(1)[0]).shape == (1, 63, 250)


def test_integer_dtype_is_cast():
    x = np.arange(63 * 250, dtype=np.int16).reshape(63, 250)
    out = validate_eeg(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0], x.astype(np.float32))


@pytest.mark.parametrize(
    "x, phrase",
    [
        (np.zeros((2, 63, 300)), "drops the first 50 samples"),
        (np.zeros((63, 300)), r"x\[\.\.\., 50:\]"),
        (np.zeros((2, 250, 63)), "looks transposed"),
        (np.zeros((250, 63)), "Transpose it"),
        (np.zeros((2, 64, 250)), "has 64 channels"),
        (np.zeros((2, 63, 200)), "resample to 250 Hz"),
        (np.zeros((0, 63, 250)), "empty batch"),
        (np.zeros(250), "1 dimensions"),
        (np.zeros((3, 4, 63, 250)), r"average the repetitions with x.mean\(axis=1\)"),
        (np.zeros((2, 63, 250), dtype=bool), "dtype bool"),
        (np.zeros((2, 63, 250), dtype=complex), "dtype complex"),
        (np.full((2, 63, 250), "a"), "expected a numeric array"),
        ([np.zeros((63, 250)), np.zeros((63, 10))], "could not be read as one array"),
    ],
)
def test_bad_shapes_and_dtypes(x, phrase):
    with pytest.raises(EEGInputError, match=phrase):
        validate_eeg(x)


def test_non_finite_values_are_counted():
    x = _trials(5)
    x[3, 0, 0] = np.nan
    x[3, 1, 1] = np.nan
    x[4, 2, 2] = np.inf
    with pytest.raises(
        EEGInputError, match=r"2 NaN and 1 inf in 2 of 5 trials \(first at trial index 3\)"
    ):
        validate_eeg(x)


def test_float64_overflowing_float32_is_caught():
    x = _trials(2)
    x[1, 0, 0] = 1e300
    with pytest.raises(EEGInputError, match="first at trial index 1"):
        validate_eeg(x)


def test_wrong_sampling_rate():
    with pytest.raises(EEGInputError, match="is 1000 Hz; expected 250 Hz. Resample to 250 Hz"):
        validate_eeg(_trials(), sfreq=1000.0)
    validate_eeg(_trials(), sfreq=250.0000001)


def test_channel_names_missing_and_extra():
    names = list(CHANNELS_63)
    names[5] = "STI 014"
    with pytest.raises(EEGInputError, match=r"missing \['AF4'\], extra \['STI 014'\]"):
        validate_eeg(_trials(), channel_names=names)


def test_channel_names_case_hint():
    names = list(CHANNELS_63)
    names[0] = "FP1"
    with pytest.raises(EEGInputError, match="differ only in case"):
        validate_channel_names(names)


def test_channel_order_differs():
    names = list(CHANNELS_63)
    names[10], names[11] = names[11], names[10]
    with pytest.raises(
        EEGInputError, match="first mismatch at index 10, expected 'F1', found 'F2'"
    ):
        validate_eeg(_trials(), channel_names=names)


def test_duplicate_channel_names():
    names = list(CHANNELS_63)
    names[1] = "Fp1"
    with pytest.raises(EEGInputError, match="duplicates"):
        validate_channel_names(names)


def test_reorder_channels_fixes_order():
    x = _trials(2)
    perm = np.random.default_rng(1).permutation(63)
    names = [CHANNELS_63[i] for i in perm] + ["EOG"]
    shuffled = np.concatenate([x[:, perm], np.zeros((2, 1, 250))], axis=1)
    np.testing.assert_array_equal(reorder_channels(shuffled, names), x)


def test_validate_sfreq_non_number():
    with pytest.raises(EEGInputError, match="not a number"):
        validate_sfreq("fast")


def test_subject_ids():
    np.testing.assert_array_equal(validate_subject_ids(8, 3), [8, 8, 8])
    out = validate_subject_ids([1, 2, 10], 3)
    assert out.dtype == np.int64 and out.shape == (3,)
    assert validate_subject_ids(np.array([3], dtype=np.uint8), 1).dtype == np.int64


@pytest.mark.parametrize(
    "ids, n, phrase",
    [
        (-1, 2, "must be >= 0"),
        ([1, -2], 2, "found -2"),
        ([1.5, 2.0], 2, "dtype float64; expected integers"),
        ("sub-08", 1, "sub-08 -> 8"),
        ([1, 2, 3], 2, "got 3 subject ids for 2 EEG trials"),
        (np.ones((2, 1), dtype=int), 2, r"shape \(2, 1\)"),
        (True, 2, "dtype bool"),
        (None, 2, "expected integers"),
    ],
)
def test_bad_subject_ids(ids, n, phrase):
    with pytest.raises(EEGInputError, match=phrase):
        validate_subject_ids(ids, n)
