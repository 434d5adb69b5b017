"""The bench harness on the tiny bundle: runtime vs torch baseline, the report's numbers, the plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eeg2img_deploy.bench import (
    STAGES,
    latency_stats,
    plot_report,
    print_report,
    run_bench,
    setup_line,
)

KEYS = (*STAGES, "total")


@pytest.fixture(scope="module")
def report(tiny_bundle, tiny_dir):
    return run_bench(tiny_bundle, runs=2, warmup=1, prior_steps=3, baseline_weights=tiny_dir)


def test_setup_line_names_command_machine_load_and_versions():
    machine = {"cpu": "Some CPU", "logical_cores": 8, "usable_cores": 2, "ram_gb": 24.0, "load_average_1m": 3.5}
    line = setup_line("python b.py --runs 5", machine, {"onnxruntime": "1.32.0"}, load_at_start=1.25, extra="; x")
    assert line == ("`python b.py --runs 5` - Some CPU, 2 cores, 24.0 GB; load average 1.25 at start, 3.5 at the end; "
                    "onnxruntime 1.32.0; x.")
    assert "at start" not in setup_line("c", machine, {})


def test_latency_stats_are_ordered():
    st = latency_stats([5.0, 1.0, 3.0, 100.0, 2.0])
    assert st["min"] == 1.0 and st["max"] == 100.0 and st["n"] == 5 and st["p50"] == 3.0
    assert st["p50"] <= st["p90"] <= st["p99"] <= st["max"]
    with pytest.raises(ValueError, match="runs must be >= 1"):
        latency_stats([])


def test_report_has_every_stage_for_both_pipelines(report):
    for side in ("runtime", "baseline"):
        lat = report[side]["latency_ms"]
        assert set(lat) == set(KEYS)
        for k in KEYS:
            st = lat[k]
            assert st["n"] == 2
            assert 0 < st["min"] <= st["p50"] <= st["p90"] <= st["p99"] <= st["max"]
        assert sum(lat[k]["mean"] for k in STAGES) <= lat["total"]["mean"] * 1.001  # stages sit inside the total
        assert report[side]["throughput_images_per_s"] > 0
        assert report[side]["memory"]["peak_rss_mb"] > 0
        assert report[side]["first_call_ms"] > 0 and report[side]["load_ms"] > 0


def test_ratios_and_overhead(report):
    assert set(report["ratios"]) == set(KEYS)
    assert all(r > 0 for r in report["ratios"].values())
    rt = report["runtime"]
    for total, backend, over in zip(rt["samples_ms"]["total"], rt["samples_ms"]["backend"], rt["samples_ms"]["overhead"]):
        assert 0 < backend < total
        assert over == pytest.approx(total - backend)
    assert 0 < rt["overhead"]["pct"]["p50"] < 100


def test_baseline_ran_the_same_computation(report):
    base = report["baseline"]
    assert base["same_weights"] is True
    assert base["parity"]["image_embeds_max_abs_diff"] < 1e-3
    assert base["parity"]["images_max_abs_diff"] <= 2


def test_report_records_machine_and_settings(report):
    assert report["settings"]["image_size"] == 128 and report["settings"]["batch"] == 1
    assert report["machine"]["logical_cores"] >= 1
    assert {"eeg2img-deploy", "numpy", "onnxruntime", "torch"} <= set(report["versions"])
    assert report["runtime"]["artifacts"]["unet"]["precision"] == "fp32"
    assert json.loads(json.dumps(report)) == report  # JSON-able as it stands


def test_print_and_plot(report, tmp_path):
    from PIL import Image
    from rich.console import Console

    console = Console(record=True, width=160)
    print_report(report, console=console)
    text = console.export_text()
    for k in KEYS:
        assert k in text
    assert "torch/runtime" in text and "overhead" in text

    path = plot_report(report, tmp_path / "plot" / "bench.png")
    assert path.stat().st_size > 1024
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
        assert len(np.unique(np.asarray(im.convert("L")))) > 2  # bars drawn, not a blank canvas


def test_runtime_only_and_explicit_eeg(tiny_bundle):
    eeg = np.random.default_rng(1).standard_normal((2, 63, 250), dtype=np.float32)
    rep = run_bench(tiny_bundle, runs=1, warmup=0, prior_steps=2, eeg=eeg)
    assert rep["baseline"] is None and rep["ratios"] is None
    assert rep["settings"]["batch"] == 2
    assert set(rep["runtime"]["latency_ms"]) == set(KEYS)


def test_bad_settings_fail_before_any_work(tiny_bundle):
    with pytest.raises(ValueError, match="runs >= 1"):
        run_bench(tiny_bundle, runs=0)


def test_markdown_and_readme_sections(report, tmp_path):
    from eeg2img_deploy.bench import report_markdown, update_results_readme

    md = report_markdown(report)
    assert md.count("\n") == 6 and "torch / runtime" in md  # header, rule, 4 stages, total
    readme = tmp_path / "README.md"
    readme.write_text("# Results\n\n<!-- other -->\nkeep me\n<!-- /other -->\n")
    update_results_readme(readme, "bench_x", "first")
    update_results_readme(readme, "bench_x", "second")
    text = readme.read_text()
    assert "keep me" in text and "second" in text and "first" not in text
    assert text.count("<!-- bench_x -->") == 1 and text.count("<!-- /bench_x -->") == 1


def test_low_level_benchmark_script_smoke(tiny_dir, tiny_bundle, tmp_path):
    """``benchmarks/bench_low_level_cpu.py --smoke`` on the session's tiny bundle: both modes timed, PSNR written."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "bench_low_level_cpu.py"
    spec = importlib.util.spec_from_file_location("bench_low_level_cpu", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    result = script.main(["--smoke", "--weights", str(tiny_dir), "--bundle", str(tiny_bundle), "--out", str(tmp_path)])
    for mode in ("image", "latent"):
        assert set(result[mode]["runtime"]["latency_ms"]) == {"encoder", "prior", "low_level", "unet", "decoder", "total"}
        assert result[mode]["settings"]["low_level"] == {"strength": 0.5, "mode": mode}
    diff = result["difference"]
    assert len(diff["psnr_image_vs_latent_db"]) == 4 and all(0 < d < 100 for d in diff["psnr_image_vs_latent_db"])
    assert json.loads((tmp_path / "bench_low_level_cpu.json").read_text())["difference"] == diff
    assert "image vs latent mode" in (tmp_path / "README.md").read_text()


def test_prior_graphs_compared_when_the_bundle_has_the_fused_graph(tiny_bundle, report, capsys):
    assert report["runtime"]["prior_graphs"] is None  # 3 prior steps: the bundle has fused graphs for 50 and 10
    assert report["settings"]["prior_graph"] == "stepwise"
    r = run_bench(tiny_bundle, runs=2, warmup=0, prior_steps=10)
    assert r["settings"]["prior_graph"] == "fused"
    both = r["runtime"]["prior_graphs"]
    assert both["steps"] == 10 and set(both["latency_ms"]) == {"fused", "stepwise"}
    assert all(both["latency_ms"][g]["n"] == 2 for g in ("fused", "stepwise"))
    assert both["stepwise_over_fused"] == pytest.approx(
        both["latency_ms"]["stepwise"]["p50"] / both["latency_ms"]["fused"]["p50"])
    assert both["image_embeds_max_abs_diff"] <= 1e-5
    print_report(r)
    assert "stepwise / fused" in capsys.readouterr().out


@pytest.mark.requires_torch
def test_caption_kv_cache_benchmark_smoke(tmp_path):
    """``benchmarks/caption_kv_cache.py --smoke``: both variants built, equal tokens, timed, README section written."""
    pytest.importorskip("onnx")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "caption_kv_cache.py"
    spec = importlib.util.spec_from_file_location("caption_kv_cache", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    result = script.main(["--smoke", "--out", str(tmp_path)])
    r = result["result"]
    assert r["tokens_equal"] and r["logits_max_rel_diff"] <= 1e-4
    assert r["kv_cache"]["median_ms"] > 0 and r["recompute"]["median_ms"] > 0
    assert json.loads((tmp_path / "caption_kv_cache.json").read_text())["result"] == r
    assert "KV cache vs recomputation" in (tmp_path / "README.md").read_text()
