"""The served model's request handling, in process (no server): batching never changes an answer."""

from __future__ import annotations

import numpy as np
import pytest

from eeg2img_deploy.errors import EEGInputError, OptionError

SUBJECT = 8


@pytest.fixture(scope="module")
def pipe(tiny_bundle):
    from eeg2img_deploy.runtime.pipeline import Pipeline

    p = Pipeline.from_bundle(tiny_bundle, threads=1)
    yield p
    p.close()


def _request(eeg, seed, subject=SUBJECT, **extra):
    n = len(eeg)
    req = {"eeg": eeg, "subject_id": np.full((n, 1), subject, np.int64), "seed": np.full((n, 1), seed, np.int64)}
    req.update({k: np.asarray(v).reshape(n, 1) for k, v in extra.items()})
    return req


def test_batched_requests_answer_what_each_gets_alone(pipe, tiny_eeg):
    from eeg2img_deploy.serve.requests import run_requests

    eeg = tiny_eeg[:3]
    alone = [pipe(eeg[:2], SUBJECT, 5, prior_steps=10), pipe(eeg[2:3], SUBJECT, 9, prior_steps=10)]
    idx = np.array([[1]], np.int64)  # trial 1 of a file, sent on its own: the file's sample 1
    requests = [
        _request(eeg[:2], 5, prior_steps=np.full(2, 10, np.int64)),
        _request(eeg[2:3], 9, prior_steps=np.array([10], np.int64)),
        _request(eeg[1:2], 5, prior_steps=np.array([10], np.int64), sample_index=idx),
    ]
    out = run_requests(pipe, requests)
    np.testing.assert_array_equal(out[0]["image"], alone[0].images)
    np.testing.assert_array_equal(out[1]["image"], alone[1].images)
    np.testing.assert_array_equal(out[2]["image"][0], alone[0].images[1])
    np.testing.assert_array_equal(out[0]["image_embeds"], alone[0].image_embeds)
    assert out[0]["batch_size"].ravel().tolist() == [4, 4]  # all four rows ran as one call
    # the seed and the sample index each change the image far beyond rounding
    assert np.abs(out[1]["image"].astype(int) - alone[0].images[0]).mean() > 5
    assert np.abs(alone[0].images[0].astype(int) - alone[0].images[1]).mean() > 5


def test_rows_with_other_options_run_apart_and_keep_their_place(pipe, tiny_eeg):
    from eeg2img_deploy.serve.requests import run_requests

    eeg = tiny_eeg[:2]
    mixed = _request(eeg, 3, prior_steps=np.array([10, 4], np.int64))
    out = run_requests(pipe, [mixed])[0]
    first = pipe(eeg, SUBJECT, 3, prior_steps=10)
    second = pipe(eeg, SUBJECT, 3, prior_steps=4)
    np.testing.assert_array_equal(out["image"][0], first.images[0])
    np.testing.assert_array_equal(out["image"][1], second.images[1])
    assert out["batch_size"].ravel().tolist() == [1, 1]


@pytest.mark.parametrize(("change", "message", "error"), [
    (lambda r: r.update(eeg=np.full_like(r["eeg"], np.nan)), "non-finite", EEGInputError),
    (lambda r: r.update(subject_id=np.array([[40]], np.int64)), "subject id(s) [40]", EEGInputError),
    (lambda r: r.update(eeg=r["eeg"][:, :, :200]), "time samples", EEGInputError),
    (lambda r: r.update(seed=np.array([[1.5]])), "'seed' has dtype float64", EEGInputError),
    (lambda r: r.update(steps=np.array([[3]], np.int64)), "'steps' must be one of", OptionError),
    (lambda r: r.update(prior_steps=np.array([[0]], np.int64)), "'prior_steps': 0 is not in the range", OptionError),
])
def test_a_bad_request_is_rejected_alone(pipe, tiny_eeg, change, message, error):
    from eeg2img_deploy.serve.requests import run_requests

    bad = _request(tiny_eeg[:1], 0, prior_steps=np.array([2], np.int64))
    change(bad)
    good = _request(tiny_eeg[1:2], 0, prior_steps=np.array([2], np.int64))
    out = run_requests(pipe, [bad, good])
    assert isinstance(out[0], error) and message in str(out[0]), repr(out[0])
    assert out[1]["image"].shape == (1, pipe.image_size, pipe.image_size, 3)
