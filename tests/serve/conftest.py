"""Skip the tests that start a tritonserver where PyTriton's Python stub cannot load (no shared libpython)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def triton_stub_loads() -> None:
    pytest.importorskip("pytriton")
    from eeg2img_deploy.serve.server import missing_stub_libraries, prefer_interpreter_libpython

    env = dict(os.environ)
    prefer_interpreter_libpython(env)
    missing = missing_stub_libraries(env)
    if missing:
        pytest.skip(f"PyTriton's Python stub cannot load {missing} (no shared libpython: apt-get install libpython3.X)")
