"""The eight metrics end to end: identical sets at the ceiling, shuffled truth towards chance, and
``eval`` as users run it (files, pairing, one-line errors)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from eeg2img_deploy.eval.protocol import METRIC_KEYS
from support import NEEDS_EVAL_ENV, run_main

pytest.importorskip("torchvision", reason=NEEDS_EVAL_ENV)


def test_shuffled_truth_drops_towards_chance(tiny_truth):
    """Each reconstruction paired with another image's truth (a derangement of the 4): every score leaves its
    ceiling by far more than float noise, the two-way scores fall to chance (0.5) or below (the image's own
    truth is now among the others)."""
    from eeg2img_deploy.eval import scores
    from eeg2img_deploy.eval.metrics import score_features

    perm = [1, 2, 3, 0]
    two_way = score_features({k: v[perm] for k, v in tiny_truth.features.items()}, tiny_truth.features)
    for k in ("alexnet2", "alexnet5", "inception", "clip"):
        assert two_way[k] <= 0.5 + 1e-9, (k, two_way[k])
    assert two_way["effnet"] > 0.01 and two_way["swav"] > 1e-4
    assert scores.pixcorr(tiny_truth.pixels[perm], tiny_truth.pixels) < 0.5
    assert scores.ssim(tiny_truth.pixels[perm], tiny_truth.pixels) < 0.6


def test_identical_sets_score_at_the_ceiling_through_the_cli(eval_dir, tmp_path, monkeypatch, capsys):
    """``eval`` as users run it, on a reconstruction folder as infer writes it (result.json order) holding the
    truth's own images: two-way 1.0, PixCorr and SSIM 1.0, distances 0; metrics.json and metrics.md."""
    images = tmp_path / "images"
    images.mkdir()
    truth = sorted((eval_dir / "truth").iterdir())
    names = [f"image_{i:03d}.png" for i in range(len(truth))]
    for src, name in zip(truth, names):
        shutil.copy(src, images / name)
    shutil.copy(truth[0], images / "grid.png")  # infer's mosaic is never an image of the set
    (images / "result.json").write_text(json.dumps({"images": [*names, "grid.png"]}))
    code, out, err = run_main(monkeypatch, capsys, ["eval", "--images", images, "--truth", eval_dir / "truth",
                                                   "--weights", eval_dir / "weights", "--out", tmp_path / "out"])
    assert code == 0, err
    assert err == ""  # no third-party notes, no progress bars
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["n"] == 4 and m["pairing"]["images_order"] == "result.json order"
    assert m["pairing"]["truth_order"] == "sorted file names" and m["pairing"]["truth_size"] == 500
    assert list(m)[:8] == list(METRIC_KEYS)
    for k in ("pixcorr", "ssim", "alexnet2", "alexnet5", "inception", "clip"):
        assert m[k] == pytest.approx(1.0, abs=1e-9), k
    assert m["effnet"] == pytest.approx(0.0, abs=1e-9) and m["swav"] == pytest.approx(0.0, abs=1e-9)
    assert set(m["weights_sha256"]) == {"alexnet", "inception", "effnet", "swav", "clip"}
    assert m["protocol"]["inception"] == {"network": "inception", "node": "avgpool", "size": 342, "normalize": "imagenet",
                                          "score": "two-way identification"}
    md = (tmp_path / "out" / "metrics.md").read_text()
    assert "| SwAV ↓ | 0.0000 | 0.582 |" in md and "PixCorr ↑" in out
    # the same folder again is refused (nothing overwritten) unless --overwrite
    code, _, err = run_main(monkeypatch, capsys, ["eval", "--images", images, "--truth", eval_dir / "truth",
                                                 "--weights", eval_dir / "weights", "--out", tmp_path / "out"])
    assert code == 2 and err.count("\n") == 1 and "--overwrite" in err


def _bad(monkeypatch, capsys, args) -> str:
    code, _, err = run_main(monkeypatch, capsys, ["eval", *args])
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_pairing_errors_are_one_line(eval_dir, tmp_path, monkeypatch, capsys):
    from PIL import Image

    three = tmp_path / "three"
    three.mkdir()
    for p in sorted((eval_dir / "truth").iterdir())[:3]:
        shutil.copy(p, three / p.name)
    common = ["--truth", eval_dir / "truth", "--weights", eval_dir / "weights", "--out", tmp_path / "o"]
    assert "--images has 3 image(s)" in _bad(monkeypatch, capsys, ["--images", three, *common])
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(three / "zz.png")
    assert "one size per set" in _bad(monkeypatch, capsys, ["--images", three, *common])
    (three / "zz.png").unlink()
    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(three / "zz.png")
    assert "not square" in _bad(monkeypatch, capsys, ["--images", three, *common])
    assert "need --truth" in _bad(monkeypatch, capsys, ["--images", three, "--weights", eval_dir, "--out", tmp_path / "o"])
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _bad(monkeypatch, capsys, ["--images", eval_dir / "truth", "--truth", eval_dir / "truth", "--weights", empty,
                                     "--out", tmp_path / "o"])
    assert "alexnet-owt-7be5be79.pth" in err and "https://download.pytorch.org/models/" in err
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_init_tiny_eval_set(tiny_dir, eval_dir, tiny_eeg):
    from eeg2img_deploy.eval.protocol import WEIGHTS
    from eeg2img_deploy.eval.retrieval import IMAGE_ENCODER_SUBFOLDER, image_features_from_images
    from eeg2img_deploy.tiny_eval import truth_images

    truth = sorted((eval_dir / "truth").iterdir())
    assert len(truth) == len(tiny_eeg)  # one image per tiny EEG trial, in trial order
    assert sorted(p.name for p in (eval_dir / "weights").iterdir()) == sorted(w.name for w in WEIGHTS.values())
    feats = np.load(eval_dir / "image_features.npy")
    assert feats.shape == (len(tiny_eeg), 1024)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)
    again = image_features_from_images(truth_images(len(tiny_eeg), 0), tiny_dir / "ip-adapter" / IMAGE_ENCODER_SUBFOLDER)
    np.testing.assert_allclose(again, feats, atol=1e-6)
