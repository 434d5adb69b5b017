"""Session fixtures: the tiny model set is written once per test session, like a user's weights folder."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

# Small images keep the suite fast; every code path is the same as at 512x512.
TEST_IMAGE_SIZE = 128


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    from eeg2img_deploy.tiny import init_tiny

    logging.getLogger("diffusers").setLevel(logging.ERROR)
    out = tmp_path_factory.mktemp("weights") / "tiny"
    init_tiny(out, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_layout(tiny_dir):
    from eeg2img_deploy.weights import resolve_weights

    return resolve_weights(tiny_dir)


@pytest.fixture(scope="session")
def tiny_eeg(tiny_dir) -> np.ndarray:
    return np.load(tiny_dir / "eeg" / "synthetic_eeg.npy")


@pytest.fixture(scope="session")
def reference_pipe(tiny_layout):
    from eeg2img_deploy.reference.pipeline import ReferencePipeline

    return ReferencePipeline.from_weights(tiny_layout)
