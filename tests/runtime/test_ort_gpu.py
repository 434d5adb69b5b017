"""The onnxruntime GPU paths against a fake onnxruntime-gpu (real CPU numbers, faked providers and copies):
provider checks, per-stage precision, per-session TensorRT EP options, fallback reporting, I/O binding."""

from __future__ import annotations

import numpy as np
import pytest
from fakes.fake_onnxruntime import install_fake_onnxruntime

from eeg2img_deploy.errors import BackendUnavailableError
from eeg2img_deploy import onnxrt
from eeg2img_deploy.runtime.pipeline import Pipeline

TRT_EP = "TensorrtExecutionProvider"


def _run(folder, eeg, **kw):
    pipe = Pipeline.from_bundle(folder, **kw)
    try:
        return pipe, pipe(eeg, 8, 2, prior_steps=3)
    finally:
        pipe.close()


def _options(state, provider: str) -> dict[str, dict]:
    """stage file -> the options ``provider`` got."""
    out = {}
    for path, providers in state.sessions:
        for p in providers:
            if isinstance(p, tuple) and p[0] == provider:
                out[path.rsplit("/", 1)[-1]] = p[1]
    return out


def test_cuda_on_a_cpu_only_machine_says_no_cuda(ort_engines, monkeypatch) -> None:
    """issue 10 bug 6: an fp32 engine folder with --provider cuda on a CPU-only onnxruntime (old: 'fp16 missing')."""
    folder, _ = ort_engines
    install_fake_onnxruntime(monkeypatch, available=["CPUExecutionProvider"])
    with pytest.raises(BackendUnavailableError, match=r"^no CUDA: .*onnxruntime-gpu"):
        Pipeline.from_bundle(folder, provider="cuda")


def test_both_onnxruntime_packages_installed_is_named(monkeypatch) -> None:
    install_fake_onnxruntime(monkeypatch, available=["CPUExecutionProvider"])
    monkeypatch.setattr(onnxrt, "_installed", lambda dist: True)
    with pytest.raises(BackendUnavailableError, match="both onnxruntime and onnxruntime-gpu are installed"):
        onnxrt.check_provider("cuda", allow_cpu_fallback=False)


def test_cuda_runs_what_an_fp32_engine_folder_holds(ort_engines, tiny_eeg, monkeypatch) -> None:
    """Old code asked for fp16 files build-engines never wrote; now each stage runs what the folder has."""
    folder, manifest = ort_engines
    _, want = _run(folder, tiny_eeg[:2])
    state = install_fake_onnxruntime(monkeypatch)
    pipe, got = _run(folder, tiny_eeg[:2], provider="cuda")
    assert {a.precision.value for a in manifest.artifacts} == {"fp32"}
    np.testing.assert_array_equal(got.images, want.images)
    cuda = _options(state, "CUDAExecutionProvider")
    assert cuda and all(o["cudnn_conv_algo_search"] == "HEURISTIC" for o in cuda.values())


def test_io_binding_uploads_fixed_unet_inputs_once(ort_engines, tiny_eeg, monkeypatch) -> None:
    folder, _ = ort_engines
    state = install_fake_onnxruntime(monkeypatch)
    pipe = Pipeline.from_bundle(folder, provider="cuda")
    try:
        pipe(tiny_eeg[:1], 8, 2, prior_steps=3, steps=4)
    finally:
        pipe.close()
    # encoder 2 in / 1 out; prior 3 steps x (4 in / 1 out); unet 5 fixed inputs once + 4 steps x (2 in / 1 out);
    # decoder 1 in / 1 out (old code: 7 uploads per UNet step)
    assert state.count("H2D") == 2 + 3 * 4 + 5 + 4 * 2 + 1
    assert state.count("D2H") == 1 + 3 + 4 + 1


def test_tensorrt_ep_options_per_session(tiny_bundle, tiny_eeg, monkeypatch) -> None:
    """fp16 only for fp16 graphs without fp32 islands (old: the fp32-only VAE too, and the UNet's timestep
    sinusoids, which the EP's weakly typed network may run in fp16) and the manifest's profile for every session."""
    state = install_fake_onnxruntime(monkeypatch, available=[TRT_EP, "CUDAExecutionProvider", "CPUExecutionProvider"],
                                     startable={TRT_EP, "CUDAExecutionProvider", "CPUExecutionProvider"})  # fmt: skip
    _run(tiny_bundle, tiny_eeg[:1], provider="tensorrt", precision="fp16")
    opts = _options(state, TRT_EP)
    fp16 = {name: o["trt_fp16_enable"] for name, o in opts.items()}
    assert fp16 == {"encoder.fp16.onnx": True, "prior.fp16.onnx": False, "prior_sampler_10.fp16.onnx": False,
                    "prior_sampler_50.fp16.onnx": False, "unet.fp16.onnx": False, "vae_decoder.onnx": False}
    unet = opts["unet.fp16.onnx"]
    assert unet["trt_profile_min_shapes"].startswith("sample:1x4x") and "image_embeds:4x1024" in unet["trt_profile_max_shapes"]
    assert "x:2x1024" in opts["prior.fp16.onnx"]["trt_profile_min_shapes"], "the prior's cond+uncond axis"


def test_tensorrt_ep_falling_back_to_cuda_is_reported_as_cuda(tiny_bundle, tiny_eeg, monkeypatch, caplog) -> None:
    install_fake_onnxruntime(monkeypatch, available=[TRT_EP, "CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(BackendUnavailableError, match=f"could not start {TRT_EP} for encoder; it runs on CUDAExecutionProvider"):
        Pipeline.from_bundle(tiny_bundle, provider="tensorrt")
    Pipeline.from_bundle(tiny_bundle, provider="tensorrt", allow_cpu_fallback=True).close()
    assert "runs on CUDAExecutionProvider" in caplog.text and "RUNNING ON THE CPU" not in caplog.text


def test_cuda_libraries_are_preloaded_once_before_the_first_gpu_session(tiny_bundle, monkeypatch) -> None:
    """onnxruntime.preload_dlls() loads the CUDA/cuDNN wheels of onnxruntime-gpu[cuda,cudnn] (the gpu-cu* extras)."""
    state = install_fake_onnxruntime(monkeypatch)
    monkeypatch.setattr("eeg2img_deploy.onnxrt._PRELOADED", False)
    Pipeline.from_bundle(tiny_bundle, provider="cpu").close()
    assert state.sessions and state.preloads == []  # the CPU needs no CUDA library
    state.sessions.clear()
    Pipeline.from_bundle(tiny_bundle, provider="cuda").close()
    Pipeline.from_bundle(tiny_bundle, provider="cuda").close()
    assert state.preloads == [0] and len(state.sessions) > 1  # once, before the first CUDA session


def test_without_onnxruntime_the_extras_are_named(tiny_bundle, monkeypatch) -> None:
    """The base install has no onnxruntime (the `cpu`/`gpu-cu12`/... extras choose the build): a clear error."""
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(BackendUnavailableError, match=r"eeg2img-deploy\[cpu\]'.*\[gpu-cu12\]' / '\[gpu-cu13\]'"):
        Pipeline.from_bundle(tiny_bundle)


@pytest.mark.parametrize("folder", ["fp32 engines", "bundle"])
def test_io_binding_keeps_the_fused_prior_chain_on_the_device(ort_engines, tiny_bundle, tiny_eeg, monkeypatch,
                                                              folder) -> None:
    """An fp32 engine folder, and a bundle on CUDA (fp16 where it has it, the default): float32 edges chain both."""
    folder, precision = (ort_engines[0], "fp32") if folder == "fp32 engines" else (tiny_bundle, "fp16")
    pipe = Pipeline.from_bundle(folder, precision=precision)
    want = pipe(tiny_eeg[:1], 8, 2, prior_steps=10, steps=4)
    pipe.close()
    state = install_fake_onnxruntime(monkeypatch)
    pipe = Pipeline.from_bundle(folder, provider="cuda")
    try:
        got = pipe(tiny_eeg[:1], 8, 2, prior_steps=10, steps=4)
    finally:
        pipe.close()
    assert got.prior_graph == "fused"
    np.testing.assert_array_equal(got.images, want.images)
    np.testing.assert_array_equal(got.image_embeds, want.image_embeds)
    # encoder 2 up; fused prior: cond bound on the device, noise + guidance up; unet 4 fixed up (image_embeds
    # bound on the device) + 4 x (sample, timestep up / noise_pred down); decoder 1 / 1; embeddings down for Result
    assert (state.count("H2D"), state.count("D2H")) == (2 + 2 + 4 + 4 * 2 + 1, 4 + 1 + 2)


FLOAT_ONLY_OPS = {"Cast", "Constant", "Shape", "Identity", "Reshape", "Unsqueeze", "Squeeze", "Concat", "Gather", "Slice",
                  "Transpose", "Expand", "ConstantOfShape", "Split", "Flatten"}  # move or make values, compute nothing


@pytest.mark.requires_torch
def test_fp16_graphs_with_fp32_islands_stay_out_of_the_tensorrt_eps_fp16(tiny_bundle) -> None:
    """TRT_EP_NO_FP16 against the graphs: a stage whose fp16 graph computes anything in fp32 is in it, and the
    others are not (they then get trt_fp16_enable and lose nothing)."""
    onnx = pytest.importorskip("onnx")
    from eeg2img_deploy.manifest import read_manifest

    islands = {}
    for a in read_manifest(tiny_bundle).artifacts:
        if a.precision.value != "fp16":
            continue
        m = onnx.shape_inference.infer_shapes(onnx.load(str(tiny_bundle / a.file), load_external_data=False))
        fp32 = {vi.name for vi in (*m.graph.value_info, *m.graph.output) if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
        computed = [n.op_type for n in m.graph.node if n.op_type not in FLOAT_ONLY_OPS and set(n.output) & fp32]
        islands[a.stage] = islands.get(a.stage, False) or bool(computed)
    assert {s for s, has in islands.items() if has} == set(onnxrt.TRT_EP_NO_FP16)
