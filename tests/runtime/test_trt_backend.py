"""TensorRTStage against the fake TensorRT + CUDA: parity with onnxruntime, refusals before deserializing,
and the fake's own enforcement of the API's preconditions."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest


from fakes import install_fake_gpu, remove_tensorrt
from fakes.onnx_bundle import run_onnx, sample_feeds, write_tiny_bundle

from eeg2img_deploy.engines.build import build_engines
from eeg2img_deploy.errors import BackendUnavailableError, EngineError
from eeg2img_deploy.manifest import read_manifest
from eeg2img_deploy.runtime.trt_backend import open_tensorrt_stage


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny bundle and its engines, built once with a fake TensorRT 10.3 on an sm_89 GPU."""
    root = tmp_path_factory.mktemp("trt")
    write_tiny_bundle(root / "tiny-bundle")
    mp = pytest.MonkeyPatch()
    try:
        state = install_fake_gpu(mp)
        build_engines(root / "tiny-bundle", root / "engines", backend="tensorrt", progress=False)
        assert state.violations == []
    finally:
        mp.undo()
    return root / "tiny-bundle", root / "engines"


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch):
    state = install_fake_gpu(monkeypatch)
    yield state
    assert state.violations == [], f"TensorRT/CUDA API preconditions broken: {state.violations}"


def _open(engine_dir: Path, stage: str, **kw):
    m = read_manifest(engine_dir)
    a = next(x for x in m.artifacts if x.stage == stage)
    return a, open_tensorrt_stage(engine_dir, a, bundle_hint="export/tiny-bundle", **kw)


def _want(bundle_dir: Path, a, feeds) -> dict[str, np.ndarray]:
    return run_onnx(bundle_dir / read_manifest(bundle_dir).artifact(a.stage, a.precision).file, feeds)


@pytest.mark.parametrize("stage", ["encoder", "prior", "unet"])
def test_engine_outputs_equal_onnxruntime(engines, fake_gpu, stage: str) -> None:
    bundle_dir, engine_dir = engines
    a, s = _open(engine_dir, stage)
    with s:
        assert s.inputs == a.inputs and s.outputs == a.outputs
        allocated = len([c for c in fake_gpu.gpu.calls if c[0] == "cudaMalloc"])
        for batch in (1, 3, 2):  # grow, then shrink
            feeds = sample_feeds(a, batch=batch, seed=batch)
            got, want = s.run(feeds), _want(bundle_dir, a, feeds)
            for name in want:
                assert got[name].dtype == want[name].dtype
                np.testing.assert_array_equal(got[name], want[name])
    names = fake_gpu.gpu.names()
    assert allocated == names.count("cudaMalloc") == names.count("cudaMallocHost") == len(a.inputs + a.outputs), (
        "one device and one pinned buffer per tensor, at the profile's largest shape, before the first run"
    )
    assert all(c.pinned for c in fake_gpu.gpu.copies), "every host copy goes through pinned memory"
    assert not fake_gpu.gpu.allocations and not fake_gpu.gpu.pinned and not fake_gpu.gpu.streams, "close() frees all"


def test_cuda_graph_per_shape_recaptured_after_a_shape_change(engines, fake_gpu) -> None:
    """Old code replayed the batch-2 graph after an eager batch-1 run: the fake refuses that."""
    bundle_dir, engine_dir = engines
    a, s = _open(engine_dir, "unet", cuda_graph=True)
    batches = (2, 2, 2, 1, 2, 2, 2)
    with s:
        for i, b in enumerate(batches):
            feeds = sample_feeds(a, batch=b, seed=i)
            np.testing.assert_array_equal(s.run(feeds)["noise_pred"], _want(bundle_dir, a, feeds)["noise_pred"])
    names = fake_gpu.gpu.names()
    assert fake_gpu.gpu.kernel_launches == len(batches)
    # eager 2, capture 2, replay 2, eager 1, eager 2 (the old graph is stale), capture 2, replay 2
    assert names.count("cudaStreamBeginCapture") == 2 and names.count("cudaGraphLaunch") == 4
    assert fake_gpu.names().count("IExecutionContext.execute_async_v3") == 5


def test_failed_capture_reruns_the_work_eagerly(engines, fake_gpu, caplog) -> None:
    """The failed capture's CUDA error is cleared (as trtexec does); old code left it pending, and TensorRT's
    next launch check reported it: the eager rerun failed."""
    bundle_dir, engine_dir = engines
    fake_gpu.gpu.fail_captures = True
    a, s = _open(engine_dir, "unet", cuda_graph=True)
    with s:
        for i in range(3):
            feeds = sample_feeds(a, batch=2, seed=i)
            np.testing.assert_array_equal(s.run(feeds)["noise_pred"], _want(bundle_dir, a, feeds)["noise_pred"])
    assert fake_gpu.gpu.names().count("cudaStreamBeginCapture") == 1, "one failed capture, then eager only"
    assert fake_gpu.gpu.kernel_launches == 3 and "CUDA graph capture failed" in caplog.text
    assert fake_gpu.gpu.names().count("cudaGetLastError") == 1 and fake_gpu.gpu.last_error == 0


def test_static_profile_pads_a_partial_chunk(tmp_path, fake_gpu) -> None:
    """A static profile (min = max = 3) runs batches 1 and 2 by padding; old code: set_input_shape failed."""
    write_tiny_bundle(tmp_path / "b")
    build_engines(tmp_path / "b", tmp_path / "e", backend="tensorrt", preset="jetson-orin", max_batch=3, progress=False)
    for stage in ("encoder", "prior", "unet"):
        a, s = _open(tmp_path / "e", stage)
        with s:
            for b in (1, 2, 3):
                feeds = sample_feeds(a, batch=b, seed=b)
                got, want = s.run(feeds), _want(tmp_path / "b", a, feeds)
                for name in want:
                    assert got[name].shape == want[name].shape
                    np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6)
    shapes = {c[1][1] for c in fake_gpu.calls if c[0] == "IExecutionContext.set_input_shape" and c[1][0] == "x"}
    assert shapes == {(6, 6)}, "the prior's batch2 axis is padded to 2 x 3 rows"


def test_outputs_stay_on_the_device_between_stages(tmp_path, fake_gpu) -> None:
    """encoder -> unet with the embedding on the device: one copy per host input and output, none between."""
    bundle_dir, engine_dir = tmp_path / "b", tmp_path / "e"
    write_tiny_bundle(bundle_dir)
    build_engines(bundle_dir, engine_dir, backend="tensorrt", precision="fp32", progress=False)
    fake_gpu.gpu.copies.clear()
    a_enc, enc = _open(engine_dir, "encoder")
    a_unet, unet = _open(engine_dir, "unet", stream=enc.stream)
    feeds = sample_feeds(a_enc, batch=2, seed=1)
    latents = sample_feeds(a_unet, batch=2, seed=2)["latents"]
    with enc, unet:
        emb = enc.run(feeds, keep_on_device=("eeg_embeds",))["eeg_embeds"]
        assert fake_gpu.gpu.kernel_launches == 0, "nothing has run yet: the work is queued on the stream"
        got = unet.run({"latents": latents, "embeds": emb})["noise_pred"]
        assert fake_gpu.gpu.names().count("cudaStreamSynchronize") == 1, "one sync, for the result"
        gpu = fake_gpu.gpu
        counts = (gpu.count("H2D"), gpu.count("D2D"), gpu.count("D2H"))
        emb_host = enc.to_host(enc.run(feeds, keep_on_device=("eeg_embeds",))["eeg_embeds"])
    want_emb = _want(bundle_dir, a_enc, feeds)["eeg_embeds"]
    want = _want(bundle_dir, a_unet, {"latents": latents, "embeds": want_emb})["noise_pred"]
    np.testing.assert_array_equal(got, want)
    assert counts == (2, 1, 1)
    np.testing.assert_array_equal(emb_host, want_emb)


@pytest.mark.parametrize(("version", "cc"), [("11.4.0.106", (8, 9)), ("10.3.0", (8, 7))])
def test_engine_for_another_tensorrt_or_gpu_is_refused_before_deserializing(engines, monkeypatch, version, cc) -> None:
    _, engine_dir = engines
    state = install_fake_gpu(monkeypatch, version=version, compute_capability=cc)
    a = read_manifest(engine_dir).artifact("unet", "fp16")
    with pytest.raises(EngineError) as e:
        open_tensorrt_stage(engine_dir, a, bundle_hint="export/tiny-bundle")
    msg = str(e.value)
    assert "built for TensorRT 10.3.0 / sm_89" in msg and f"this machine has TensorRT {version}" in msg
    assert "eeg2img-deploy build-engines --bundle export/tiny-bundle --backend tensorrt" in msg
    assert "Runtime.deserialize_cuda_engine" not in state.names() and "Runtime" not in state.names()


def test_no_gpu_is_a_clear_error_before_the_runtime(engines, monkeypatch) -> None:
    _, engine_dir = engines
    state = install_fake_gpu(monkeypatch, device_count=0)
    with pytest.raises(BackendUnavailableError, match="no CUDA GPU found"):
        open_tensorrt_stage(engine_dir, read_manifest(engine_dir).artifact("encoder", "fp32"))
    assert "Runtime" not in state.names() and state.violations == []


def test_old_driver_is_reported_as_such(engines, monkeypatch) -> None:
    _, engine_dir = engines
    state = install_fake_gpu(monkeypatch, driver_too_old=True)
    with pytest.raises(BackendUnavailableError, match=r"driver is too old.*supports CUDA 12\.2, they need CUDA 13\.0.*tensorrt-cu12") as e:
        open_tensorrt_stage(engine_dir, read_manifest(engine_dir).artifact("encoder", "fp32"))
    assert "no CUDA GPU" not in str(e.value) and state.violations == []


def test_no_driver_is_no_gpu_not_an_old_driver(engines, monkeypatch) -> None:
    """Without any NVIDIA driver the CUDA runtime also returns cudaErrorInsufficientDriver (checked against the
    real cuda-bindings 12.9 and 13.5 on a machine without a driver); old code said "driver too old"."""
    _, engine_dir = engines
    state = install_fake_gpu(monkeypatch, no_driver=True)
    with pytest.raises(BackendUnavailableError, match=r"no CUDA GPU found \(.*no NVIDIA driver.*--backend onnxruntime") as e:
        open_tensorrt_stage(engine_dir, read_manifest(engine_dir).artifact("encoder", "fp32"))
    assert "too old" not in str(e.value) and "Runtime" not in state.names() and state.violations == []


def test_missing_tensorrt_names_the_pip_extra(engines, monkeypatch) -> None:
    _, engine_dir = engines
    remove_tensorrt(monkeypatch)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'eeg2img-deploy\[tensorrt-cu12\]'"):
        open_tensorrt_stage(engine_dir, read_manifest(engine_dir).artifact("encoder", "fp32"))


def test_shape_outside_the_profile_is_a_clear_error(engines, fake_gpu) -> None:
    _, engine_dir = engines
    a = read_manifest(engine_dir).artifact("encoder", "fp32")
    with open_tensorrt_stage(engine_dir, a) as s, pytest.raises(EngineError, match="outside the engine's profile.*--max-batch"):
        s.run(sample_feeds(a, batch=5))


def test_inputs_with_two_batch_sizes_are_an_engine_error(engines, fake_gpu) -> None:
    """The real binding raises RuntimeError from infer_shapes (old code let it out as a traceback)."""
    _, engine_dir = engines
    a = read_manifest(engine_dir).artifact("unet", "fp16")
    feeds = {**sample_feeds(a, batch=2), "embeds": sample_feeds(a, batch=3)["embeds"]}
    with open_tensorrt_stage(engine_dir, a) as s, pytest.raises(EngineError, match=r"unet: TensorRT cannot run .*'batch' is 2"):
        s.run(feeds)


# ---- the fake itself catches API misuse (so a runtime bug of that kind fails the tests) ------------------
def _engine_and_context(engine_dir: Path, trt):
    a = read_manifest(engine_dir).artifact("encoder", "fp32")
    runtime = trt.Runtime(trt.Logger())
    engine = runtime.deserialize_cuda_engine((engine_dir / a.file).read_bytes())
    return engine, engine.create_execution_context()


def test_fake_rejects_execute_before_input_shapes_are_set(engines, monkeypatch) -> None:
    _, engine_dir = engines
    state = install_fake_gpu(monkeypatch)
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    engine, context = _engine_and_context(engine_dir, trt)
    _, stream = cudart.cudaStreamCreate()
    for i in range(engine.num_io_tensors):
        _, ptr = cudart.cudaMalloc(1 << 10)
        context.set_tensor_address(engine.get_tensor_name(i), ptr)
    assert context.execute_async_v3(stream.getPtr()) is False
    assert any("input shapes not set" in v for v in state.violations)


def test_fake_rejects_unbound_or_too_small_buffers_and_bad_profiles(engines, monkeypatch) -> None:
    _, engine_dir = engines
    state = install_fake_gpu(monkeypatch)
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    _, context = _engine_and_context(engine_dir, trt)
    _, stream = cudart.cudaStreamCreate()
    assert context.set_input_shape("eeg", (9, 4, 8)) is False  # the profile stops at batch 4
    assert context.set_input_shape("eeg", (2, 4, 8))
    assert context.execute_async_v3(stream.getPtr()) is False  # no addresses bound
    _, small = cudart.cudaMalloc(8)
    assert small % 256 == 0 and context.set_tensor_address("eeg", small + 4) is False  # TensorRT needs 256-byte alignment
    for name in ("eeg", "eeg_embeds"):
        context.set_tensor_address(name, small)
    assert context.execute_async_v3(stream.getPtr()) is False  # buffers too small
    profile = trt.Builder(state.logger).create_optimization_profile()  # the process's one logger
    profile.set_shape("eeg", (2, 4, 8), (1, 4, 8), (4, 4, 8))  # min > opt
    assert len(state.violations) == 3 and "min <= opt <= max" in state.violations[-1]


def test_fake_is_asynchronous_and_tells_pinned_from_pageable(monkeypatch) -> None:
    """A download into pinned memory is there only after the sync; a pageable one drains the stream;
    pageable copies, allocations and syncs invalidate a capture; a failed capture runs nothing."""
    state = install_fake_gpu(monkeypatch).gpu
    from cuda.bindings import runtime as cudart

    k = cudart.cudaMemcpyKind
    _, stream = cudart.cudaStreamCreate()
    _, dev = cudart.cudaMalloc(16)
    _, pinned = cudart.cudaMallocHost(16)
    src = np.arange(4, dtype=np.float32)
    host = np.frombuffer((ctypes.c_char * 16).from_address(pinned), np.float32)
    cudart.cudaMemcpyAsync(dev, src.ctypes.data, 16, k.cudaMemcpyHostToDevice, stream)
    cudart.cudaMemcpyAsync(pinned, dev, 16, k.cudaMemcpyDeviceToHost, stream)
    assert not host.any(), "before the sync the pinned buffer still has its old contents"
    cudart.cudaStreamSynchronize(stream)
    np.testing.assert_array_equal(host, src)
    page = np.zeros(4, np.float32)
    cudart.cudaMemcpyAsync(page.ctypes.data, dev, 16, k.cudaMemcpyDeviceToHost, stream)
    np.testing.assert_array_equal(page, src)  # pageable download: synchronous
    assert [c.pinned for c in state.copies] == [False, True, False]
    cudart.cudaStreamBeginCapture(stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)
    assert cudart.cudaMalloc(8)[0] != 0
    assert cudart.cudaStreamEndCapture(stream)[1] is None
    state.violations.clear()
    state.fail_captures = True
    cudart.cudaStreamBeginCapture(stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)
    cudart.cudaMemcpyAsync(pinned, dev, 16, k.cudaMemcpyDeviceToHost, stream)
    err, graph = cudart.cudaStreamEndCapture(stream)
    assert err == cudart.cudaError_t.cudaErrorStreamCaptureInvalidated and graph is None
    int(stream)
    assert state.violations and "deprecated" in state.violations[-1]


def test_fake_11x_has_no_fp16_flag_and_strongly_typed_rejects_precision_flags(tmp_path, monkeypatch) -> None:
    write_tiny_bundle(tmp_path / "b")
    state = install_fake_gpu(monkeypatch, version="11.4.0.106")
    import tensorrt as trt

    assert not hasattr(trt.BuilderFlag, "FP16") and not hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
    state10 = install_fake_gpu(monkeypatch, version="10.3.0")
    import tensorrt as trt10

    logger = trt10.Logger()
    builder = trt10.Builder(logger)
    network = builder.create_network(1 << int(trt10.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    assert trt10.OnnxParser(network, logger).parse_from_file(str(tmp_path / "b" / "encoder.onnx"))
    config = builder.create_builder_config()
    config.set_flag(trt10.BuilderFlag.FP16)
    assert builder.build_serialized_network(network, config) is None
    assert any("strongly typed" in v for v in state10.violations) and state.violations == []


def test_a_closed_stage_refuses_to_run(engines, fake_gpu) -> None:
    """A run after close() is one EngineError naming the stage (it was a KeyError from the freed buffers), and closing
    twice is harmless."""
    _, engine_dir = engines
    a, s = _open(engine_dir, "encoder")
    feeds = sample_feeds(a, batch=1)
    s.run(feeds)
    s.close()
    with pytest.raises(EngineError, match="encoder: this TensorRT stage is closed"):
        s.run(feeds)
    s.close()
