"""Session fixtures: the tiny model set is written once per test session, like a user's weights folder.

Nothing here imports torch at import time: on an install without the export extra the torch-free
tests still collect and run, and the fixtures that need torch skip (``tests/test_torch_free.py``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import fixture_cache

TORCH_STACK = ("torch", "diffusers", "transformers")  # what ``requires_torch`` tests need (the export extra)


def _missing_torch_stack() -> str | None:
    for name in TORCH_STACK:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):  # a blocked or broken package
            return name
    return None


def pytest_collection_modifyitems(config, items) -> None:
    missing = _missing_torch_stack()
    if missing is None:
        return
    skip = pytest.mark.skip(reason=f"requires_torch: {missing} is not installed (the export extra)")
    for item in items:
        if item.get_closest_marker("requires_torch"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """The tiny set (``init-tiny``, seed 0, TEST_IMAGE_SIZE); from the fixture cache when one is set (fixture_cache.py)."""
    pytest.importorskip("torch")
    return fixture_cache.made("tiny", tmp_path_factory.mktemp("weights") / "tiny")


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


@pytest.fixture(scope="session")
def tiny_export_settings():
    """The settings ``tiny_bundle`` was exported with."""
    return fixture_cache.export_settings()


@pytest.fixture(scope="session")
def tiny_bundle(tiny_dir, tiny_export_settings, tmp_path_factory) -> Path:
    """The tiny set exported once per session (fp32 + fp16, 1 and 4 steps, max batch 4, TEST_IMAGE_SIZE).

    Read-only for tests: a test that changes a bundle copies it first (shutil.copytree). From the fixture cache
    when one is set (fixture_cache.py).
    """
    pytest.importorskip("onnx")
    return fixture_cache.made("bundle", tmp_path_factory.mktemp("export") / "tiny", tiny=tiny_dir)


@pytest.fixture(scope="session")
def ort_engines(tiny_bundle, tmp_path_factory):
    """``build-engines --backend onnxruntime`` (CPU) of the tiny bundle: (folder, manifest)."""
    from eeg2img_deploy.engines.build import build_engines

    out = tmp_path_factory.mktemp("engines") / "ort"
    manifest = build_engines(tiny_bundle, out, backend="onnxruntime", ort_provider="cpu", progress=False)
    return out, manifest


@pytest.fixture
def hashed_files(monkeypatch) -> list[str]:
    """The names of the files ``integrity.verify_files`` hashes, in order (sha256_file counted, not replaced)."""
    from eeg2img_deploy import integrity
    from eeg2img_deploy.fileio import sha256_file

    seen: list[str] = []

    def counting(path, *a, **kw):
        seen.append(Path(path).name)
        return sha256_file(path, *a, **kw)

    monkeypatch.setattr(integrity, "sha256_file", counting)
    return seen
