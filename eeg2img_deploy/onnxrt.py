"""The onnxruntime layer the runtime and the builder share (as :mod:`.gpu` is for TensorRT): importing it,
the providers (each ``--provider`` and the execution providers it runs on, best first), the EP options
(CUDA's, the TensorRT EP's per-session profile), and :func:`open_session`, which opens one graph on a
provider and refuses a silent fallback.

onnxruntime-gpu quietly falls back to a lesser provider when the libraries of the one asked for are
missing (TensorRT EP -> CUDA -> CPU); here that is an error unless the caller allowed it, and then a
loud warning that names the provider actually running.
"""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import BackendUnavailableError, EngineError, OptionError
from .manifest import Artifact, AxisRange, Precision, Provider, ShapeRange, Stage

log = logging.getLogger(__name__)

_BEST_FIRST = (Provider.TENSORRT, Provider.CUDA, Provider.CPU)
# --provider -> the execution providers a session asks for, best first (onnxruntime falls back along them)
PROVIDERS = {p.value: [q.execution_provider for q in _BEST_FIRST[_BEST_FIRST.index(p):]] for p in _BEST_FIRST}
GPU_INSTALL = ("pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'eeg2img-deploy[gpu-cu12]' "
               "(CUDA 12 driver; '[gpu-cu13]' for CUDA 13)")

# CUDA EP options (onnxruntime's CUDA-ExecutionProvider docs). cuDNN's EXHAUSTIVE search (the default)
# benchmarks every convolution algorithm at each new input shape, seconds for the UNet; the runtime
# meets a new shape at each chunk size, so HEURISTIC. One arena growth per request, not powers of two.
CUDA_EP_OPTIONS = {
    "device_id": "0",
    "cudnn_conv_algo_search": "HEURISTIC",
    "cudnn_conv_use_max_workspace": "1",
    "arena_extend_strategy": "kSameAsRequested",
    "do_copy_in_default_stream": "1",
}


def import_onnxruntime() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as e:  # the base install leaves the choice of build to the `cpu`/`gpu` extras
        raise BackendUnavailableError(
            f"onnxruntime is not installed ({e}): pip install 'eeg2img-deploy[cpu]' (or '[gpu-cu12]' / '[gpu-cu13]' "
            "on a machine with a CUDA 12 / 13 driver)"
        ) from e
    return ort


_PRELOADED = False


def preload_cuda_libraries(ort: Any) -> None:
    """Load the CUDA and cuDNN libraries of the pip wheels onnxruntime-gpu's ``[cuda,cudnn]`` brings, once,
    before the first CUDA or TensorRT session: ``onnxruntime.preload_dlls()`` (onnxruntime-gpu 1.21+; older
    builds and the CPU build have none, and then the system's libraries are used)."""
    global _PRELOADED
    preload = getattr(ort, "preload_dlls", None)
    if _PRELOADED or preload is None:
        return
    _PRELOADED = True
    try:
        preload()
    except Exception as e:  # noqa: BLE001 - a missing wheel is not fatal: the system's libraries may do
        log.debug("onnxruntime.preload_dlls() failed (%s); the system's CUDA libraries are used", e)


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def missing_provider_message(provider: str, available: list[str]) -> str:
    """Why this onnxruntime has no provider for ``provider`` ("cuda"/"tensorrt"), and the fix."""
    if _installed("onnxruntime") and _installed("onnxruntime-gpu"):
        why = ("both onnxruntime and onnxruntime-gpu are installed; they share one module and the CPU one "
               f"won (microsoft/onnxruntime#26996): `{GPU_INSTALL}`")  # fmt: skip
    else:
        why = f"install onnxruntime-gpu instead of onnxruntime on a CUDA machine: `{GPU_INSTALL}`"
    return f"no CUDA: this onnxruntime has no {PROVIDERS[provider][0]} (it has {available}); {why}"


def check_provider(provider: str, allow_cpu_fallback: bool) -> str:
    """The provider that will really run: ``provider``, or "cpu" when it is missing and the CPU is allowed."""
    if provider not in PROVIDERS:
        raise OptionError(f"--provider must be one of {sorted(PROVIDERS)}, got {provider!r}")
    ort = import_onnxruntime()
    if provider == "cpu":
        return provider
    available = ort.get_available_providers()
    if PROVIDERS[provider][0] in available:
        return provider
    message = missing_provider_message(provider, available)
    if not allow_cpu_fallback:
        raise BackendUnavailableError(message + " (or pass --provider cpu / --allow-cpu-fallback)")
    log.warning("RUNNING ON THE CPU: %s", message)
    return "cpu"


def profile_shapes(artifact: Artifact, axes: dict[str, AxisRange]) -> dict[str, str]:
    """The TensorRT EP's explicit profile (``trt_profile_{min,opt,max}_shapes``, "name:1x2x3,...") from the
    manifest's axis ranges, so it builds one engine for the whole range instead of one per new shape."""
    shapes = {t.name: ShapeRange.of(t, axes).to_dict() for t in artifact.inputs}
    return {f"trt_profile_{w}_shapes": ",".join(f"{n}:{'x'.join(map(str, s[w]))}" for n, s in shapes.items())
            for w in ("min", "opt", "max")}


# onnxruntime's TensorRT EP builds weakly typed networks: with trt_fp16_enable, TensorRT may run ANY layer in
# fp16, the fp32 islands of an fp16 graph included. These stages have such islands, where fp16 is wrong:
# the timestep sinusoids (t up to 999 has an fp16 step of 0.5), the fused prior's DDPM update, the decoder's
# uint8 conversion (tests/runtime/test_ort_gpu.py finds them in the graphs). They get no trt_fp16_enable, so
# TensorRT computes their fp16 layers in fp32 too (slower, never less precise); the native TensorRT backend
# builds strongly typed networks and keeps both. The fp32-only VAE is not an fp16 graph at all.
TRT_EP_NO_FP16 = frozenset({Stage.PRIOR, Stage.PRIOR_SAMPLER, Stage.UNET, Stage.TAESD_DECODER})


def trt_ep_options(common: dict[str, Any], artifact: Artifact, axes: dict[str, AxisRange]) -> dict[str, Any]:
    """The recorded TensorRT EP options for one session: fp16 only for an fp16 graph without fp32 islands
    (:data:`TRT_EP_NO_FP16`), the profile of this artifact's inputs."""
    opts = {k: v for k, v in common.items() if k != "trt_fp16_enable"}
    opts["trt_fp16_enable"] = artifact.precision is Precision.FP16 and artifact.stage not in TRT_EP_NO_FP16
    if any(isinstance(d, str) for t in artifact.inputs for d in t.shape):
        opts.update(profile_shapes(artifact, axes))
    return opts


def _providers(provider: str, trt_options: dict[str, Any] | None) -> list:
    names = PROVIDERS[provider]
    options = {"TensorrtExecutionProvider": trt_options, "CUDAExecutionProvider": CUDA_EP_OPTIONS}
    return [(n, options[n]) if options.get(n) else n for n in names]


def open_session(path: Path, artifact: Artifact, provider: str, *, allow_cpu_fallback: bool = False,
                 trt_options: dict[str, Any] | None = None, threads: int | None = None) -> tuple[Any, str, str]:
    """An ``InferenceSession`` over ``path`` on ``provider``; with the provider :func:`check_provider` left
    ("cpu" where it fell back) and the onnxruntime provider that really runs it."""
    ort = import_onnxruntime()
    provider = check_provider(provider, allow_cpu_fallback)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    # Four sessions run one after another: a pool that spins after its call keeps a core busy while the
    # next session runs (the 50-step prior took 375 ms with spinning, 225 ms without, on 2 cores).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if provider != "cpu":
        preload_cuda_libraries(ort)
    try:
        session = ort.InferenceSession(str(path), opts, providers=_providers(provider, trt_options))
    except Exception as e:  # onnxruntime raises its own exception types
        raise EngineError(f"onnxruntime cannot load {path.name} ({artifact.stage}): {e}") from e
    active = session.get_providers()[0]
    if active != PROVIDERS[provider][0]:  # one warning per stage, naming what really runs
        message = (f"onnxruntime could not start {PROVIDERS[provider][0]} for {artifact.stage}; it runs on "
                   f"{active} (check the CUDA/cuDNN/TensorRT libraries onnxruntime-gpu needs)")  # fmt: skip
        if not allow_cpu_fallback:
            raise BackendUnavailableError(message + " (or pass --allow-cpu-fallback)")
        log.warning("%s%s", "RUNNING ON THE CPU: " if active == "CPUExecutionProvider" else "", message)
    return session, provider, active
