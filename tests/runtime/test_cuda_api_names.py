"""Every ``cuda.bindings.runtime`` name the toolkit uses, and every name the fake cudart offers, exists in the real
cuda-bindings 12.9 and 13.x (downloaded once, ~10 MB each; skipped without network)."""

from __future__ import annotations

import ast
import enum
import inspect
from pathlib import Path

import pytest
from fakes import cuda_api_names
from fakes.fake_cudart import GpuState, make_fake_cudart

from eeg2img_deploy import gpu
from eeg2img_deploy.runtime import trt_backend

MODULES = (gpu, trt_backend)
HOLDERS = {"cudart", "_cudart"}  # the names (or self.<name>) that hold the runtime module


def _used() -> set[str]:
    found = set()
    for module in MODULES:
        for node in ast.walk(ast.parse(Path(inspect.getsourcefile(module)).read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            base = node.value
            holder = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else None
            if holder in HOLDERS:
                found.add(node.attr)
            elif isinstance(base, ast.Attribute) and isinstance(base.value, (ast.Name, ast.Attribute)):
                inner = base.value.id if isinstance(base.value, ast.Name) else base.value.attr
                if inner in HOLDERS:  # cudart.cudaError_t.cudaSuccess
                    found.add(f"{base.attr}.{node.attr}")
    return found


def _fake() -> set[str]:
    m = make_fake_cudart(GpuState())
    names = {n for n in vars(m) if n.startswith("cuda")}
    for n in list(names):
        v = getattr(m, n)
        if isinstance(v, type) and issubclass(v, enum.Enum):
            names.update(f"{n}.{k}" for k in v.__members__)
    return names


@pytest.fixture(scope="module", params=sorted(cuda_api_names.WHEELS))
def real(request) -> tuple[str, frozenset[str]]:
    names = cuda_api_names.runtime_names(request.param)
    if names is None:
        pytest.skip(f"could not download cuda-bindings {request.param} (no network?)")
    return request.param, names


def test_the_scan_sees_what_the_code_uses() -> None:
    used = _used()
    assert {"cudaStreamCreateWithFlags", "cudaStreamNonBlocking", "cudaMemcpyAsync", "cudaError_t.cudaSuccess"} <= used


def test_every_name_the_toolkit_uses_exists(real) -> None:
    version, names = real
    assert sorted(_used() - names) == [], f"not in cuda-bindings {version}"


def test_every_name_the_fake_offers_exists(real) -> None:
    version, names = real
    assert sorted(_fake() - names) == [], f"the fake cudart offers names cuda-bindings {version} does not have"
    assert "cudaStreamCreateWithFlags" in names and "cudaNoSuchCall" not in names
