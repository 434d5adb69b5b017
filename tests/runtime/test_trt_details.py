"""TensorRT builder and runtime details, each against a fake that enforces the real rule: TF32 off for fp32
engines, one TensorRT logger per process, a non-blocking shared stream, no set_input_shape/infer_shapes when
the shapes did not change, no CUDA graph capture of weight-streaming engines."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import install_fake_gpu
from fakes.fake_tensorrt import read_plan_header
from fakes.onnx_bundle import run_onnx, sample_feeds, write_tiny_bundle

from eeg2img_deploy.cards import render_card
from eeg2img_deploy.engines.build import build_engines
from eeg2img_deploy.gpu import trt_logger
from eeg2img_deploy.manifest import read_manifest
from eeg2img_deploy.runtime.trt_backend import open_tensorrt_stage


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch):
    state = install_fake_gpu(monkeypatch)
    yield state
    assert state.violations == [], f"TensorRT/CUDA API preconditions broken: {state.violations}"


@pytest.fixture
def folders(tmp_path, fake_gpu):
    write_tiny_bundle(tmp_path / "b")
    build_engines(tmp_path / "b", tmp_path / "e", backend="tensorrt", progress=False)
    return tmp_path / "b", tmp_path / "e"


def _open(engine_dir, stage, **kw):
    a = next(x for x in read_manifest(engine_dir).artifacts if x.stage == stage)
    return a, open_tensorrt_stage(engine_dir, a, **kw)


def _check(bundle_dir, a, feeds, got) -> None:
    want = run_onnx(bundle_dir / read_manifest(bundle_dir).artifact(a.stage, a.precision).file, feeds)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_fp32_engines_are_built_without_tf32(folders) -> None:
    """TensorRT enables TF32 by default: an "fp32" engine would do TF32 matmuls. Cleared for fp32 artifacts,
    recorded in the engine key (a change rebuilds) and the folder's card."""
    _, engine_dir = folders
    m = read_manifest(engine_dir)
    tf32 = {a.label(): read_plan_header(engine_dir / a.file)["tf32"] for a in m.artifacts}
    assert tf32 == {"encoder/fp32": False, "prior/fp16": True, "unet/fp16": True}
    assert {a.label(): a.engine.key.tensorrt.tf32 for a in m.artifacts} == tf32
    assert "TF32 (`BuilderFlag.TF32`): off for encoder/fp32 (fp32 engines compute in fp32); on for prior/fp16, unet/fp16" in render_card(engine_dir, m)


def test_one_tensorrt_logger_per_process(folders, fake_gpu, monkeypatch) -> None:
    """The builder and every stage's runtime use the one logger; the fake flags a second one (TensorRT keeps a
    single logger pointer), which old code created per stage."""
    _, engine_dir = folders
    stages = [_open(engine_dir, s)[1] for s in ("encoder", "prior", "unet")]
    for s in stages:
        s.close()
    import tensorrt as trt

    assert fake_gpu.logger is trt_logger(trt) and fake_gpu.violations == []
    trt.Runtime(trt.Logger())  # what old code did per stage
    assert fake_gpu.violations and "second TensorRT logger" in fake_gpu.violations[-1]
    fake_gpu.violations.clear()


def test_shared_stream_is_non_blocking(folders, fake_gpu) -> None:
    """Another library's work on the legacy default stream during our capture: harmless on a non-blocking
    stream; on a blocking one (cudaStreamCreate, old code) it invalidates the capture (the fake shows both)."""
    bundle_dir, engine_dir = folders
    from cuda.bindings import runtime as cudart

    src, dst = np.arange(4, dtype=np.float32), np.zeros(4, np.float32)
    legacy = lambda: cudart.cudaMemcpyAsync(dst.ctypes.data, src.ctypes.data, 16, cudart.cudaMemcpyKind.cudaMemcpyDefault, 0)  # noqa: E731
    fake_gpu.gpu.on_capture = legacy
    a, s = _open(engine_dir, "unet", cuda_graph=True)
    with s:
        for i in range(3):
            feeds = sample_feeds(a, batch=2, seed=i)
            _check(bundle_dir, a, feeds, s.run(feeds))
    assert fake_gpu.gpu.names().count("cudaStreamCreateWithFlags") == 1 and "cudaStreamCreate" not in fake_gpu.gpu.names()
    assert fake_gpu.gpu.names().count("cudaGraphLaunch") == 2, "captured on the second run, replayed on the third"
    np.testing.assert_array_equal(dst, src)
    # the rule the fake enforces, on a blocking stream
    _, blocking = cudart.cudaStreamCreate()
    cudart.cudaStreamBeginCapture(blocking, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)
    assert cudart.cudaStreamEndCapture(blocking)[1] is None, "the legacy copy invalidated the blocking capture"
    assert fake_gpu.gpu.violations and "cudaErrorStreamCaptureImplicit" in fake_gpu.gpu.violations[-1]
    fake_gpu.gpu.violations.clear()


def test_unchanged_shapes_are_not_set_again(folders, fake_gpu) -> None:
    """set_input_shape + infer_shapes only when a shape changes (every UNet step of a chunk has the same)."""
    bundle_dir, engine_dir = folders
    a, s = _open(engine_dir, "unet")
    calls = lambda: [c[0] for c in fake_gpu.calls if c[0].startswith("IExecutionContext.") and "shape" in c[0]]  # noqa: E731
    with s:
        opened = len(calls())
        for i, batch in enumerate((2, 2, 2, 1, 1, 2)):
            feeds = sample_feeds(a, batch=batch, seed=i)
            _check(bundle_dir, a, feeds, s.run(feeds))
    per_change = len(a.inputs) + 1  # one set_input_shape per input, one infer_shapes
    assert len(calls()) - opened == 3 * per_change, "batch 2, then 1, then 2 again: three changes"
    assert fake_gpu.names().count("IExecutionContext.execute_async_v3") == 6


def test_weight_streaming_engines_are_never_captured(tmp_path, monkeypatch) -> None:
    """Their enqueue is synchronous (NvInferRuntime.h): the fake invalidates such a capture; the runtime does not try."""
    state = install_fake_gpu(monkeypatch, free_bytes=64)  # nothing fits: jetson-orin streams every stage
    write_tiny_bundle(tmp_path / "b")
    m = build_engines(tmp_path / "b", tmp_path / "e", backend="tensorrt", preset="jetson-orin", progress=False)
    assert all(a.engine.key.tensorrt.weight_streaming for a in m.artifacts)
    a, s = _open(tmp_path / "e", "unet", cuda_graph=True, weight_streaming_budget_bytes=1 << 9)
    with s:
        for i in range(3):
            feeds = sample_feeds(a, batch=1, seed=i)
            _check(tmp_path / "b", a, feeds, s.run(feeds))
    assert "cudaStreamBeginCapture" not in state.gpu.names() and state.violations == []
    # the rule the fake enforces: a capture around a weight-streaming enqueue is invalidated
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    engine = trt.Runtime(trt_logger(trt)).deserialize_cuda_engine((tmp_path / "e" / a.file).read_bytes())
    context = engine.create_execution_context()
    for t in a.inputs:
        context.set_input_shape(t.name, [1 if isinstance(d, str) else d for d in t.shape])
    for t in (*a.inputs, *a.outputs):
        context.set_tensor_address(t.name, cudart.cudaMalloc(1 << 12)[1])
    _, stream = cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking)
    cudart.cudaStreamBeginCapture(stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)
    context.execute_async_v3(stream.getPtr())
    assert cudart.cudaStreamEndCapture(stream)[1] is None
    assert any("weight-streaming engine during stream capture" in v for v in state.violations)
