"""`benchmarks/stream_soak.py --minutes 0.2`: the soak's whole path for a few seconds (a smoke test, not a result)."""

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("mne_lsl")

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_soak_smoke(tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import stream_soak

    out = tmp_path / "results"
    code = stream_soak.main(["--minutes", "0.1", "--prior-steps", "3", "--bundle", str(tiny_bundle),
                             "--work", str(tmp_path / "work"), "--out", str(out)])
    report = json.loads((out / "stream_soak.json").read_text())
    r = report["result"]
    assert code == 0, r
    assert r["stimuli"] == 30 and 0 < r["epochs"] <= 30 and r["epochs"] + r["dropped"] == 30
    assert r["latency_ms"]["from_stimulus"]["p50"] > r["latency_ms"]["from_window_end"]["p50"] > 0
    by_batch = r["window_end_latency_by_batch_size"]
    assert sum(v["epochs"] for v in by_batch.values()) == r["epochs"]
    for v in by_batch.values():  # the parts add up to the whole (medians of parts: roughly)
        assert v["from_window_end"]["p99"] >= v["from_window_end"]["p50"] > 0
        assert v["window_end_to_cut"]["p50"] > 0 and v["cut_to_image"]["p50"] > 0 and v["image_to_written"]["p50"] > 0
    assert "| batch size | epochs | window end -> image p50 |" in (out / "README.md").read_text()
    assert r["rss_mb"]["first"] > 50 and len(r["samples"]) >= 3
    assert "## Live stream soak" in (out / "README.md").read_text()
    sys.modules.pop("stream_soak", None)
