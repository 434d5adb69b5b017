"""The install extras: one per real target, each a consistent set (one CUDA major, onnxruntime's TensorRT
provider given the TensorRT major it links), checked against the wheels pip's resolver picks for that
target (``scripts/install_matrix.py``), and the README's table is that check's table.

The resolver test needs PyPI (about 30 s: metadata and the few files it opens are read by HTTP range
requests); without it, it is skipped with the reason. The other tests read pyproject.toml only.
"""

from __future__ import annotations

import importlib.util
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _matrix():
    spec = importlib.util.spec_from_file_location("install_matrix", ROOT / "scripts" / "install_matrix.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


im = _matrix()


def _names(reqs) -> set[str]:
    return {r.name for r in reqs}


def test_each_target_installs_exactly_one_onnxruntime_build() -> None:
    """Both builds install the module `onnxruntime`; with both, the CUDA provider disappears (onnxruntime#26996)."""
    from packaging.requirements import Requirement

    project = im.tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not {Requirement(r).name for r in project["dependencies"]} & {"onnxruntime", "onnxruntime-gpu"}
    for t in im.TARGETS:
        found = _names(im.requirements(t.extra, t)) & {"onnxruntime", "onnxruntime-gpu"}
        assert len(found) == 1, (t.name, found)
    assert {t.extra for t in im.TARGETS} == {"cpu", "gpu-cu12", "gpu-cu13", "jetson6", "jetson7"}


def test_jetson_targets_take_tensorrt_from_jetpack_and_servers_from_pip() -> None:
    for t in im.TARGETS:
        trt = {n for n in _names(im.requirements(t.extra, t)) if n.startswith("tensorrt")}
        assert bool(trt) == (t.cuda is not None and not t.system_tensorrt), (t.name, trt)
        if trt:
            assert trt == {f"tensorrt-cu{t.cuda}"}, (t.name, trt)  # never plain `tensorrt` (its CUDA 13 build)


def test_every_tensorrt_target_installs_onnx() -> None:
    """A TensorRT build checks the graphs against TensorRT's parser rules first, reading them with onnx."""
    for t in im.TARGETS:
        assert ("onnx" in _names(im.requirements(t.extra, t))) == (t.cuda is not None), t.name
    for extra in ("tensorrt-cu12", "tensorrt-cu13"):  # also alone, beside `cpu`
        assert "onnx" in _names(im.requirements(extra, next(t for t in im.TARGETS if t.cuda))), extra


def test_readme_table_is_the_checked_table() -> None:
    assert im.readme_block((ROOT / "README.md").read_text()) == im.readme_table(), (
        "README.md's install table differs from scripts/install_matrix.py: run `python scripts/install_matrix.py --readme`")


def _pypi_reachable() -> str | None:
    try:
        urllib.request.urlopen(f"{im.INDEX}/pip/", timeout=10).close()
    except OSError as e:
        return f"PyPI is not reachable ({e})"
    return None


# The extras as they were before this check existed (issue 18, bug 6): plain onnxruntime-gpu resolved to a
# CUDA 13 build beside CUDA 12 TensorRT, and TensorRT to 11.x, whose libnvinfer.so.11 onnxruntime cannot load.
OLD_EXTRAS = {
    "gpu-cu12": ["onnxruntime-gpu>=1.20", "eeg2img-deploy[tensorrt-cu12]"],
    "tensorrt-cu12": ["tensorrt-cu12>=10.3; platform_machine == 'x86_64'", "cuda-python>=12.4,<13"],
}


def test_every_target_resolves_to_a_consistent_set() -> None:
    """pip's resolver per target, then the chosen wheels opened: one CUDA major, the TensorRT major onnxruntime links.

    Sensitivity: the extras before the fix, resolved the same way for the CUDA 12 x86_64 target, fail on both counts
    (and on the onnx the pre-build check needs).
    """
    why = _pypi_reachable()
    if why:
        pytest.skip(why)
    old_target = next(t for t in im.TARGETS if t.extra == "gpu-cu12" and t.machine == "x86_64")
    findings = im.check_all([*((t, None) for t in im.TARGETS), (old_target, OLD_EXTRAS)])
    *current, old = findings
    for f in current:
        assert f.ok, (f.target.name, f.errors, f.installs)
    by = {(f.target.extra, f.target.machine): f for f in current}
    for machine in ("x86_64", "aarch64"):
        for cuda in (12, 13):
            assert set(by[(f"gpu-cu{cuda}", machine)].facts["cuda_majors"].values()) == {cuda}
    x86 = by[("gpu-cu12", "x86_64")].facts
    assert x86["onnxruntime_tensorrt_major"] == x86["tensorrt_major"] == 10
    assert "onnxruntime-gpu (build_and_package_info)" in x86["cuda_majors"]
    assert all(f.facts["onnx"] for f in current if f.target.cuda)  # the pre-build check's reader, on every TensorRT target
    assert set(by[("jetson6", "aarch64")].facts["cuda_majors"].values()) == {12}
    assert set(by[("jetson7", "aarch64")].facts["cuda_majors"].values()) == {13}
    wrong = " ".join(old.errors)
    assert "CUDA 12 target" in wrong and "onnxruntime-gpu (build_and_package_info)': 13" in wrong, old.errors
    assert "links libnvinfer.so.10, the TensorRT wheel is 11.x" in wrong, old.errors
    assert "no onnx in a TensorRT target" in wrong, old.errors
