"""Bad inputs to ``infer``: each fails with its own error, naming the fix, and writes no output."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from eeg2img_deploy.cli import cli
from eeg2img_deploy.errors import BackendUnavailableError, EEGInputError, ManifestError
from eeg2img_deploy.manifest import MANIFEST_NAME, read_manifest, write_manifest

SUBJECT = "8"


@pytest.fixture
def eeg_file(tiny_eeg, tmp_path) -> Path:
    path = tmp_path / "eeg.npy"
    np.save(path, tiny_eeg[:1])
    return path


def infer(bundle: Path, eeg: Path, out: Path, *extra: str):
    args = ["infer", "--bundle", str(bundle), "--eeg", str(eeg), "--out", str(out), "--prior-steps", "2", *extra]
    if "--subject" not in extra:
        args += ["--subject", SUBJECT]
    return CliRunner().invoke(cli, args)


def fails(result, error: type[Exception], match: str, out: Path) -> str:
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, error), repr(result.exception)
    message = str(result.exception)
    assert match in message, message
    assert not out.exists(), f"{out} was written although the run failed"
    return message


def _linked_copy(bundle: Path, dst: Path) -> Path:
    """A cheap copy (hard links): only manifest.json is changed, and it is replaced, never written in place."""
    shutil.copytree(bundle, dst, copy_function=os.link)
    return dst


def test_each_bad_eeg_gets_its_own_error(tiny_bundle, tiny_eeg, tmp_path):
    out = tmp_path / "out"
    messages = []
    short = tmp_path / "short.npy"
    np.save(short, tiny_eeg[:2, :, :200])
    messages.append(fails(infer(tiny_bundle, short, out), EEGInputError, "(2, 63, 200)", out))
    nan = tmp_path / "nan.npy"
    bad = tiny_eeg[:2].copy()
    bad[1, 5, 7] = np.nan
    np.save(nan, bad)
    messages.append(fails(infer(tiny_bundle, nan, out), EEGInputError, "1 NaN", out))
    transposed = tmp_path / "transposed.npy"
    np.save(transposed, tiny_eeg[:1].transpose(0, 2, 1))
    messages.append(fails(infer(tiny_bundle, transposed, out), EEGInputError, "transpose", out))
    assert len(set(messages)) == 3


def test_unknown_subject_needs_the_shared_token_flag(tiny_bundle, eeg_file, tmp_path):
    out = tmp_path / "out"
    n = read_manifest(tiny_bundle).bundle.num_subjects
    msg = fails(infer(tiny_bundle, eeg_file, out, "--subject", str(n)), EEGInputError, "--shared-subject-token", out)
    assert f"{n} rows" in msg
    ok = infer(tiny_bundle, eeg_file, out, "--subject", str(n), "--shared-subject-token")
    assert ok.exit_code == 0, ok.output + repr(ok.exception)
    result = json.loads((out / "result.json").read_text())
    assert result["subject_ids"] == [n] and (out / "image_000.png").is_file()


def test_missing_stage(tiny_bundle, eeg_file, tmp_path):
    folder = _linked_copy(tiny_bundle, tmp_path / "no-taesd")
    m = read_manifest(folder)
    write_manifest(folder, m.replace(artifacts=tuple(a for a in m.artifacts if a.stage != "taesd_decoder")))
    out = tmp_path / "out"
    msg = fails(infer(folder, eeg_file, out, "--vae", "tiny"), ManifestError, "lacks stage(s) ['taesd_decoder']", out)
    assert "--taesd" in msg


@pytest.mark.parametrize(
    "change, match",
    [
        ({"format": "something-else"}, "not an eeg2img-deploy manifest"),
        ({"format_version": 99}, "format version 99 is not the supported"),
        ({"backend": "pytorch"}, "malformed"),
    ],
)
def test_foreign_manifest(tiny_bundle, eeg_file, tmp_path, change, match):
    folder = tmp_path / "foreign"
    folder.mkdir()
    data = json.loads((tiny_bundle / MANIFEST_NAME).read_text())
    (folder / MANIFEST_NAME).write_text(json.dumps({**data, **change}))
    out = tmp_path / "out"
    fails(infer(folder, eeg_file, out), ManifestError, match, out)


def test_folder_without_manifest(eeg_file, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    out = tmp_path / "out"
    fails(infer(folder, eeg_file, out), ManifestError, "no manifest.json", out)


def test_tensorrt_backend_on_an_onnx_bundle(tiny_bundle, eeg_file, tmp_path):
    out = tmp_path / "out"
    msg = fails(infer(tiny_bundle, eeg_file, out, "--backend", "tensorrt"), ManifestError, "build-engines", out)
    assert "holds onnx artifacts, not tensorrt" in msg


def test_cuda_device_without_onnxruntime_gpu(tiny_bundle, eeg_file, tmp_path, caplog):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    from eeg2img_deploy.runtime.pipeline import Pipeline

    # the library warns through logging, once per stage session (before the CLI reconfigures logging)
    with caplog.at_level("WARNING", logger="eeg2img_deploy.onnxrt"):
        Pipeline.from_bundle(tiny_bundle, provider="cuda", precision="fp32", allow_cpu_fallback=True).close()
    warnings = [r.getMessage() for r in caplog.records if "RUNNING ON THE CPU" in r.getMessage()]
    assert len(warnings) == 1 and "no CUDA" in warnings[0] and "CUDAExecutionProvider" in warnings[0], warnings

    out = tmp_path / "out"
    msg = fails(infer(tiny_bundle, eeg_file, out, "--provider", "cuda"), BackendUnavailableError, "onnxruntime-gpu", out)
    assert "--provider cpu" in msg and "--allow-cpu-fallback" in msg

    ok = infer(tiny_bundle, eeg_file, out, "--provider", "cuda", "--allow-cpu-fallback")
    assert ok.exit_code == 0, ok.output + repr(ok.exception)
    assert "RUNNING ON THE CPU" in ok.output
    assert (out / "image_000.png").is_file()


def test_tensorrt_ep_gets_the_recorded_options_with_the_cache_in_the_folder(tiny_bundle, monkeypatch):
    """--provider tensorrt on an onnxruntime engine folder: the EP options build-engines recorded reach the
    session, with the cache inside the folder and fp16 only for an fp16 graph."""
    from fakes.fake_onnxruntime import install_fake_onnxruntime

    from eeg2img_deploy.manifest import EngineSettings, OnnxRuntimeSettings, TensorRTEPOptions, read_manifest
    from eeg2img_deploy.runtime import ort_backend, sessions

    seen = {}

    class Spy:
        def __init__(self, path, artifact, **kw):
            seen.update(kw)

    ep = "TensorrtExecutionProvider"
    install_fake_onnxruntime(monkeypatch, available=[ep, "CPUExecutionProvider"])
    monkeypatch.setattr(ort_backend, "OrtStage", Spy)
    m = read_manifest(tiny_bundle)
    recorded = TensorRTEPOptions(trt_fp16_enable=True)  # as folders before 2026-11-29 recorded it
    m = m.replace(engine=EngineSettings(onnxruntime=OnnxRuntimeSettings(ep, "basic", recorded)))
    kw = dict(backend="onnxruntime", precision="fp32", allow_cpu_fallback=False, threads=None)
    sessions.open_sessions(tiny_bundle, m, ["unet"], provider="tensorrt", **kw)
    opts = seen["trt_options"]
    assert opts["trt_engine_cache_path"] == str(tiny_bundle / "trt-ep-cache") and opts["trt_fp16_enable"] is False
    sessions.open_sessions(tiny_bundle, m, ["unet"], provider="cpu", **kw)
    assert seen["trt_options"] is None


def _bad_inputs(eeg: np.ndarray, n: int) -> dict[str, tuple[np.ndarray, object, bool]]:
    """(EEG, subject ids, shared subject token) that the EEG and subject checks refuse, one fault each."""
    nan = eeg[:2].copy()
    nan[1, 5, 7] = np.nan
    return {
        "short": (eeg[:2, :, :200], 8, False),
        "nan": (nan, 8, False),
        "transposed": (eeg[:1].transpose(0, 2, 1), 8, False),
        "float ids": (eeg[:2], np.array([8.0, 8.0]), False),
        "id count": (eeg[:2], np.array([8, 8, 8]), False),
        "2-D ids": (eeg[:2], np.array([[8], [8]]), False),
        "negative id": (eeg[:2], -1, False),
        "past the table": (eeg[:2], n, False),
    }


def test_embed_and_call_refuse_bad_inputs_with_the_same_error(tiny_bundle, tiny_eeg):
    """``embed`` (eval --retrieval) and ``__call__`` (infer) run one input check: same error, same one line."""
    from eeg2img_deploy.runtime.pipeline import Pipeline

    pipe = Pipeline.from_bundle(tiny_bundle, whitening=np.eye(63) * 2.0)
    try:
        for name, (eeg, ids, shared) in _bad_inputs(tiny_eeg, pipe.num_subjects).items():
            with pytest.raises(EEGInputError) as called:
                pipe(eeg, ids, 0, prior_steps=2, shared_subject_token=shared)
            with pytest.raises(EEGInputError) as embedded:
                pipe.embed(eeg, ids, shared_subject_token=shared)
            assert str(called.value) == str(embedded.value), name
            assert "\n" not in str(called.value), (name, str(called.value))
        # ... and the same accepted input gives the same (whitened) embeddings through both
        eeg = tiny_eeg[:2]
        np.testing.assert_array_equal(pipe.embed(eeg, 8), pipe(eeg, 8, 0, prior_steps=2).eeg_embeds)
        plain = Pipeline.from_bundle(tiny_bundle)
        assert np.abs(pipe.embed(eeg, 8) - plain.embed(eeg, 8)).max() > 1e-2  # both whitened, and that moves them
        plain.close()
    finally:
        pipe.close()


def test_options_not_resolved_against_a_bundle_are_refused(tiny_bundle):
    """The knobs a bundle fills in (steps, prior_steps, guidance, ip_scale) are read through ``resolved()``, which
    refuses options that never met a bundle instead of running with None."""
    from eeg2img_deploy.core.options import RunOptions
    from eeg2img_deploy.errors import SettingsError

    with pytest.raises(SettingsError, match=r"RunOptions.resolve\(bundle\)"):
        RunOptions(prior_steps=3).resolved()
    bundle = read_manifest(tiny_bundle).bundle
    resolved = RunOptions(prior_steps=3).resolve(bundle).resolved()
    assert resolved.prior_steps == 3 and resolved.ip_scale == float(bundle.ip_scale)
    assert resolved.steps in bundle.steps and resolved.guidance is not None
