"""Every script under ``benchmarks/`` runs: a CPU smoke test each (tiny sizes, ``--smoke``/``--dry-run``).

A script nothing runs rots (the first GPU check could not even import). These run each script's
whole path on the session's tiny set in seconds; they measure nothing. The scripts in ``ELSEWHERE`` are
smoke-tested beside their features; the first test fails when a script has no smoke test at all.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
ELSEWHERE = {"bench_low_level_cpu.py": "tests/test_bench.py", "caption_kv_cache.py": "tests/test_bench.py",
             "stream_soak.py": "tests/stream/test_stream_soak.py",
             "serve_load.py": "tests/serve/test_serve_load_bench.py"}
HERE = {"bench_tiny_cpu.py", "bench_fullsize_encoder_prior_cpu.py", "export_fullsize_unet.py", "gpu_check.py",
        "prior_sampler_study.py", "cuda_path_check.py", "prior_graph_fold.py"}


def _script(name: str):
    """The script as a module (registered first: its dataclasses look their module up while being defined)."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_benchmark_script_has_a_smoke_test():
    root = Path(__file__).resolve().parents[1]
    assert {p.name for p in BENCHMARKS.glob("*.py")} == HERE | set(ELSEWHERE), "a script in benchmarks/ has no smoke test"
    for script, test in ELSEWHERE.items():
        assert script in (root / test).read_text(), (script, test)


def _results_listing() -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in (BENCHMARKS / "results").iterdir()}


@pytest.mark.slow
def test_gpu_check_dry_run_is_the_gpu_command(tmp_path):
    """``gpu_check.py --dry-run``, exactly the command a GPU machine runs plus the flag: every part ok or skipped."""
    before = _results_listing()
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py"), "--dry-run", "--out", str(out)],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == 2 and written[0].endswith(".json") and written[1].endswith(".md"), written
    report = json.loads((out / written[0]).read_text())
    assert report["dry_run"] is True and report["budget_s"] == 420
    parts = report["parts"]
    cuda = parts.pop("cuda_bindings")  # the real cuda-python layer: skipped, with the reason, without a GPU
    assert cuda["status"] == "skipped" and ("not installed" in cuda["reason"] or "no CUDA GPU" in cuda["reason"])
    assert {k: v["status"] for k, v in parts.items()} == dict.fromkeys(
        ("environment", "unet_torch", "export", "onnxruntime", "tiny_pipeline"), "ok"), parts
    unet = parts["unet_torch"]
    assert unet["fp16_vs_fp32"]["ok"] and 0 < unet["fp16_vs_fp32"]["max_rel_error"]  # a real comparison
    assert unet["fp16_cuda_graph_ms"] == "skipped: no CUDA" and unet["fp16_eager_ms"]["n"] == 2
    assert parts["onnxruntime"]["provider"] == "cpu" and parts["onnxruntime"]["vs_torch_fp32"]["ok"]
    tiny = parts["tiny_pipeline"]
    assert tiny["image_size"] == 128 and tiny["prior_graphs"]["steps"] == 10 and tiny["prior_graph"] == "fused"
    assert tiny["tensorrt"].startswith("skipped: TensorRT is not installed")
    assert "| unet_torch | ok |" in (out / written[1]).read_text()
    assert _results_listing() == before, "--out elsewhere wrote under benchmarks/results"


def test_gpu_check_says_what_it_cannot_run_and_goes_on(tmp_path, monkeypatch):
    """Without a GPU, the real-size run skips the GPU parts with their reason; a failing part does not stop it."""
    script = _script("gpu_check")

    def broken(self):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(script.UNetCheck, "export_part", broken)  # reached only if the torch part ran
    monkeypatch.setattr(script.UNetCheck, "torch_part", broken)
    report = script.main(["--out", str(tmp_path), "--skip-tiny", "--work", str(tmp_path)])
    parts = report["parts"]
    assert parts["unet_torch"]["status"] == "failed" and "simulated" in parts["unet_torch"]["error"]
    assert parts["onnxruntime"]["status"] == "skipped" and "export part did not run" in parts["onnxruntime"]["reason"]
    assert "tiny_pipeline" not in parts
    monkeypatch.undo()
    report = _script("gpu_check").main(["--out", str(tmp_path), "--skip-tiny", "--skip-export", "--work", str(tmp_path)])
    if not report["parts"]["environment"].get("cuda_available"):
        assert "no CUDA GPU" in report["parts"]["unet_torch"]["reason"]


def test_gpu_check_without_diffusers_skips_and_keeps_each_part_on_disk(tmp_path, monkeypatch):
    """The lent GPU machines have no diffusers: those parts say 'skipped' and why; the report is on disk after each part."""
    script = _script("gpu_check")
    monkeypatch.setitem(sys.modules, "diffusers", None)  # `import diffusers` raises ImportError
    seen = {}

    def killed(work, dry):  # the last part: what is on disk when a run is killed here
        seen.update(json.loads(next(tmp_path.glob("gpu_check-*.json")).read_text())["parts"])
        raise KeyboardInterrupt  # a run stopped at its time limit

    monkeypatch.setattr(script, "tiny_pipeline_part", killed)
    with pytest.raises(KeyboardInterrupt):
        script.main(["--dry-run", "--out", str(tmp_path), "--work", str(tmp_path)])
    assert list(seen) == ["environment", "cuda_bindings", "unet_torch", "export", "onnxruntime"]
    assert seen["unet_torch"]["status"] == "skipped" and "diffusers is not installed" in seen["unet_torch"]["reason"]
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "diffusers", None)
    report = script.main(["--dry-run", "--skip-export", "--out", str(tmp_path), "--work", str(tmp_path)])
    tiny = report["parts"]["tiny_pipeline"]
    assert tiny["status"] == "skipped" and "carry its wheel" in tiny["reason"]


def test_cuda_path_check_against_the_fake_cudart(monkeypatch):
    """The script's whole path on the fake GPU (a GPU machine runs it on cuda-python through gpu_check.py)."""
    from fakes import install_fake_gpu

    state = install_fake_gpu(monkeypatch, tensorrt=False).gpu
    result = _script("cuda_path_check").run(n=1 << 10)
    assert result["ok"] and result["round_trip_equal"] and result["graph_replay_equal"], result
    assert result["failed_capture"]["graph_is_none"] and "Invalidated" in result["failed_capture"]["end_capture"]
    assert state.count("D2H") == 2, "one eager, one captured; the replay issues no new copy call"
    assert not state.allocations and not state.pinned and not state.streams and not state.graph_execs
    assert [v for v in state.violations if "during stream capture" not in v] == []  # the one provoked on purpose


def test_bench_tiny_cpu_smoke(tiny_dir, tiny_bundle, tmp_path):
    report = _script("bench_tiny_cpu").main(["--smoke", "--weights", str(tiny_dir), "--bundle", str(tiny_bundle),
                                             "--out", str(tmp_path)])
    assert report["runtime"]["latency_ms"]["total"]["n"] == 1 and report["baseline"]["parity"]
    assert (tmp_path / "bench_tiny_cpu.json").is_file() and (tmp_path / "bench_tiny_cpu.png").is_file()
    assert "<!-- bench_tiny_cpu -->" in (tmp_path / "README.md").read_text()


@pytest.mark.slow
def test_bench_fullsize_encoder_prior_cpu_smoke(tiny_dir, tiny_bundle, tmp_path):
    result = _script("bench_fullsize_encoder_prior_cpu").main(
        ["--smoke", "--weights", str(tiny_dir), "--bundle", str(tiny_bundle), "--out", str(tmp_path)])
    assert result["parity"]["fused_vs_stepwise_max_abs_diff"] <= 1e-5
    assert "prior 50-step sampling, runtime stepwise / fused graph" in result["ratios_torch_over_onnxruntime"]
    target = result["encoder_prior_target"]  # Stage I against the paper's code, side by side in the same process
    assert target["runtime_prior_graph"] == "fused" and target["want_at_least"] == 6.0 and target["ratio"] > 0
    assert result["parity"]["encoder_prior_max_abs_diff"] <= 1e-4  # both sides compute the same embeddings
    assert "Encoder + 50-step prior (Stage I)" in (tmp_path / "README.md").read_text()
    assert (tmp_path / "bench_fullsize_encoder_prior_cpu.json").is_file()


def test_prior_graph_fold_smoke(tiny_dir, tmp_path):
    result = _script("prior_graph_fold").main(["--smoke", "--weights", str(tiny_dir), "--out", str(tmp_path)])
    folded, unfolded = result["graphs"]["folded"], result["graphs"]["unfolded"]
    assert folded["gemms"] == 10 * 3 + 1 and unfolded["gemms"] > folded["gemms"]
    assert folded["max_abs_diff_vs_stepwise"] == unfolded["max_abs_diff_vs_stepwise"] == 0  # both op for op
    assert "<!-- prior_graph_fold -->" in (tmp_path / "README.md").read_text()


@pytest.mark.slow
def test_export_fullsize_unet_smoke(tmp_path):
    """The real script (export and onnxruntime children included) on the tiny UNet at 64x64."""
    out = subprocess.run([sys.executable, str(BENCHMARKS / "export_fullsize_unet.py"), "--smoke", "--precision", "fp16",
                          "--out", str(tmp_path / "work"), "--results", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "export_fullsize_unet.json").read_text())
    fp16 = report["results"]["fp16"]
    assert report["status"] == "ok" and fp16["checker_ok"] and fp16["ort"]["output_finite"], fp16
    assert "<!-- export_fullsize_unet -->" in (tmp_path / "README.md").read_text()


@pytest.mark.slow
def test_prior_sampler_study_smoke(tmp_path):
    assert _script("prior_sampler_study").main(["--smoke", "--out-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "prior_sampler_study.json").read_text())
    assert report["results"] and report["eval"]["conditions"] == 2
    assert (tmp_path / "prior_sampler_study.md").is_file()
