"""Fixtures for the engine tests: the tiny bundle (built once per session) and the fake GPU."""

from __future__ import annotations

from pathlib import Path

import pytest


from fakes import install_fake_gpu
from fakes.onnx_bundle import write_tiny_bundle


@pytest.fixture(scope="session")
def onnx_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export") / "tiny-bundle"
    write_tiny_bundle(folder)
    return folder


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch):
    """A fake TensorRT 10.3 + one sm_89 GPU; fails the test if the code broke an API precondition."""
    state = install_fake_gpu(monkeypatch)
    yield state
    assert state.violations == [], f"TensorRT/CUDA API preconditions broken: {state.violations}"
