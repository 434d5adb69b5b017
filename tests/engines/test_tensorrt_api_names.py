"""Every TensorRT name the toolkit uses, and every name the fake offers, exists in the real bindings.

Runs against the real TensorRT 10.3 (JetPack 6) and 11.4 Python bindings wheels (downloaded once,
~1 MB each; skipped without network). The source side is read with ``ast``: each attribute used on
the ``trt`` module or on a TensorRT object must be listed in the module's ``TRT_API_USED``.
"""

from __future__ import annotations

import ast
import enum
import inspect
from pathlib import Path

import pytest
from fakes import trt_api_names
from fakes.fake_cudart import GpuState
from fakes.fake_tensorrt import TrtState, make_fake_tensorrt

from eeg2img_deploy.engines import tensorrt_builder
from eeg2img_deploy import gpu
from eeg2img_deploy.runtime import trt_backend

MODULES = (tensorrt_builder, trt_backend, gpu)
USED = sorted(set(tensorrt_builder.TRT_API_USED) | set(trt_backend.TRT_API_USED) | set(gpu.TRT_API_USED))
# variables that hold TensorRT objects in those modules, and their classes
OBJECTS = {
    "builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser", "config": "IBuilderConfig",
    "opt_profile": "IOptimizationProfile", "tensor": "ITensor", "_engine": "ICudaEngine",
    "_context": "IExecutionContext", "_runtime": "Runtime", "S": "Severity",
}  # fmt: skip


def _chain(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def _used_in_source() -> set[str]:
    found: set[str] = set()
    for module in MODULES:
        tree = ast.parse(Path(inspect.getsourcefile(module)).read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or isinstance(getattr(node, "_parent", None), ast.Attribute):
                continue
            chain = _chain(node)
            if not chain:
                continue
            if chain[0] == "self" and len(chain) > 2:
                chain = chain[1:]
            head, rest = chain[0], chain[1:]
            if head == "trt" and rest:
                found.add(".".join(rest[:2]))
                if len(rest) > 2:
                    found.add(".".join(rest[1:3]))
            elif head in OBJECTS and rest and not rest[0].startswith("_"):
                found.add(f"{OBJECTS[head]}.{rest[0]}")
    return found


def test_trt_api_used_covers_the_source() -> None:
    missing = sorted(_used_in_source() - set(USED))
    assert not missing, f"add these to TRT_API_USED: {missing}"


@pytest.fixture(scope="module", params=sorted(trt_api_names.WHEELS))
def real_names(request: pytest.FixtureRequest) -> tuple[str, frozenset[str]]:
    path = trt_api_names.wheel(request.param)
    if path is None:
        pytest.skip(f"could not download the TensorRT {request.param} bindings wheel (no network?)")
    return request.param, trt_api_names.identifiers(path)


def test_every_name_the_toolkit_uses_exists(real_names) -> None:
    version, names = real_names
    missing = [u for u in USED if not all(trt_api_names.has_name(part, names) for part in u.split("."))]
    assert not missing, f"not in TensorRT {version}'s bindings: {missing}"


def test_removed_names_are_really_absent(real_names) -> None:
    """The check can fail: the names 11.x dropped are found in 10.3 and not in 11.4."""
    version, names = real_names
    for gone in ("FP16", "EXPLICIT_BATCH", "platform_has_fast_fp16"):
        assert trt_api_names.has_name(gone, names) == (version == "10.3")


def _fake_names(fake) -> set[str]:
    names = set()
    for attr, value in vars(fake).items():
        if attr.startswith("_"):
            continue
        names.add(attr)
        if isinstance(value, type):
            own = [vars(k) for k in value.__mro__ if k.__module__ != "builtins"]  # with the base classes'
            members = value.__members__ if issubclass(value, enum.Enum) else {n for d in own for n in d}
            names.update(n for n in members if not n.startswith("_"))
    return names


def test_every_name_the_fake_offers_exists(real_names) -> None:
    version, names = real_names
    fake = make_fake_tensorrt(TrtState(version="10.3.0" if version == "10.3" else "11.4.0.106", gpu=GpuState()))
    extra = sorted(n for n in _fake_names(fake) if not trt_api_names.has_name(n, names))
    assert not extra, f"the fake offers names TensorRT {version} does not have: {extra}"
