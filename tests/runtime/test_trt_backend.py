"""TensorRTStage against the fake TensorRT + CUDA: parity with onnxruntime, refusals before deserializing,
and the fake's own enforcement of the API's preconditions."""

from __future__ import annotations

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


@pytest.mark.parametrize("stage", ["encoder", "prior", "unet"])
def test_engine_outputs_equal_onnxruntime(engines, fake_gpu, stage: str) -> None:
    bundle_dir, engine_dir = engines
    m, bundle = read_manifest(engine_dir), read_manifest(bundle_dir)
    a = next(x for x in m.artifacts if x.stage == stage)
    onnx_file = bundle_dir / bundle.artifact(stage, a.precision).file
    with open_tensorrt_stage(engine_dir, a) as s:
        assert s.inputs == a.inputs and s.outputs == a.outputs
        for batch in (1, 3, 2):  # grow, then shrink: buffers are reused
            feeds = sample_feeds(a, batch=batch, seed=batch)
            got, want = s.run(feeds), run_onnx(onnx_file, feeds)
            for name in want:
                assert got[name].dtype == want[name].dtype
                np.testing.assert_array_equal(got[name], want[name])
    mallocs = [c for c in fake_gpu.gpu.calls if c[0] == "cudaMalloc"]
    assert len(mallocs) == 2 * len(a.inputs + a.outputs), "allocated at batch 1 and 3 only"
    assert not fake_gpu.gpu.allocations and not fake_gpu.gpu.streams, "close() frees everything"


def test_cuda_graph_replays_after_a_warm_run(engines, fake_gpu) -> None:
    bundle_dir, engine_dir = engines
    a = read_manifest(engine_dir).artifact("unet", "fp16")
    with open_tensorrt_stage(engine_dir, a, cuda_graph=True) as s:
        outs = [s.run(sample_feeds(a, batch=2, seed=i)) for i in range(4)]
    assert fake_gpu.names().count("IExecutionContext.execute_async_v3") == 2  # warm run + the captured one
    names = fake_gpu.gpu.names()
    assert fake_gpu.gpu.kernel_launches == 4 and names.count("cudaGraphLaunch") == 3 and names.count("cudaStreamBeginCapture") == 1
    want = run_onnx(bundle_dir / "unet.fp16.onnx", sample_feeds(a, batch=2, seed=3))
    np.testing.assert_array_equal(outs[3]["noise_pred"], want["noise_pred"])


@pytest.mark.parametrize(("version", "cc"), [("11.4.0.106", (8, 9)), ("10.3.0", (8, 7))])
def test_engine_for_another_tensorrt_or_gpu_is_refused_before_deserializing(engines, monkeypatch, version, cc) -> None:
    _, engine_dir = engines
    state = install_fake_gpu(monkeypatch, version=version, compute_capability=cc)
    a = read_manifest(engine_dir).artifact("unet", "fp16")
    with pytest.raises(EngineError) as e:
        open_tensorrt_stage(engine_dir, a)
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


def test_missing_tensorrt_names_the_pip_extra(engines, monkeypatch) -> None:
    _, engine_dir = engines
    remove_tensorrt(monkeypatch)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'eeg2img-deploy\[tensorrt\]'"):
        open_tensorrt_stage(engine_dir, read_manifest(engine_dir).artifact("encoder", "fp32"))


def test_shape_outside_the_profile_is_a_clear_error(engines, fake_gpu) -> None:
    _, engine_dir = engines
    a = read_manifest(engine_dir).artifact("encoder", "fp32")
    with open_tensorrt_stage(engine_dir, a) as s, pytest.raises(EngineError, match="outside the engine's profile"):
        s.run(sample_feeds(a, batch=5))


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
    assert context.execute_async_v3(int(stream)) is False
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
    assert context.execute_async_v3(int(stream)) is False  # no addresses bound
    _, small = cudart.cudaMalloc(8)
    for name in ("eeg", "eeg_embeds"):
        context.set_tensor_address(name, small)
    assert context.execute_async_v3(int(stream)) is False  # buffers too small
    profile = trt.Builder(trt.Logger()).create_optimization_profile()
    profile.set_shape("eeg", (2, 4, 8), (1, 4, 8), (4, 4, 8))  # min > opt
    assert len(state.violations) == 3 and "min <= opt <= max" in state.violations[-1]


def test_fake_11x_has_no_fp16_flag_and_strongly_typed_rejects_precision_flags(tmp_path, monkeypatch) -> None:
    write_tiny_bundle(tmp_path / "b")
    state = install_fake_gpu(monkeypatch, version="11.4.0.106")
    import tensorrt as trt

    assert not hasattr(trt.BuilderFlag, "FP16") and not hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
    state10 = install_fake_gpu(monkeypatch, version="10.3.0")
    import tensorrt as trt10

    builder = trt10.Builder(trt10.Logger())
    network = builder.create_network(1 << int(trt10.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    assert trt10.OnnxParser(network, trt10.Logger()).parse_from_file(str(tmp_path / "b" / "encoder.onnx"))
    config = builder.create_builder_config()
    config.set_flag(trt10.BuilderFlag.FP16)
    assert builder.build_serialized_network(network, config) is None
    assert any("strongly typed" in v for v in state10.violations) and state.violations == []
