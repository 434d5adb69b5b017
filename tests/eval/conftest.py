"""Shared fixtures of eval's tests: the tiny eval set (written by the session's init-tiny) and its networks,
loaded once; the truth's pixels and features computed once."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def eval_dir(tiny_dir):
    return tiny_dir / "eval"


@pytest.fixture(scope="session")
def metric_networks(eval_dir):
    from support import NEEDS_EVAL_ENV

    pytest.importorskip("torchvision", reason=NEEDS_EVAL_ENV)
    from eeg2img_deploy.eval.networks import MetricNetworks

    return MetricNetworks.load(eval_dir / "weights")


@pytest.fixture(scope="session")
def tiny_truth_images(eval_dir) -> np.ndarray:
    from eeg2img_deploy.eval.images import list_images, read_set

    files, _ = list_images(eval_dir / "truth", "--truth")
    return read_set(files, "--truth")


@pytest.fixture(scope="session")
def tiny_truth(tiny_truth_images, metric_networks):
    from eeg2img_deploy.eval.metrics import Truth

    return Truth.of(tiny_truth_images, metric_networks)
