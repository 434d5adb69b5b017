"""Retrieval against a direct computation: the paper's evaluate_model loop written out, and the deployed
encoder's embeddings ranked by hand; ``eval --retrieval`` as users run it."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from eeg2img_deploy.eval import retrieval
from support import run_main


def _paper_loop(eeg, feats, labels, k, rnd):
    """``Retrieval/ATMS_retrieval.py: evaluate_model``'s inner loop: logits = eeg @ features.T of k sampled
    classes (the true one last), argmax and topk; for k 50/100 a second sample is drawn and its classes name the
    prediction (the true class is last in both)."""
    all_labels = set(range(len(feats)))
    correct = top5 = 0
    for e, label in zip(eeg, labels):
        possible = list(all_labels - {int(label)})
        selected = rnd.sample(possible, k - 1) + [int(label)]
        logits = e @ feats[selected].T
        if k in (50, 100):
            selected = rnd.sample(possible, k - 1) + [int(label)]
        correct += selected[int(np.argmax(logits))] == label
        if k > 5:
            top5 += int(label) in [selected[i] for i in np.argsort(-logits, kind="stable")[:5]]
    return correct / len(labels), top5 / len(labels) if k > 5 else None


def test_k_way_draws_the_papers_distractors():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(120, 16))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)  # the paper's file is L2-normalised
    labels = rng.integers(0, 120, 60)
    eeg = feats[labels] * 3 + rng.normal(0, 2.0, (60, 16))  # unnormalised, as the encoder's output
    ours = retrieval.k_way(retrieval.cosine_scores(eeg, feats), labels, (2, 4, 10, 50, 100), seed=7)
    rnd = random.Random(7)
    for k in (2, 4, 10, 50, 100):  # the paper's order (200 does not fit 120 images: no draw)
        top1, top5 = _paper_loop(eeg, feats, labels, k, rnd)
        assert ours[str(k)]["top1"] == pytest.approx(top1), k
        assert ours[str(k)]["top5"] == (None if top5 is None else pytest.approx(top5)), k
    assert ours["2"]["top1"] > ours["10"]["top1"] > ours["100"]["top1"]  # harder with more distractors


def test_full_set_is_a_direct_ranking():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(30, 8))
    eeg = rng.normal(size=(40, 8))
    labels = rng.integers(0, 30, 40)
    s = retrieval.cosine_scores(eeg, feats)
    direct_rank = [(np.argsort(-row)[:5] == y).nonzero()[0] for row, y in zip(s, labels)]
    res = retrieval.full_set(s, labels)
    assert res["top1"] == np.mean([len(r) > 0 and r[0] == 0 for r in direct_rank])
    assert res["top5"] == np.mean([len(r) > 0 for r in direct_rank])
    perfect = retrieval.full_set(retrieval.cosine_scores(feats, feats), np.arange(30))
    assert perfect == {"top1": 1.0, "top5": 1.0}


def test_labels_and_features_files(tmp_path):
    np.save(tmp_path / "f.npy", np.ones((3, 4), np.float32))
    assert retrieval.read_image_features(tmp_path / "f.npy").shape == (3, 4)
    np.save(tmp_path / "bad.npy", np.ones((3, 4), np.int64))
    with pytest.raises(ValueError, match="--image-features"):
        retrieval.read_image_features(tmp_path / "bad.npy")
    (tmp_path / "text.npy").write_text("0.1 0.2\n")  # it was called "pickled data"
    with pytest.raises(ValueError, match=r"--image-features .*text\.npy is not a \.npy file \(no numpy header\)"):
        retrieval.read_image_features(tmp_path / "text.npy")
    (tmp_path / "labels.txt").write_text("2\n0\n1\n2\n")
    assert retrieval.read_labels(tmp_path / "labels.txt", 4, 3).tolist() == [2, 0, 1, 2]
    with pytest.raises(ValueError, match="image indices must be in 0..1"):
        retrieval.read_labels(tmp_path / "labels.txt", 4, 2)
    with pytest.raises(ValueError, match="--labels FILE"):
        retrieval.read_labels(None, 4, 3)


def test_eval_retrieval_cli_is_the_pipelines_embeddings_ranked(tiny_bundle, tiny_dir, tiny_eeg, tmp_path, monkeypatch, capsys):
    """The deployed encoder's embeddings (the runtime's Pipeline) against eval/image_features.npy, ranked by hand."""
    from eeg2img_deploy.runtime.pipeline import Pipeline

    feats = np.load(tiny_dir / "eval" / "image_features.npy")
    code, out, err = run_main(monkeypatch, capsys, [
        "eval", "--retrieval", "--bundle", tiny_bundle, "--eeg", tiny_dir / "eeg" / "synthetic_eeg.npy", "--subject", 8,
        "--image-features", tiny_dir / "eval" / "image_features.npy", "--out", tmp_path / "r"])
    assert code == 0, err
    res = json.loads((tmp_path / "r" / "metrics.json").read_text())
    pipe = Pipeline.from_bundle(tiny_bundle)
    emb = pipe(tiny_eeg, 8, prior_steps=1).eeg_embeds  # the whole chain's encoder output
    pipe.close()
    s = emb @ (feats / np.linalg.norm(feats, axis=1, keepdims=True)).T / np.linalg.norm(emb, axis=1, keepdims=True)
    assert res["top1"] == np.mean(np.argmax(s, axis=1) == np.arange(len(emb)))
    assert res["top5"] == 1.0  # 4 images: the true one is always in the top 5
    assert set(res["k_way"]) == {"2", "4"} and res["k_way"]["4"]["top1"] == res["top1"]  # 4-way = all 4 images
    assert res["n_trials"] == res["n_images"] == 4 and "| all 4 |" in out
    # the same features computed from the images by the (tiny) IP-Adapter image encoder
    code, _, err = run_main(monkeypatch, capsys, [
        "eval", "--retrieval", "--bundle", tiny_bundle, "--eeg", tiny_dir / "eeg" / "synthetic_eeg.npy", "--subject", 8,
        "--images-dir", tiny_dir / "eval" / "truth", "--image-encoder", tiny_dir / "ip-adapter", "--out", tmp_path / "r2"])
    assert code == 0, err
    res2 = json.loads((tmp_path / "r2" / "metrics.json").read_text())
    assert (res2["top1"], res2["k_way"]) == (res["top1"], res["k_way"])


def test_eval_retrieval_errors_are_one_line(tiny_bundle, tiny_dir, tmp_path, monkeypatch, capsys):
    eeg = tiny_dir / "eeg" / "synthetic_eeg.npy"
    for args, text in [
        (["--retrieval", "--bundle", tiny_bundle, "--out", tmp_path / "o"], "--retrieval needs --eeg, --subject"),
        (["--retrieval", "--bundle", tiny_bundle, "--eeg", eeg, "--subject", 8, "--out", tmp_path / "o"],
         "--image-features F.npy, or --images-dir"),
        (["--retrieval", "--bundle", tiny_bundle, "--eeg", eeg, "--subject", 8, "--out", tmp_path / "o", "--image-features",
          tiny_dir / "eval" / "image_features.npy", "--images", tmp_path], "--images belongs to another mode of eval, not to --retrieval"),
        (["--retrieval", "--sweep", "--out", tmp_path / "o"], "two modes"),
        (["--retrieval", "--bundle", tiny_bundle, "--eeg", eeg, "--subject", 8, "--out", tmp_path / "o", "--image-features",
          tiny_dir / "eval" / "image_features.npy", "--ways", "1,2"], "every k must be >= 2"),
        (["--retrieval", "--bundle", tiny_bundle, "--eeg", eeg, "--subject", 10, "--out", tmp_path / "o", "--image-features",
          tiny_dir / "eval" / "image_features.npy"], "--shared-subject-token"),  # the runtime's own check (Pipeline.embed)
    ]:
        code, _, err = run_main(monkeypatch, capsys, ["eval", *args])
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and text in err, (args, err)
    assert not (tmp_path / "o").exists()
