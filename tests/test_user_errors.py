"""What a new user hit (issue 10): bad options end in one line and exit code 2, never in a traceback,
non-finite numbers never reach an image or result.json, and the output folder holds one run."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from support import run_main

from eeg2img_deploy.errors import ManifestError, NonFiniteError, OptionError


@pytest.fixture
def eeg_file(tiny_eeg, tmp_path):
    path = tmp_path / "eeg.npy"
    np.save(path, tiny_eeg[:2])
    return path


def infer_args(bundle, eeg, out, *extra):
    return ["infer", "--bundle", bundle, "--eeg", eeg, "--subject", "8", "--out", out, "--prior-steps", "2", *extra]


# Each of these was a traceback (ValueError, ZeroDivisionError after 7 s of loading) or a silent success.
@pytest.mark.parametrize("command, extra, option", [
    ("infer", ["--prior-steps", "0"], "--prior-steps"),
    ("infer", ["--prior-steps", "-3"], "--prior-steps"),
    ("infer", ["--seed", "-1"], "--seed"),
    ("infer", ["--guidance", "nan"], "--guidance"),
    ("infer", ["--guidance", "inf"], "--guidance"),
    ("infer", ["--ip-scale", "nan"], "--ip-scale"),
    ("infer", ["--threads", "0"], "--threads"),
    ("reference", ["--prior-steps", "0"], "--prior-steps"),
    ("reference", ["--image-size", "100"], "--image-size"),
    ("bench", ["--runs", "0"], "--runs"),
    ("export", ["--image-size", "100"], "--image-size"),
    ("export", ["--max-batch", "0"], "--max-batch"),
    ("build-engines", ["--max-batch", "0"], "--max-batch"),
    ("build-engines", ["--workspace-gb", "nan"], "--workspace-gb"),
])
def test_bad_option_is_one_line_naming_it(monkeypatch, capsys, tmp_path, tiny_dir, tiny_bundle, eeg_file, command,
                                          extra, option):
    out = tmp_path / "out"
    args = {
        "infer": infer_args(tiny_bundle, eeg_file, out),
        "reference": ["reference", "--weights", tiny_dir, "--eeg", eeg_file, "--subject", "8", "--out", out],
        "bench": ["bench", "--bundle", tiny_bundle],
        "export": ["export", "--weights", tiny_dir, "--out", out],
        "build-engines": ["build-engines", "--bundle", tiny_bundle, "--backend", "onnxruntime", "--out", out],
    }[command]
    code, stdout, err = run_main(monkeypatch, capsys, [*args, *extra])
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and option in err, err
    assert "Traceback" not in err and stdout == ""
    assert not out.exists()


def test_library_refuses_the_same_numbers(tiny_bundle, tiny_eeg, reference_pipe):
    from eeg2img_deploy.runtime.pipeline import Pipeline

    pipe = Pipeline.from_bundle(tiny_bundle)
    shared = (({"prior_steps": 0}, "--prior-steps"), ({"guidance": float("nan")}, "--guidance"), ({"seed": -1}, "--seed"))
    for kw, option in (*shared, ({"ip_scale": float("inf")}, "--ip-scale")):
        with pytest.raises(OptionError, match=option):
            pipe(tiny_eeg[:1], 8, **kw)
    for kw, option in (*shared, ({"image_size": 100}, "--image-size")):
        with pytest.raises(OptionError, match=option):
            reference_pipe(tiny_eeg[:1], 8, **{"image_size": 64, **kw})
    with pytest.raises(OptionError, match="--threads"):
        Pipeline.from_bundle(tiny_bundle, threads=0)
    with pytest.raises(OptionError, match="--provider"):
        Pipeline.from_bundle(tiny_bundle, provider="gpu")
    pipe.close()


def test_a_stage_that_makes_nan_is_named_and_nothing_is_written(monkeypatch, capsys, tmp_path, tiny_bundle, eeg_file):
    from eeg2img_deploy.runtime.pipeline import Pipeline

    real = Pipeline.prior

    def nan_prior(self, *a, **k):
        out = real(self, *a, **k)
        out[0, 3] = np.nan
        return out

    monkeypatch.setattr(Pipeline, "prior", nan_prior)
    out = tmp_path / "out"
    code, _, err = run_main(monkeypatch, capsys, infer_args(tiny_bundle, eeg_file, out))
    assert code == 2 and "the prior stage produced 1 non-finite value" in err and "Traceback" not in err
    assert not out.exists()
    pipe = Pipeline.from_bundle(tiny_bundle)
    with pytest.raises(NonFiniteError, match="prior"):
        pipe(np.load(eeg_file), 8, prior_steps=2)


def test_result_json_is_strict_json(tmp_path):
    from types import SimpleNamespace

    from eeg2img_deploy.runtime.images import ImageWriter

    res = SimpleNamespace(images=np.zeros((1, 8, 8, 3), np.uint8), eeg_embeds=np.zeros((1, 4)),
                          image_embeds=np.zeros((1, 4)))
    with pytest.raises(OptionError, match="non-finite"):
        ImageWriter(tmp_path / "out").write(res, {"guidance": float("nan")})
    assert not (tmp_path / "out").exists()


def test_a_used_out_folder_is_refused_or_replaced_whole(monkeypatch, capsys, tmp_path, tiny_bundle, tiny_eeg):
    """Before: a 1-trial run into a folder of a 2-trial run left image_001.png and grid.png of the old run."""
    two, one, out = tmp_path / "two.npy", tmp_path / "one.npy", tmp_path / "out"
    np.save(two, tiny_eeg[:2])
    np.save(one, tiny_eeg[2:3])
    code, stdout, _ = run_main(monkeypatch, capsys, infer_args(tiny_bundle, two, out))
    assert code == 0 and "wrote 2 image(s)" in stdout
    (out / "notes.txt").write_text("mine")
    code, _, err = run_main(monkeypatch, capsys, infer_args(tiny_bundle, one, out))
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "image_001.png").is_file()  # refused: nothing touched
    code, stdout, _ = run_main(monkeypatch, capsys, infer_args(tiny_bundle, one, out, "--overwrite"))
    assert code == 0 and "wrote 1 image(s)" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["image_000.png", "notes.txt", "result.json"]
    assert json.loads((out / "result.json").read_text())["images"] == ["image_000.png"]


def test_tensorrt_on_an_onnxruntime_engine_folder_advises_its_bundle(ort_engines, tiny_bundle):
    from eeg2img_deploy.runtime.pipeline import Pipeline

    folder, _ = ort_engines
    with pytest.raises(ManifestError) as e:
        Pipeline.from_bundle(folder, backend="tensorrt")
    assert f"build-engines --bundle {tiny_bundle} --backend tensorrt" in str(e.value)


def test_build_engines_without_tensorrt_creates_nothing(monkeypatch, capsys, tmp_path, tiny_bundle):
    from fakes import remove_tensorrt

    remove_tensorrt(monkeypatch)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(monkeypatch, capsys, ["build-engines", "--bundle", tiny_bundle])
    assert code == 2 and "TensorRT" in err and len(err.strip().splitlines()) == 1
    assert "builds TensorRT engines unless told otherwise" in err and err.rstrip().endswith("--backend onnxruntime"), err
    assert not (tmp_path / "engines").exists()


def test_an_engine_rebuilt_after_a_change_is_not_called_up_to_date(tiny_bundle, tmp_path, caplog):
    from eeg2img_deploy.engines.build import build_engines

    out = tmp_path / "ort"
    first = build_engines(tiny_bundle, out, backend="onnxruntime", ort_provider="cpu", progress=False, stages=["encoder"])
    path = out / first.artifacts[0].file
    path.write_bytes(path.read_bytes() + b"\0")  # changed on disk
    with caplog.at_level(logging.INFO, logger="eeg2img_deploy.engines.build"):
        build_engines(tiny_bundle, out, backend="onnxruntime", ort_provider="cpu", progress=False, stages=["encoder"])
    messages = [r.getMessage() for r in caplog.records]
    assert any("changed on disk; building it again" in m for m in messages)
    assert not any("up to date" in m for m in messages), messages


def test_plot_bars_and_their_labels_are_one_quantity():
    """Before: bars stacked the stage medians but were labelled with the median of the totals."""
    from eeg2img_deploy.bench.render import stacked_bars

    lat = {"encoder": 1.0, "prior": 10.0, "unet": 20.0, "decoder": 5.0, "total": 50.0}  # total: overhead, spread
    run = {"latency_ms": {k: {"p50": v} for k, v in lat.items()}}
    report = {"settings": {"backend": "onnxruntime", "low_level": None}, "runtime": run, "baseline": run}
    for values, label in stacked_bars(report).values():
        assert sum(values.values()) == 36.0 and label == "36.0 ms"


def test_a_wrapper_with_one_state_dict_loads_and_others_name_their_keys(tmp_path):
    torch = pytest.importorskip("torch")
    from eeg2img_deploy.errors import CheckpointError
    from eeg2img_deploy.models.checkpoints import load_state_dict_file

    state = {"w": torch.ones(2, 2), "b": torch.zeros(2)}
    path = tmp_path / "closed_loop.pth"
    torch.save({"eeg_model_state_dict": state, "epoch": 12, "optimizer": {"lr": 1e-3}}, path)  # the lab's format
    loaded = load_state_dict_file(path)
    assert loaded.keys() == state.keys() and torch.equal(loaded["w"], state["w"])
    torch.save({"epoch": 12, "note": "no weights"}, path)
    with pytest.raises(CheckpointError, match=r"holds no state dict.*'epoch' \(int\), 'note' \(str\)"):
        load_state_dict_file(path)
    torch.save({"a": state, "b": dict(state)}, path)
    with pytest.raises(CheckpointError, match=r"2 \('a', 'b'\), not exactly one"):
        load_state_dict_file(path)
