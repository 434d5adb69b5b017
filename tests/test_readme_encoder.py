"""The README's own-encoder example, exactly as written: its model file, its channel list and its commands
(export -> build-engines -> infer), on the tiny weights; then the runtime against the module.

The commands get speed flags appended (smaller images, fp32, no fused prior graphs): they change how much
is exported, not what the example does.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from support import TEST_IMAGE_SIZE, run_main

README = Path(__file__).resolve().parents[1] / "README.md"
SPEED = {"export": ["--precision", "fp32", "--fused-prior-steps", "none", "--image-size", str(TEST_IMAGE_SIZE)],
         "build-engines": ["--provider", "cpu"], "infer": ["--prior-steps", "10"]}


def readme_block(name: str) -> str:
    """The fenced block right after ``<!-- example: NAME -->`` in the README."""
    match = re.search(rf"<!-- example: {re.escape(name)} -->\n```\w*\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert match, f"README has no example block {name!r}"
    return match.group(1)


@pytest.fixture(scope="module")
def example(tiny_dir, tmp_path_factory):
    """A user's folder: the example's files, the weights it names (the tiny ones it needs), 3 trials."""
    folder = tmp_path_factory.mktemp("readme-encoder")
    (folder / "my_encoder.py").write_text(readme_block("my_encoder.py"), encoding="utf-8")
    (folder / "channels.txt").write_text(readme_block("channels.txt"), encoding="utf-8")
    (folder / "weights").mkdir()
    for part in ("prior", "sdxl-turbo", "ip-adapter"):
        (folder / "weights" / part).symlink_to(tiny_dir / part)
    rng = np.random.default_rng(0)
    np.save(folder / "my_trials.npy", rng.standard_normal((3, 17, 250), dtype=np.float32))
    return folder


@pytest.fixture(scope="module")
def ran(example):
    """Each line of the README's commands block, run in the user's folder; returns {command: exit code}."""
    from eeg2img_deploy import cli

    mp = pytest.MonkeyPatch()
    mp.chdir(example)
    mp.syspath_prepend(str(example))
    results = {}
    for line in readme_block("commands").splitlines():
        argv = shlex.split(line, comments=True)
        if argv[:2] == ["python", "-c"]:
            exec(compile(argv[2], "<README>", "exec"), {})
            continue
        assert argv[0] == "eeg2img-deploy", line
        mp.setattr(sys, "argv", [*argv, *SPEED.get(argv[1], [])])
        try:
            cli.main()
            results[argv[1]] = 0
        except SystemExit as e:
            results[argv[1]] = e.code or 0
    mp.undo()
    return results


def test_the_readme_commands_run(ran, example):
    assert [cmd for cmd in ran] == ["export", "build-engines", "infer"]
    assert all(code == 0 for code in ran.values()), ran
    result = json.loads((example / "out" / "mine" / "result.json").read_text())
    assert result["subject_ids"] == [2, 2, 2] and (example / "out" / "mine" / "image_002.png").is_file()


def test_the_bundle_records_the_factory_and_channels(ran, example):
    from eeg2img_deploy.engines.build import check_for_tensorrt
    from eeg2img_deploy.manifest import EncoderKind, read_manifest

    for folder in (example / "export" / "mine", example / "engines" / "mine"):
        m = read_manifest(folder)
        enc = m.bundle.encoder
        assert enc.kind is EncoderKind.CUSTOM and enc.factory == "my_encoder.py:build" and enc.uses_subject_ids
        assert enc.factory_sha256 == hashlib.sha256((example / "my_encoder.py").read_bytes()).hexdigest()
        assert m.eeg.channels == tuple(readme_block("channels.txt").split()) and m.eeg.n_times == 250
        assert m.bundle.num_subjects == 4
        assert [t.name for t in m.artifact("encoder", "fp32").inputs] == ["eeg", "subject_ids"]
        assert "your model, `--encoder-factory my_encoder.py:build`" in (folder / "README.md").read_text()
    # its graph as TensorRT's ONNX parser would take it (engines/trt_rules.py: operators, types, profile)
    assert not [v.line() for v in check_for_tensorrt(example / "export" / "mine", stages=["encoder"]) if v.blocking]


def test_runtime_embeddings_match_the_module_and_move_with_each_input(ran, example):
    import torch

    from eeg2img_deploy.models.encoders import load_eeg_encoder
    from eeg2img_deploy.runtime.pipeline import Pipeline

    enc = load_eeg_encoder(example / "my_encoder.pth", factory=f"{example / 'my_encoder.py'}:build",
                           channels=example / "channels.txt")
    trials = np.load(example / "my_trials.npy")
    pipe = Pipeline.from_bundle(example / "engines" / "mine")
    try:
        def embed(eeg, ids):
            return pipe.encode(eeg, np.asarray(ids, np.int64))

        got = embed(trials, [2, 2, 2])
        with torch.no_grad():
            want = enc.module(torch.from_numpy(trials), torch.full((3,), 2)).numpy()
        err = np.abs(got - want).max() / np.abs(want).max()
        moved_eeg = np.abs(embed(trials[::-1].copy(), [2, 2, 2]) - got).max() / np.abs(want).max()
        moved_ids = np.abs(embed(trials, [0, 1, 3]) - got).max() / np.abs(want).max()
        print(f"\nREADME encoder: rel. error {err:.2e}; moved by the EEG {moved_eeg:.2e}, by subject ids {moved_ids:.2e}")
        assert err <= 1e-5 and moved_eeg > 100 * 1e-5 and moved_ids > 100 * 1e-5
    finally:
        pipe.close()


def test_a_17_channel_bundle_refuses_63_channel_trials(ran, example, tiny_dir, tmp_path, monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, ["infer", "--bundle", example / "engines" / "mine", "--eeg",
                                                  tiny_dir / "eeg" / "synthetic_eeg.npy", "--subject", 2, "--out",
                                                  tmp_path / "out"])
    assert code == 2 and "has 63 channels" in err and "expected 17 channels" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def served(ran, example):
    """``serve`` on the example's engines (a tritonserver subprocess, stopped after the module)."""
    pytest.importorskip("pytriton")
    pytest.importorskip("tritonclient.http")
    import os

    from eeg2img_deploy.serve.process import ServerProcess
    from eeg2img_deploy.serve.server import missing_stub_libraries, prefer_interpreter_libpython

    env = dict(os.environ)
    prefer_interpreter_libpython(env)
    if missing := missing_stub_libraries(env):
        pytest.skip(f"PyTriton's Python stub cannot load {missing} (no shared libpython)")
    proc = ServerProcess(example / "engines" / "mine", "--threads", "1", log_path=example / "serve.log")
    proc.start()
    yield proc
    proc.stop()


def test_client_reads_the_served_encoders_channels(served, example, monkeypatch, capsys):
    """client with the bundle's --encoder-channels gets infer's images; without it, one line naming the option."""
    common = ["--url", served.url, "--eeg", example / "my_trials.npy", "--subject", 2, *SPEED["infer"]]
    code, _, err = run_main(monkeypatch, capsys, ["client", *common, "--out", example / "out" / "c17"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (example / "out" / "c17").exists()
    assert "reads 17 channels x 250 samples, not the paper's 63 x 250" in err and "--encoder-channels" in err
    code, _, err = run_main(monkeypatch, capsys, ["client", *common, "--encoder-channels", example / "channels.txt",
                                                  "--out", example / "out" / "client"])
    assert code == 0, err
    for name in ("image_000.png", "image_001.png", "image_002.png"):
        assert (example / "out" / "client" / name).read_bytes() == (example / "out" / "mine" / name).read_bytes(), name


def test_stream_and_infer_pick_the_encoders_channels_from_a_recording(ran, example, tmp_path, monkeypatch, capsys):
    """A raw recording with the 17 channels in another order among others: stream (an LSL replay) and infer both
    pick the bundle's channels by name, and give the same images."""
    pytest.importorskip("mne")
    pytest.importorskip("mne_lsl")
    from PIL import Image

    from eeg2img_deploy.eeg.synthetic import write_tiny_recording

    cap = readme_block("channels.txt").split()
    rec = write_tiny_recording(tmp_path / "rec_raw.fif", n_stimuli=3, soa_s=0.3, seed=2,
                               channels=["O1", *cap[::-1], "T7"])
    bundle, common = example / "engines" / "mine", ["--subject", 2, "--seed", 1, "--prior-steps", 3]
    code, _, err = run_main(monkeypatch, capsys, ["stream", "--bundle", bundle, "--replay", rec, "--max-epochs", 3,
                                                  *common, "--out", tmp_path / "stream"])
    assert code == 0, err
    code, _, err = run_main(monkeypatch, capsys, ["infer", "--bundle", bundle, "--eeg", rec, *common,
                                                  "--out", tmp_path / "infer"])
    assert code == 0, err
    online = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "stream").glob("epoch_*.png"))]
    offline = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "infer").glob("image_*.png"))]
    assert len(online) == len(offline) == 3
    for a, b in zip(online, offline):
        np.testing.assert_array_equal(a, b)
    assert np.abs(offline[0].astype(int) - offline[1]).mean() > 1  # the epochs' own images, not one constant
    # Picked by name, not position: the same recording with only the 17 channels, in the bundle's order, gives the
    # same images; its rows in the first recording's order under the bundle's names (a positional pick) do not.
    import mne

    raw = mne.io.read_raw_fif(rec, preload=True, verbose="error").pick(cap).reorder_channels(cap)
    raw.save(tmp_path / "picked_raw.fif", verbose="error")
    misread = mne.io.RawArray(raw.get_data()[::-1], mne.create_info(cap, raw.info["sfreq"], "eeg"), verbose="error")
    misread.set_annotations(raw.annotations)
    misread.save(tmp_path / "misread_raw.fif", verbose="error")
    for name, same in (("picked", True), ("misread", False)):
        code, _, err = run_main(monkeypatch, capsys, ["infer", "--bundle", bundle, "--eeg", tmp_path / f"{name}_raw.fif",
                                                      *common, "--out", tmp_path / name])
        assert code == 0, err
        got = [np.asarray(Image.open(p)) for p in sorted((tmp_path / name).glob("image_*.png"))]
        assert all(np.array_equal(a, b) for a, b in zip(got, offline)) is same, name


def test_bench_baseline_builds_the_users_encoder(ran, example, tmp_path, monkeypatch, capsys):
    """bench --baseline torch on a bundle of one's own encoder takes the export's encoder options; without the
    factory it cannot build the module: one line naming the options, before any timing."""
    base = ["bench", "--bundle", example / "engines" / "mine", "--runs", 1, "--warmup", 0, "--prior-steps", 3,
            "--baseline", "torch", "--weights", example / "weights", "--encoder", example / "my_encoder.pth"]
    code, _, err = run_main(monkeypatch, capsys, base)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "your model (my_encoder.py:build)" in err and "--encoder-factory" in err
    code, _, err = run_main(monkeypatch, capsys, [*base, "--encoder-factory", f"{example / 'my_encoder.py'}:build",
                                                  "--encoder-channels", example / "channels.txt", "--json", tmp_path / "r.json"])
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["baseline"]["same_weights"] is True
    assert report["baseline"]["parity"]["image_embeds_max_abs_diff"] < 1e-4


def test_eval_retrieval_reads_the_bundles_channels(ran, example, tmp_path, monkeypatch, capsys):
    """eval --retrieval on the 17-channel bundle reads the trials with its spec: with the test images' features set
    to the trials' own embeddings every trial finds its image; with those of the trials in another order, none."""
    from eeg2img_deploy.runtime.pipeline import Pipeline

    bundle, trials = example / "engines" / "mine", np.load(example / "my_trials.npy")
    pipe = Pipeline.from_bundle(bundle)
    try:
        own = pipe.embed(trials, 2)
    finally:
        pipe.close()
    for name, feats, top1 in (("own", own, 1.0), ("shifted", np.roll(own, 1, axis=0), 0.0)):
        np.save(tmp_path / f"{name}.npy", feats)
        code, _, err = run_main(monkeypatch, capsys, ["eval", "--retrieval", "--bundle", bundle, "--eeg",
                                                      example / "my_trials.npy", "--subject", 2, "--image-features",
                                                      tmp_path / f"{name}.npy", "--ways", 2, "--out", tmp_path / name])
        assert code == 0, err
        result = json.loads((tmp_path / name / "metrics.json").read_text())
        assert result["n_trials"] == 3 and result["top1"] == top1, (name, result)
