"""The torch-free part of the suite collects and passes where torch, diffusers and transformers cannot be imported.

A fresh ``pytest`` runs the whole suite with a ``sitecustomize.py`` on PYTHONPATH that refuses those
packages in every interpreter it starts (the tests' own subprocesses too), as on an install without
the export extra; the second run refuses onnx as well (the base + ``cpu,dev`` install). Tests that need
them skip (``@pytest.mark.requires_torch``, a module-level ``pytest.importorskip``, or a fixture such
as ``tiny_dir`` that skips); everything else must collect and pass. With no torch the tiny-set fixtures skip
instead of exporting; the two runs go side by side.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from support import import_blocker

ROOT = Path(__file__).resolve().parents[1]
INNER = "EEG2IMG_DEPLOY_TORCH_FREE_RUN"  # set in the inner run, so this test does not start itself again
TORCH_STACK = ("torch", "torchvision", "diffusers", "transformers", "accelerate")
NO_EXPORT_EXTRA = (*TORCH_STACK, "onnx", "onnxscript")

# Test files that must run (not skip) without torch: runtime, manifest, EEG readers, CLI errors, engines.
MUST_PASS = ("runtime.test_prior_solvers", "runtime.test_no_torch", "test_manifest",
             "test_user_errors", "test_cli", "eeg.test_readers", "eeg.test_spec", "engines.test_cache_key")
# Test files that import torch at module level: skipped whole, which also shows the blocker worked.
MUST_SKIP = ("models.test_atm_encoder", "models.test_checkpoints", "models.test_diffusion_prior")


def _outcomes(junit: Path) -> dict[str, Counter]:
    """Outcome counts per test module (``runtime.test_prior_solvers``) from pytest's JUnit XML."""
    per_module: dict[str, Counter] = {}
    for case in ET.parse(junit).iter("testcase"):
        # a module skipped at import (pytest.importorskip) is one case named after the module
        module = (case.get("classname") or case.get("name", "")).removeprefix("tests.")
        module = ".".join(p for p in module.split(".") if not p[:1].isupper())  # drop a test class's name
        outcome = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        per_module.setdefault(module, Counter())[outcome] += 1
    return per_module


CASES = {"no-torch": (TORCH_STACK, 180), "no-export-extra": (NO_EXPORT_EXTRA, 150)}  # id: (blocked, min passed)


@pytest.fixture(scope="module")
def inner_runs(tmp_path_factory):
    """Both inner suites, started together (stream names and ports are unique per test): {id: (process, folder,
    shim environment)}, output in the folder's out.txt and err.txt. Each test waits for its own."""
    runs = {}
    for case, (blocked, _) in CASES.items():
        tmp = tmp_path_factory.mktemp(case)
        shim = tmp / "shim"
        shim.mkdir()
        (shim / "sitecustomize.py").write_text(import_blocker(blocked), encoding="utf-8")
        env = {**os.environ, INNER: "1",
               "PYTHONPATH": os.pathsep.join([str(shim), *filter(None, [os.environ.get("PYTHONPATH")])])}
        with open(tmp / "out.txt", "w") as out, open(tmp / "err.txt", "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                 f"--basetemp={tmp / 'inner'}", f"--junitxml={tmp / 'junit.xml'}", "tests"],
                cwd=ROOT, env=env, stdout=out, stderr=err,
            )
        runs[case] = (proc, tmp, env)
    yield runs
    for proc, _, _ in runs.values():
        if proc.poll() is None:  # a test failed before waiting for it
            proc.kill()
            proc.wait()


@pytest.mark.slow
@pytest.mark.skipif(bool(os.environ.get(INNER)), reason="the inner run of this test")
@pytest.mark.parametrize("case", list(CASES))
def test_suite_without_torch(inner_runs, case: str) -> None:
    proc, tmp, env = inner_runs[case]
    min_passed = CASES[case][1]
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0 and "blocked by the test" in probe.stderr, "the shim does not block torch"

    proc.wait(timeout=600)
    stdout, stderr = (tmp / "out.txt").read_text(), (tmp / "err.txt").read_text()
    assert proc.returncode == 0, stdout[-6000:] + stderr[-2000:]
    per_module = _outcomes(tmp / "junit.xml")
    total = sum(per_module.values(), Counter())
    assert total["error"] == 0 and total["failure"] == 0, stdout[-6000:]
    assert total["passed"] >= min_passed, f"only {total['passed']} tests ran without torch: {dict(total)}"
    for module in MUST_PASS:
        counts = per_module.get(module, Counter())
        assert counts["passed"] > 0 and counts["failure"] == counts["error"] == 0, (module, dict(counts))
    for module in MUST_SKIP:
        counts = per_module.get(module, Counter())
        assert counts["skipped"] > 0 and counts["passed"] == 0, (module, dict(counts))
