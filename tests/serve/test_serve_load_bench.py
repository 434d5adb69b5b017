"""``benchmarks/serve_load.py --smoke`` on the tiny bundle: it runs, checks its images and writes its report."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("pytriton")
pytest.importorskip("tritonclient.http")

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "serve_load.py"


def test_smoke(tiny_bundle, tmp_path, triton_stub_loads):
    spec = importlib.util.spec_from_file_location("serve_load", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--smoke", "--bundle", str(tiny_bundle), "--out", str(tmp_path)])
    report = json.loads((tmp_path / "serve_load.json").read_text())
    assert report["all_images_equal"] is True
    assert [r["concurrency"] for r in report["results"]] == [1, 2]
    for r in report["results"]:
        assert r["served"]["errors"] == 0 and r["served"]["throughput_rps"] > 0 and r["overhead_ratio"] > 0
        assert r["served"]["latency_ms"]["p50"] <= r["served"]["latency_ms"]["p99"]
    assert "| 2 |" in (tmp_path / "README.md").read_text()


def test_recorded_command_names_no_folder():
    spec = importlib.util.spec_from_file_location("serve_load", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cmd = mod.public_command(["--work", "/scratch/x", "--requests", "8", "--out", "/scratch/o"])
    assert cmd == "python benchmarks/serve_load.py --work '<work>' --requests 8 --out '<out>'"
