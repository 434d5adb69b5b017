"""``eval --sweep`` on the tiny set: the paper's row as reference, one changed knob beside it, a row the folder
cannot run reported as skipped; one table, one plot, the JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eeg2img_deploy.eval.protocol import METRIC_KEYS
from support import NEEDS_EVAL_ENV, run_main

pytest.importorskip("torchvision", reason=NEEDS_EVAL_ENV)


def test_sweep_rows_metrics_retrieval_latency(ort_engines, tiny_dir, eval_dir, metric_networks, tmp_path, monkeypatch,
                                              capsys):
    """fp32-only engine folder: 'paper' and 'steps-1' run, 'fp16' is skipped with the reason. The metric networks
    are the session's (their loading from --weights is test_metrics' and test_networks' part): half this test's time."""
    from eeg2img_deploy.eval.networks import MetricNetworks

    monkeypatch.setattr(MetricNetworks, "load", classmethod(lambda cls, *a, **kw: metric_networks))
    folder, _ = ort_engines
    code, _, err = run_main(monkeypatch, capsys, [
        "eval", "--sweep", "--bundle", folder, "--eeg", tiny_dir / "eeg" / "synthetic_eeg.npy", "--subject", 8,
        "--truth", eval_dir / "truth", "--weights", eval_dir / "weights", "--image-features", eval_dir / "image_features.npy",
        "--settings", "steps-1,fp16", "--runs", 2, "--out", tmp_path / "s"])
    assert code == 0, err
    data = json.loads((tmp_path / "s" / "sweep.json").read_text())
    rows = {r["name"]: r for r in data["rows"]}
    assert list(rows) == ["paper", "steps-1", "fp16"]
    paper, fast = rows["paper"], rows["steps-1"]
    assert (paper["steps"], paper["prior_steps"], paper["prior_sampler"], paper["vae"], paper["precision"]) == (4, 50, "ddpm",
                                                                                                              "full", "fp32")
    assert "fp16" in rows["fp16"]["skipped"] and "metrics" not in rows["fp16"]
    for r in (paper, fast):
        assert list(r["metrics"]) == list(METRIC_KEYS)
        assert all(np.isfinite(v) for v in r["metrics"].values())
        assert 0 <= r["retrieval"]["top1"] <= 1 and r["retrieval"]["top5"] == 1.0  # 4 images
        assert r["latency_ms"]["total"] > 0 and set(r["latency_ms"]) == {"encoder", "prior", "unet", "decoder", "total"}
    assert paper["psnr_vs_paper_db"] is None and paper["speedup_vs_paper"] == 1.0
    assert fast["psnr_vs_paper_db"] < 40  # one step instead of four moves the images
    assert fast["metrics"] != paper["metrics"]
    assert paper["retrieval"] == fast["retrieval"]  # the encoder does not depend on the image steps
    md = (tmp_path / "s" / "sweep.md").read_text()
    assert md.count("\n| ") == 4 and "| fp16 |" in md and "skipped:" in md and "| paper | ddpm-50 stepwise, 4 step(s)" in md
    assert (tmp_path / "s" / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert data["machine"]["cpu"] and data["versions"]
    code, _, err = run_main(monkeypatch, capsys, ["eval", "--sweep", "--settings", "nope", "--bundle", folder, "--eeg",
                                                 tiny_dir / "eeg" / "synthetic_eeg.npy", "--subject", 8, "--truth",
                                                 eval_dir / "truth", "--weights", eval_dir / "weights", "--out", tmp_path / "x"])
    assert code == 2 and "unknown setting(s) nope; choose from paper, fused-prior" in err and err.count("\n") == 1

