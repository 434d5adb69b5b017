"""``triton-repo``: a Triton model repository from a bundle or engine folder, for a production ``tritonserver``.

One model per stage with the engine folder's native backend (``tensorrt_plan`` for TensorRT plans,
``onnxruntime_onnx`` for ONNX), its I/O, dtypes, dims and ``max_batch_size`` from the manifest, dynamic
batching and an instance group; plus the model clients call, ``eeg2img`` (the same inputs and outputs as
``serve``'s): a Python-backend model that runs the runtime's numpy samplers and calls the stage models
through BLS (business logic scripting), so the samplers' loops stay on the host while every graph runs
in Triton; and, where the folder has the fused prior graph, the ensembles of :mod:`.ensemble`.

``--stage-backend python`` wraps each ONNX stage in a Python-backend model running onnxruntime instead,
for servers built without the onnxruntime backend (PyTriton's bundled ``tritonserver``, which the tests
use to run the whole repository on a CPU).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import ManifestError
from ..fileio import atomic_write_text
from ..integrity import verify_files
from ..core.artifacts import select_artifacts
from ..manifest import (Artifact, AxisRange, Backend, Decoder, Manifest, Provider, ServedModels, ServedStage, Stage,
                        read_manifest)
from .pbtxt import Enum, render, tensor
from .ensemble import FUSED_PRIOR, write_ensembles
from .repo_files import place, python_model
from .requests import MODEL_NAME, model_inputs, model_outputs

log = logging.getLogger(__name__)

STAGE_RUNTIME = "stage_model.py"  # the Python-backend stage (onnxruntime) shipped as each stage's model.py
ORCHESTRATOR = "bls_model.py"  # the eeg2img model's model.py
TRT_NOTE = ("TensorRT plans load only on the TensorRT version and GPU they were built for (see the manifest): "
            "build them in the same container.")
TOP_IO = ("eeg, subject_id, seed, optional sample_index, steps, prior_steps, ip_scale -> image (uint8 HWC), "
          "image_embeds, eeg_embeds, timings_ms, batch_size")


@dataclass(frozen=True)
class RepoSettings:
    precision: str | None = None  # default: fp16 on GPU instances, fp32 on CPU ones; a stage without it keeps its own
    vae: str = "full"
    instances: int = 1  # per stage model
    kind: str = "auto"  # gpu | cpu | auto (gpu for TensorRT plans and GPU-optimized onnxruntime folders)
    max_batch: int | None = None  # the eeg2img model's; default: the manifest's
    queue_delay_us: int = 2000
    stage_backend: str = "native"  # native | python
    verify: bool = False  # hash every file again instead of trusting the folder's record (integrity.py)


def made_for(manifest: Manifest) -> str | None:
    """The instance kind an engine folder was built for ("gpu" or "cpu"); None for a bundle (either)."""
    if manifest.backend is Backend.TENSORRT:
        return "gpu"
    if manifest.backend is not Backend.ONNXRUNTIME:
        return None
    ort = manifest.engine.onnxruntime if manifest.engine else None
    return "gpu" if ort is not None and ort.provider is not Provider.CPU else "cpu"


def instance_kind(manifest: Manifest, kind: str) -> str:
    """``kind``, or for "auto" what the folder was built for. TensorRT plans need a GPU; models onnxruntime
    optimized for its CPU provider may hold CPU-only fused nodes, so they are refused on GPU instances (a CUDA
    folder's models are saved with basic optimizations only and run on either)."""
    target = made_for(manifest)
    if kind == "auto":
        return target or "cpu"
    if kind == "cpu" and manifest.backend is Backend.TENSORRT:
        raise ManifestError("--kind cpu: this folder holds TensorRT plans, which run on GPU instances only: use "
                            "--kind gpu (or auto), or pass the export bundle (it runs on either)")
    if kind == "gpu" and target == "cpu":
        raise ManifestError("--kind gpu: this folder holds onnxruntime models optimized for the CPU provider, which "
                            "run on CPU instances only: use --kind cpu (or auto), build-engines --backend onnxruntime "
                            "--provider cuda, or pass the export bundle (it runs on either)")
    return kind


def static_batch(manifest: Manifest) -> int | None:
    """The batch size of a folder of static TensorRT engines (``jetson-orin``: min = opt = max), else None."""
    trt = manifest.engine.tensorrt if manifest.backend is Backend.TENSORRT and manifest.engine else None
    return manifest.bundle.max_batch if trt is not None and trt.static_shapes else None


def _batch_axis(a: Artifact, axes: dict[str, AxisRange]) -> tuple[bool, int]:
    """Whether every I/O starts with the same dynamic axis, and that axis' largest size."""
    firsts = {t.shape[0] if t.shape and isinstance(t.shape[0], str) else None for t in (*a.inputs, *a.outputs)}
    if len(firsts) != 1 or None in firsts:
        return False, 0
    name = firsts.pop()
    if name not in axes:
        raise ManifestError(f"{a.stage}: dynamic axis {name!r} has no range in the manifest's settings['axes']")
    return True, axes[name].max


def stage_config(a: Artifact, name: str, manifest: Manifest, settings: RepoSettings, kind: str) -> dict:
    batched, max_batch = _batch_axis(a, manifest.bundle.axes)
    cut = 1 if batched else 0

    def io(t, **kw):
        if any(isinstance(d, str) for d in t.shape[cut:]):
            raise ManifestError(f"{a.stage}: {t.name} has a dynamic axis other than the batch: {t.shape}")
        return tensor(t.name, t.dtype, tuple(int(d) for d in t.shape[cut:]), batched=batched, **kw)

    cfg: dict = {"name": name}
    if settings.stage_backend == "python":
        cfg["backend"] = "python"
    elif manifest.backend is Backend.TENSORRT:
        cfg["platform"], cfg["default_model_filename"] = "tensorrt_plan", "model.plan"
    else:
        cfg["platform"], cfg["default_model_filename"] = "onnxruntime_onnx", "model.onnx"
    cfg["max_batch_size"] = max_batch
    cfg["input"] = [io(t) for t in a.inputs]
    cfg["output"] = [io(t) for t in a.outputs]
    rows = static_batch(manifest)
    if batched and rows is not None:
        # Triton's dynamic batcher sends whatever it has gathered when the queue delay ends: with a static
        # engine, a partial batch is outside the profile and TensorRT refuses it. Triton does not pad.
        trt = manifest.engine.tensorrt if manifest.engine else None
        cfg["#"] = [f"static TensorRT engine (preset {trt.preset if trt else '-'}): it runs exactly {rows} row(s) "
                    "per call (the batch axis' size), so there is no dynamic batching, which would form partial",
                    "batches; the eeg2img model pads every call to that size and drops the padding rows (a "
                    "request of fewer rows sent here directly is outside the engine's profile)"]  # fmt: skip
    elif batched:
        cfg["dynamic_batching"] = {"max_queue_delay_microseconds": 100}
    group = {"count": settings.instances, "kind": Enum("KIND_GPU" if kind == "gpu" else "KIND_CPU")}
    cfg["instance_group"] = [group]
    return cfg


def orchestrator_config(manifest: Manifest, settings: RepoSettings) -> dict:
    eeg_shape = manifest.eeg.spec().shape
    image_size = manifest.bundle.image_size
    return {
        "name": MODEL_NAME,
        "backend": "python",
        "max_batch_size": settings.max_batch or manifest.bundle.max_batch,
        "input": [tensor(p.name, p.dtype, p.dims, batched=True, optional=p.optional) for p in model_inputs(eeg_shape)],
        "output": [tensor(p.name, p.dtype, p.dims, batched=True) for p in model_outputs(image_size)],
        "dynamic_batching": {"max_queue_delay_microseconds": settings.queue_delay_us},
        # the host-side loop: CPU instances that wait on the stage models most of the time
        "instance_group": [{"count": max(2, settings.instances), "kind": Enum("KIND_CPU")}],
    }


def write_repository(bundle: Path, out: Path, settings: RepoSettings = RepoSettings()) -> dict:
    """Write the repository to ``out`` (which must not exist, or be empty) and return {model: config}."""
    bundle, out = Path(bundle), Path(out)
    manifest = read_manifest(bundle)
    if settings.vae not in tuple(Decoder):
        raise ManifestError(f"vae must be one of {[d.value for d in Decoder]}, got {settings.vae!r} (--vae)")
    if out.exists() and any(out.iterdir()):
        raise ManifestError(f"{out} exists and is not empty: pass a new folder to --out")
    if settings.stage_backend == "python" and manifest.backend is Backend.TENSORRT:
        raise ManifestError("--stage-backend python runs ONNX with onnxruntime; TensorRT plans need the native "
                            "tensorrt_plan backend: drop --stage-backend python")
    kind = instance_kind(manifest, settings.kind)
    stages = [Stage.ENCODER, Stage.PRIOR, Stage.UNET, Decoder(settings.vae).stage]
    missing = [str(s) for s in stages if s not in manifest.stages()]
    if missing:
        raise ManifestError(f"{bundle} lacks stage(s) {', '.join(missing)}: export the bundle again (or choose another "
                            "--vae)")
    stages += [FUSED_PRIOR] if FUSED_PRIOR in manifest.stages() else []  # one model per step count
    chosen = {key.replace("@", "_"): a for key, a in select_artifacts(  # Triton model names: prior_sampler_50
        manifest, stages, settings.precision, prefer_fp16=kind == "gpu", folder=bundle).items()}
    verify_files(bundle, manifest, sorted({a.stage for a in chosen.values()}), force=settings.verify)
    configs: dict[str, dict] = {}
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for name, a in chosen.items():
        cfg = stage_config(a, name, manifest, settings, kind)
        version = tmp / name / "1"
        if settings.stage_backend == "python":
            place(bundle / a.file, version / a.file)
            shutil.copy2(Path(__file__).with_name(STAGE_RUNTIME), version / "model.py")
            (version / "stage.json").write_text(json.dumps({"file": a.file, "artifact": a.to_dict()}, indent=2))
        else:
            place(bundle / a.file, version / cfg["default_model_filename"])
        if a.data_file:  # ONNX external data, found next to the graph under its own name
            place(bundle / a.data_file, version / a.data_file)
        configs[name] = cfg
    version = python_model(tmp / MODEL_NAME, ORCHESTRATOR, bundle, manifest)
    ServedModels(settings.vae, {a.session_key: ServedStage(name, a.stage, a.precision, a.steps)
                                for name, a in chosen.items()}).write(version)
    configs[MODEL_NAME] = orchestrator_config(manifest, settings)
    if static_batch(manifest) not in (None, 1):  # an ensemble hands the client's batch to the stages unpadded
        log.warning("static engines at batch %d: no fused-prior ensembles (they would pass partial batches to "
                    "them); the eeg2img model pads its calls", static_batch(manifest))  # fmt: skip
    else:
        try:
            configs.update(write_ensembles(tmp, bundle, manifest, chosen, Decoder(settings.vae).stage, configs))
        except ManifestError:  # an ensemble Triton would refuse: nothing left behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    for name, cfg in configs.items():
        atomic_write_text(tmp / name / "config.pbtxt", render(cfg))
    atomic_write_text(tmp / "README.md", repo_readme(bundle, manifest, chosen, configs, kind, settings))
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return configs


def repo_readme(bundle: Path, manifest: Manifest, chosen: dict[str, Artifact], configs: dict, kind: str,
                settings: RepoSettings) -> str:
    rows = "\n".join(
        f"| `{s}` | {configs[s].get('platform') or configs[s]['backend']} | {a.precision.value} | "
        f"{', '.join(t.name for t in a.inputs)} -> {', '.join(t.name for t in a.outputs)} | {configs[s]['max_batch_size']} |"
        for s, a in chosen.items())
    extra = "\n".join(
        f"| `{name}` | {cfg.get('platform') or cfg['backend']} | - | {', '.join(i['name'] for i in cfg['input'])} -> "
        f"{', '.join(o['name'] for o in cfg['output'])} | {cfg['max_batch_size']} |"
        for name, cfg in configs.items() if name not in chosen and name != MODEL_NAME)
    fused = [name for name, cfg in configs.items() if cfg.get("platform") == "ensemble"]
    fused_note = (f"\n`{'`, `'.join(fused)}`: ensembles encoder -> prior_sampler -> unet -> decoder (no host loop; the "
                  "`eeg2img_glue_*` Python steps draw the same noise and make Stage II's one Euler step): the "
                  "images of `infer --prior-steps N`, with the bundle's guidance and IP scale.\n" if fused else "")
    static_rows = static_batch(manifest)  # not `rows`: the stage table above is in the README below
    batching = "Each stage model batches dynamically" if static_rows is None else (
        f"The engines are static (batch {static_rows}): each stage model runs exactly {static_rows} row(s) per call, so none "
        "batches dynamically (a partial batch would be outside the profile); the `eeg2img` model pads its calls"
        + ("" if static_rows == 1 else ", and there are no fused ensembles (they would pass partial batches)"))
    return f"""# Triton model repository for eeg2img-deploy

Written by `eeg2img-deploy triton-repo` from `{bundle.name}` ({manifest.backend.value} artifacts, instances {kind.upper()}).

## Start it

```bash
tritonserver --model-repository $PWD     # e.g. in nvcr.io/nvidia/tritonserver:<yy.mm>-py3
```

The `eeg2img` model is Python code that imports `eeg2img_deploy`: install it into the server's Python
first (`pip install eeg2img-deploy`, the base install: numpy, onnxruntime, safetensors).
{TRT_NOTE if manifest.backend is Backend.TENSORRT else ""}
Then send requests as to `eeg2img-deploy serve`: `eeg2img-deploy client --url HOST:8000 --eeg trials.npy --subject 8 --out out/`.

## Models

| model | backend | precision | inputs -> outputs | max batch |
|---|---|---|---|---|
{rows}
| `eeg2img` | python (BLS) | - | {TOP_IO} | {configs[MODEL_NAME]['max_batch_size']} |
{extra}

`eeg2img` runs the runtime's pipeline (validation, the prior's DDPM loop with classifier-free guidance,
the Euler-ancestral Stage II, the noise from `(seed, sample_index)`), calling the stage models above for
every graph: the images are those of `eeg2img-deploy infer` with the same bundle, seed and trials.
{fused_note}{batching}; scale out with `instance_group` counts or more servers.
"""
