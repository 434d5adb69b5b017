"""build_engines through the fake TensorRT and through onnxruntime: content-addressed, atomic, real numbers."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes import install_fake_gpu, remove_tensorrt
from fakes.fake_tensorrt import read_plan_header
from fakes.onnx_bundle import run_onnx, sample_feeds

from eeg2img_deploy.engines import ort_optimize
from eeg2img_deploy.engines.build import build_engines, default_engine_dir
from eeg2img_deploy.errors import BackendUnavailableError, EngineError, ManifestError
from eeg2img_deploy.fileio import sha256_file
from eeg2img_deploy.manifest import Backend, Precision, Provider, read_manifest


def test_tensorrt_build_writes_engines_and_manifest(onnx_bundle: Path, tmp_path: Path, fake_gpu) -> None:
    out = tmp_path / "engines"
    m = build_engines(onnx_bundle, out, backend="tensorrt", progress=False)
    assert m.backend is Backend.TENSORRT and read_manifest(out) == m
    # fp16 where the bundle has it, else fp32
    assert [(a.stage, a.precision) for a in m.artifacts] == [
        ("encoder", Precision.FP32), ("prior", Precision.FP16), ("unet", Precision.FP16)
    ]  # fmt: skip
    assert m.parent.manifest_sha256 == sha256_file(onnx_bundle / "manifest.json") and m.parent.bundle == "tiny-bundle"
    assert m.parent.folder(out) == onnx_bundle
    assert sha256_file(out / "constants.safetensors") == m.constants_sha256
    prior = m.artifact("prior", "fp16")
    assert prior.file.startswith("prior-fp16-sm89-trt10.3.0-") and prior.engine.compute_capability == "8.9"
    header = read_plan_header(out / prior.file)
    assert header["profiles"] == {"x": [[2, 6], [2, 6], [8, 6]], "t": [[2], [2], [8]]}  # batch2 = 2 x batch
    assert list(out.glob("timing-trt10.3.0-sm89-*.cache")), "the timing cache is persisted per TensorRT + GPU"
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no staging leftovers"


def test_unchanged_rebuild_is_a_noop(onnx_bundle: Path, tmp_path: Path, fake_gpu, caplog) -> None:
    out = tmp_path / "engines"
    first = build_engines(onnx_bundle, out, backend="tensorrt", progress=False)
    stamp = (out / "manifest.json").stat().st_mtime_ns
    built = fake_gpu.plans_built
    with caplog.at_level(logging.INFO, logger="eeg2img_deploy.engines.build"):
        second = build_engines(onnx_bundle, out, backend="tensorrt", progress=False)
    assert second == first and fake_gpu.plans_built == built
    assert (out / "manifest.json").stat().st_mtime_ns == stamp
    assert sum(": up to date (" in r.message for r in caplog.records) == 3


def test_changed_setting_rebuilds_and_removes_the_replaced_engines(onnx_bundle: Path, tmp_path: Path, fake_gpu) -> None:
    out = tmp_path / "engines"
    first = build_engines(onnx_bundle, out, backend="tensorrt", progress=False)
    second = build_engines(onnx_bundle, out, backend="tensorrt", opt_level=4, progress=False)
    assert {a.file for a in first.artifacts}.isdisjoint(a.file for a in second.artifacts)
    assert sorted(p.name for p in out.glob("*.plan")) == sorted(a.file for a in second.artifacts)
    # a corrupted engine is rebuilt even though its key is unchanged
    plan = out / second.artifacts[0].file
    plan.write_bytes(plan.read_bytes() + b"x")
    built = fake_gpu.plans_built
    build_engines(onnx_bundle, out, backend="tensorrt", opt_level=4, progress=False)
    assert fake_gpu.plans_built == built + 1


def test_cancel_leaves_no_plan_and_no_manifest(onnx_bundle: Path, tmp_path: Path, fake_gpu) -> None:
    """TensorRT calls the monitor from its own thread while the caller sits in C++: old code (building on
    the main thread) handled the Ctrl-C only after the build had finished and written its plan."""
    fake_gpu.on_step = lambda step: os.kill(os.getpid(), signal.SIGINT) if step == 1 else None  # Ctrl-C mid-build
    fake_gpu.step_seconds = 0.05
    out = tmp_path / "engines"
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs in a background job
    with pytest.raises(EngineError, match="cancelled"):
        build_engines(onnx_bundle, out, backend="tensorrt", progress=True)
    assert not (out / "manifest.json").exists() and not list(out.glob("*.plan"))
    assert fake_gpu.monitor_threads and "MainThread" not in fake_gpu.monitor_threads
    assert signal.getsignal(signal.SIGINT) is before, "the caller's Ctrl-C handler is restored"


def test_corrupt_timing_cache_is_replaced(onnx_bundle: Path, tmp_path: Path, fake_gpu, caplog) -> None:
    """Old code: create_timing_cache returned None and set_timing_cache(None) raised TypeError."""
    out = tmp_path / "engines"
    out.mkdir()
    cache = out / "timing-trt10.3.0-sm89-nvidia-fake-gpu.cache"
    cache.write_bytes(b"\x00garbage")
    build_engines(onnx_bundle, out, backend="tensorrt", progress=False)
    assert "is not a readable timing cache" in caplog.text
    assert cache.read_bytes().startswith(b"FAKETC1"), "rewritten as a valid cache after the build"


def test_missing_tensorrt_names_the_pip_extra(onnx_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    remove_tensorrt(monkeypatch)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'eeg2img-deploy\[tensorrt-cu12\]'"):
        build_engines(onnx_bundle, tmp_path / "e", backend="tensorrt", progress=False)


def test_no_gpu_fails_before_the_builder(onnx_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    state = install_fake_gpu(monkeypatch, device_count=0)
    with pytest.raises(BackendUnavailableError, match="no CUDA GPU found.*--backend onnxruntime"):
        build_engines(onnx_bundle, tmp_path / "e", backend="tensorrt", progress=False)
    assert "Builder" not in state.names() and state.violations == []


def test_explicit_precision_missing_from_the_bundle_names_the_export(onnx_bundle: Path, tmp_path: Path, fake_gpu) -> None:
    """A stage without fp16 that is not fp32-only (this bundle's encoder): the stage, the fix, no repr, no folder."""
    with pytest.raises(ManifestError) as e:
        build_engines(onnx_bundle, tmp_path / "e", backend="tensorrt", precision="fp16", progress=False)
    assert "holds encoder in fp32 only, not fp16" in str(e.value) and "export ... --precision fp16" in str(e.value)
    assert "<" not in str(e.value) and not (tmp_path / "e").exists()


def test_explicit_fp16_keeps_the_fp32_only_stages_fp32(tiny_bundle: Path, tmp_path: Path, fake_gpu) -> None:
    """``--precision fp16`` on a real bundle builds fp16 where it has it; its fp32-only VAE encoder stays fp32 (the
    builder used to refuse every real bundle: the VAE has no fp16 graph by design)."""
    assert "vae_encoder" in read_manifest(tiny_bundle).bundle.fp32_only_stages
    m = build_engines(tiny_bundle, tmp_path / "trt", backend="tensorrt", precision="fp16",
                      stages=["low_level_encoder", "vae_encoder"], progress=False)
    assert [(a.stage, a.precision) for a in m.artifacts] == [
        ("low_level_encoder", Precision.FP16), ("vae_encoder", Precision.FP32)]


def test_unchanged_rebuild_says_up_to_date(onnx_bundle: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """At the default log level the command says whether it built anything (the table alone looks the same)."""
    from support import run_main

    args = ["build-engines", "--bundle", onnx_bundle, "--out", tmp_path / "e", "--backend", "onnxruntime",
            "--provider", "cpu"]
    code, first, _ = run_main(monkeypatch, capsys, args)
    assert code == 0 and first.count("built in") == 3 and "up to date" not in first
    code, again, _ = run_main(monkeypatch, capsys, args)
    assert code == 0 and again.count(" up to date\n") == 3 and "are up to date: nothing to build" in again


def test_default_engine_dir(tmp_path: Path) -> None:
    assert default_engine_dir(tmp_path / "export" / "paper-sub08") == Path("engines") / "paper-sub08"


# ---- onnxruntime -------------------------------------------------------------------------------------
def test_ort_models_run_and_match_the_bundle(onnx_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "ort"
    m = build_engines(onnx_bundle, out, backend="onnxruntime", ort_provider="cpu", progress=False)
    bundle = read_manifest(onnx_bundle)
    assert m.backend is Backend.ONNXRUNTIME and m.engine.onnxruntime.provider is Provider.CPU
    for a in m.artifacts:
        assert a.precision is Precision.FP32
        feeds = sample_feeds(a, batch=3)
        got = run_onnx(out / a.file, feeds)
        want = run_onnx(onnx_bundle / bundle.artifact(a.stage, a.precision).file, feeds)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)


def test_second_ort_build_is_a_noop(onnx_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "ort"
    first = build_engines(onnx_bundle, out, backend="onnxruntime", ort_provider="cpu", progress=False)
    calls = []
    monkeypatch.setattr(ort_optimize, "optimize_model", lambda *a, **k: calls.append(a))
    assert build_engines(onnx_bundle, out, backend="onnxruntime", ort_provider="cpu", progress=False) == first
    assert calls == []


def test_ort_large_model_keeps_external_data(onnx_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(ort_optimize, "EXTERNAL_INITIALIZER_MIN_BYTES", 64)
    out = tmp_path / "ort"
    m = build_engines(onnx_bundle, out, backend="onnxruntime", ort_provider="cpu", stages=["unet"], progress=False)
    unet = m.artifact("unet", "fp32")
    assert unet.data_file and (out / unet.data_file).is_file()  # the bundle's unet has external data
    feeds = sample_feeds(unet, batch=2)
    want = run_onnx(onnx_bundle / "unet.onnx", feeds)
    np.testing.assert_allclose(run_onnx(out / unet.file, feeds)["noise_pred"], want["noise_pred"], rtol=1e-5, atol=1e-5)


def test_ort_tensorrt_ep_records_its_settings(onnx_bundle: Path, tmp_path: Path) -> None:
    m = build_engines(onnx_bundle, tmp_path / "ort", backend="onnxruntime", ort_provider="tensorrt", progress=False)
    ep = m.engine.onnxruntime.tensorrt_ep
    assert ep.trt_engine_cache_enable and ep.trt_engine_cache_path == "trt-ep-cache"
    assert m.engine.onnxruntime.graph_optimization_level == "basic"


def test_ort_tensorrt_ep_engines_are_built_by_build_engines(onnx_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    """Old code gave the TensorRT EP no profile and no warm-up: its engines were built in the first infer."""
    from fakes.fake_onnxruntime import install_fake_onnxruntime

    ep = "TensorrtExecutionProvider"
    state = install_fake_onnxruntime(monkeypatch, available=[ep, "CPUExecutionProvider"], startable={ep, "CPUExecutionProvider"})
    m = build_engines(onnx_bundle, tmp_path / "ort", backend="onnxruntime", ort_provider="tensorrt", progress=False)
    warmed = [dict(p[1]) for _, providers in state.sessions for p in providers if isinstance(p, tuple) and p[0] == ep]
    assert len(warmed) == len(m.artifacts), "one TensorRT EP session per stage, run once"
    assert {w["trt_profile_max_shapes"] for w in warmed} >= {"x:8x6,t:8", "eeg:4x4x8"}
    assert all(w["trt_engine_cache_path"] == str(tmp_path / "ort" / "trt-ep-cache") for w in warmed)


def test_ort_cuda_saves_models_that_reload_everywhere(onnx_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    """On onnxruntime-gpu (faked), `--provider cuda` used to save the model optimized on the CUDA provider, with the
    Memcpy nodes of its placement: reloading fails ("Failed to find kernel for MemcpyToHost"). Now basic optimizations
    on the CPU provider are saved; the CUDA session applies the rest when it opens the model."""
    import onnx
    from fakes.fake_onnxruntime import install_fake_onnxruntime

    from eeg2img_deploy.runtime.ort_backend import OrtStage

    install_fake_onnxruntime(monkeypatch)
    out = tmp_path / "ort"
    m = build_engines(onnx_bundle, out, backend="onnxruntime", ort_provider="cuda", progress=False)
    assert m.engine.onnxruntime.provider is Provider.CUDA
    assert m.engine.onnxruntime.graph_optimization_level == "basic"
    for a in m.artifacts:
        ops = {n.op_type for n in onnx.load(str(out / a.file), load_external_data=False).graph.node}
        assert not {op for op in ops if op.startswith("Memcpy")}, a.file
        for provider in ("cuda", "cpu"):
            OrtStage(out / a.file, a, provider=provider).close()
    feeds = sample_feeds(m.artifact("unet", "fp32"), batch=2)
    np.testing.assert_allclose(run_onnx(out / m.artifact("unet", "fp32").file, feeds)["noise_pred"],
                               run_onnx(onnx_bundle / "unet.onnx", feeds)["noise_pred"], rtol=1e-5, atol=1e-5)


def test_ort_cuda_without_onnxruntime_gpu_is_a_clear_error(onnx_bundle: Path, tmp_path: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    with pytest.raises(BackendUnavailableError, match=r"eeg2img-deploy\[gpu-cu12\].*\[gpu-cu13\]"):
        build_engines(onnx_bundle, tmp_path / "ort", backend="onnxruntime", ort_provider="cuda", progress=False)


if sys.platform == "win32":  # pragma: no cover - SIGINT to self is POSIX-only
    test_cancel_leaves_no_plan_and_no_manifest = pytest.mark.skip("POSIX only")(test_cancel_leaves_no_plan_and_no_manifest)


def test_tensorrt_builds_the_low_level_stages(tiny_bundle: Path, tmp_path: Path, fake_gpu) -> None:
    """The low-level stages of the real tiny export get engines, profiles from the manifest, fp32 for the VAE."""
    m = build_engines(tiny_bundle, tmp_path / "trt", backend="tensorrt", stages=["low_level_encoder", "vae_encoder"],
                      progress=False)
    assert [(a.stage, a.precision) for a in m.artifacts] == [
        ("low_level_encoder", Precision.FP16), ("vae_encoder", Precision.FP32)
    ]  # fmt: skip
    header = read_plan_header(tmp_path / "trt" / m.artifact("vae_encoder", "fp32").file)
    side = read_manifest(tiny_bundle).bundle.image_size
    assert header["profiles"] == {
        "image": [[1, 3, side, side], [1, 3, side, side], [4, 3, side, side]],
        "noise": [[1, 4, side // 8, side // 8], [1, 4, side // 8, side // 8], [4, 4, side // 8, side // 8]],
    }


def test_tensorrt_builds_one_fused_prior_engine_per_step_count(tiny_bundle: Path, tmp_path: Path, fake_gpu) -> None:
    """The real tiny bundle's fused prior graphs through the fake TensorRT: fp16, profiles from the manifest."""
    out = tmp_path / "engines"
    m = build_engines(tiny_bundle, out, backend="tensorrt", stages=["prior_sampler"], progress=False)
    assert [(a.stage, a.steps, a.precision) for a in m.artifacts] == [
        ("prior_sampler", 50, Precision.FP16), ("prior_sampler", 10, Precision.FP16)]
    assert len({a.file for a in m.artifacts}) == 2
    for a in m.artifacts:
        header = read_plan_header(out / a.file)
        assert header["profiles"]["noise"] == [[1, a.steps, 1024], [1, a.steps, 1024], [4, a.steps, 1024]]
        assert header["profiles"]["guidance"] == [[1], [1], [4]]
    again = build_engines(tiny_bundle, out, backend="tensorrt", stages=["prior_sampler"], progress=False)
    assert again == m  # matched per step count, so nothing is rebuilt
