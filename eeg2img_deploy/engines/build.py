"""``build-engines``: an export bundle in, an engine folder out (TensorRT plans or onnxruntime models).

The engine folder holds one engine per stage, named by its content key (see :mod:`.cache_key`), a copy
of ``constants.safetensors``, the timing cache, and ``manifest.json``, written last and atomically.
An engine whose key is unchanged and whose file still matches its recorded sha256 is kept as it is
("up to date"), so an unchanged rebuild does nothing. An interrupted build leaves the folder as it was:
no manifest in a new folder, the previous (still consistent) manifest in an existing one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Protocol

from ..errors import BackendUnavailableError, EngineError, ManifestError
from ..cards import write_card
from ..core.artifacts import select_artifacts
from ..fileio import atomic_path, sha256_file
from ..integrity import verify_files
from ..manifest import (
    MANIFEST_NAME,
    Artifact,
    Backend,
    EngineInfo,
    EngineKey,
    EngineSettings,
    Manifest,
    OnnxRuntimeFlags,
    OnnxRuntimeSettings,
    ParentInfo,
    Precision,
    Provider,
    TensorRTEPOptions,
    TensorRTFlags,
    TensorRTSettings,
    read_manifest,
    write_manifest,
)
from . import ort_optimize, trt_rules
from .cache_key import engine_file_name, key_hash, ort_model_file_name
from .presets import GB, BuildPreset, get_preset, profile_axes
from .trt_rules import Violation

log = logging.getLogger(__name__)


def default_engine_dir(bundle_dir: str | Path) -> Path:
    """``engines/<bundle folder name>`` under the current directory (the CLI's default)."""
    return Path("engines") / Path(bundle_dir).resolve().name


def build_engines(
    bundle_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    backend: Backend | str,
    preset: str = "workstation",
    precision: Precision | str | None = None,
    max_batch: int | None = None,
    opt_level: int | None = None,
    workspace_gb: float | None = None,
    timing_cache: str | Path | None = None,
    progress: bool = True,
    stages: list[str] | None = None,
    ort_provider: str | None = None,
    verify: bool = False,
    reused: list[Artifact] | None = None,
) -> Manifest:
    """Build every stage of the bundle (or ``stages``) for ``backend``; return the engine folder's manifest.

    ``precision`` None picks, per stage, fp16 for TensorRT where the bundle has it, else fp32; fp16 keeps the
    bundle's fp32-only stages fp32 (:mod:`..core.artifacts`).
    ``timing_cache`` is the folder for TensorRT timing caches (default: ``out_dir``).
    ``ort_provider`` (onnxruntime only): "cpu", "cuda" or "tensorrt"; default CUDA where available, else CPU.
    ``verify``: hash every bundle file again instead of trusting the bundle's record (:mod:`..integrity`).
    ``reused``: a list that receives the artifacts kept as they were (up to date), for the caller to report.
    """
    bundle_dir = Path(bundle_dir)
    backend = Backend(backend)
    if backend is Backend.ONNX:
        raise EngineError("build-engines makes tensorrt or onnxruntime engines; the onnx backend is the bundle itself")
    bundle, p, axes, chosen = _plan(bundle_dir, backend, preset, precision, stages, max_batch=max_batch,
                                    opt_level=opt_level, workspace_gb=workspace_gb)  # fmt: skip
    verify_files(bundle_dir, bundle, stages, force=verify)
    out_dir = Path(out_dir) if out_dir is not None else default_engine_dir(bundle_dir)
    if out_dir.resolve() == bundle_dir.resolve():
        raise EngineError(f"the engine folder must not be the bundle folder {bundle_dir}: pass another --out")
    previous = _previous_manifest(out_dir)

    # The maker checks the backend (TensorRT, a GPU, onnxruntime) before anything is created on disk.
    if backend is Backend.TENSORRT:
        trt_maker = _TensorRTMaker(bundle_dir, out_dir, p, axes, Path(timing_cache or out_dir), progress)
        _refuse_what_tensorrt_refuses(bundle_dir, list(chosen.values()), axes, trt_maker.env.tensorrt_version)
        maker: _StageMaker = trt_maker
    else:
        maker = _OnnxRuntimeMaker(bundle_dir, out_dir, ort_provider, axes)
    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts, built = [], 0
    for a in chosen.values():
        key, digest, file_name = maker.key(a)
        kept = _up_to_date(previous, out_dir, a, digest)
        if kept is not None:
            log.info("%s: up to date (%s)", a.label(), kept.file)
            artifacts.append(kept)
            if reused is not None:
                reused.append(kept)
        else:
            artifacts.append(maker.build(a, key, digest, file_name))
            built += 1

    _copy_constants(bundle_dir, out_dir, bundle)
    manifest = Manifest(
        backend=backend,
        artifacts=tuple(artifacts),
        constants_file=bundle.constants_file,
        constants_sha256=bundle.constants_sha256,
        eeg=bundle.eeg,
        bundle=dataclasses.replace(bundle.bundle, axes=axes, max_batch=p.max_batch),
        engine=maker.settings(artifacts),
        sources=bundle.sources,
        libraries={**bundle.libraries, **maker.libraries()},
        parent=ParentInfo(
            manifest_sha256=sha256_file(bundle_dir / MANIFEST_NAME),
            bundle=bundle_dir.resolve().name,
            path=Path(os.path.relpath(bundle_dir.resolve(), out_dir.resolve())).as_posix(),
        ),
    )
    if previous is not None and _same(previous, manifest):
        if built:  # files that had changed on disk, built again into what the manifest already says
            log.info("rebuilt %d engine(s) in %s; the manifest is unchanged", built, out_dir)
        else:
            log.info("engines in %s are up to date", out_dir)
        write_card(out_dir, previous)
        return previous
    write_card(out_dir, manifest)
    write_manifest(out_dir, manifest)  # last: its presence marks the folder complete
    _remove_stale(out_dir, previous, manifest)
    log.info("wrote %s", out_dir / MANIFEST_NAME)
    return manifest


# ---- choosing, checking and reusing ----------------------------------------------------------------
def _plan(bundle_dir: Path, backend: Backend, preset: str, precision: Precision | str | None, stages: list[str] | None,
          **overrides: Any) -> tuple[Manifest, BuildPreset, dict, dict[str, Artifact]]:
    """The bundle, the preset (with the CLI's overrides), its axis ranges and the artifacts a build uses."""
    bundle = read_manifest(bundle_dir)
    if bundle.backend is not Backend.ONNX:
        raise ManifestError(
            f"{bundle_dir} is an engine folder ({bundle.backend.value}), not an export bundle: pass the folder "
            "written by `eeg2img-deploy export`"
        )
    p = get_preset(preset).with_overrides(**overrides)
    axes = profile_axes(p, bundle.bundle.axes)
    unknown = sorted(set(stages or []) - set(bundle.stages()))
    if unknown:
        raise ManifestError(f"stages {unknown} are not in the bundle (it has {', '.join(map(str, bundle.stages()))})")
    wanted = [s for s in bundle.stages() if stages is None or s in stages]
    chosen = select_artifacts(bundle, wanted, precision, prefer_fp16=backend is Backend.TENSORRT, folder=bundle_dir)
    return bundle, p, axes, chosen


def check_for_tensorrt(
    bundle_dir: str | Path,
    *,
    preset: str = "workstation",
    precision: Precision | str | None = None,
    max_batch: int | None = None,
    stages: list[str] | None = None,
    version: trt_rules.Version = trt_rules.DEFAULT_VERSION,
) -> list[Violation]:
    """``build-engines --check``: every graph a TensorRT build of the bundle would use, against TensorRT
    ``version``'s ONNX parser rules and the preset's optimization profile (:mod:`.trt_rules`). Needs onnx, not
    TensorRT."""
    bundle_dir = Path(bundle_dir)
    _, _, axes, chosen = _plan(bundle_dir, Backend.TENSORRT, preset, precision, stages, max_batch=max_batch)
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise BackendUnavailableError("build-engines --check reads the graphs with the onnx package: pip install onnx") from None
    return _tensorrt_findings(bundle_dir, list(chosen.values()), axes, version)


def tensorrt_version_to_check(preset: str, given: str | None = None) -> trt_rules.Version:
    """The TensorRT whose rules ``--check`` applies: ``given``, else the preset's target (jetson-orin: 10.3),
    else the installed TensorRT, else :data:`.trt_rules.DEFAULT_VERSION` (10.3, the strictest)."""
    text = given or get_preset(preset).tensorrt
    if text is None:
        try:
            import tensorrt

            text = str(tensorrt.__version__)
        except Exception:  # not installed, or its libraries do not load: check for the default
            return trt_rules.DEFAULT_VERSION
    return _rules_version(text, "pass --tensorrt-version")


def _rules_version(text: str, fix: str) -> trt_rules.Version:
    try:
        return trt_rules.parse_version(text)
    except ValueError as e:
        raise EngineError(f"{e}: {fix}") from None


def _tensorrt_findings(
    bundle_dir: Path, artifacts: list[Artifact], axes: dict, version: trt_rules.Version
) -> list[Violation]:
    import onnx

    from .tensorrt_builder import shape_profile

    found: list[Violation] = []
    for a in artifacts:
        model = onnx.load(str(bundle_dir / a.file), load_external_data=False)  # the rules need no weights
        found += trt_rules.check_model(model, a.file, version)
        try:
            profile = shape_profile(a.inputs, axes)
        except EngineError as e:
            found.append(Violation(a.file, "inputs", "profile", str(e), refused=False))
        else:
            found += trt_rules.check_profile(model, a.file, profile)
    return found


def _refuse_what_tensorrt_refuses(
    bundle_dir: Path, artifacts: list[Artifact], axes: dict, tensorrt_version: str
) -> None:
    """The ``--check`` of the graphs about to be built, for the installed TensorRT: stop before the first build
    rather than after the UNet."""
    version = _rules_version(tensorrt_version, "build-engines supports TensorRT 10.1 and later")
    try:
        import onnx  # noqa: F401
    except ImportError:  # every TensorRT extra installs it: an environment made by hand
        raise EngineError("onnx is not installed, and a TensorRT build first checks the graphs against TensorRT's "
                          "parser rules with it: pip install onnx") from None
    found = _tensorrt_findings(bundle_dir, artifacts, axes, version)
    for v in found:
        if not v.blocking:
            log.warning("%s", v.line())
    blocking = [v for v in found if v.blocking]
    if blocking:
        raise EngineError(
            f"TensorRT {trt_rules.version_text(version)} would refuse this bundle ({len(blocking)} finding(s); the "
            f"first: {blocking[0].line()}): `eeg2img-deploy build-engines --bundle {bundle_dir} --check "
            f"--tensorrt-version {trt_rules.version_text(version)}` lists them all"
        )


def _previous_manifest(out_dir: Path) -> Manifest | None:
    if not (out_dir / MANIFEST_NAME).is_file():
        return None
    try:
        return read_manifest(out_dir)
    except ManifestError as e:
        log.warning("ignoring the unreadable %s (%s): building everything", out_dir / MANIFEST_NAME, e)
        return None


def _up_to_date(previous: Manifest | None, out_dir: Path, a: Artifact, digest: str) -> Artifact | None:
    if previous is None:
        return None
    for old in previous.artifacts:
        same = old.stage == a.stage and old.precision == a.precision and old.steps == a.steps
        if same and old.engine and old.engine.key_hash == digest:
            files = [(old.file, old.sha256)] + ([(old.data_file, old.data_sha256)] if old.data_file else [])
            if all((out_dir / f).is_file() and sha256_file(out_dir / f) == h for f, h in files):
                return old
            log.warning("%s: %s changed on disk; building it again", a.label(), old.file)
    return None


def _same(a: Manifest, b: Manifest) -> bool:
    strip = lambda m: {k: v for k, v in m.to_dict().items() if k != "created"}
    return strip(a) == strip(b)


def _copy_constants(bundle_dir: Path, out_dir: Path, bundle: Manifest) -> None:
    dst = out_dir / bundle.constants_file
    if dst.is_file() and sha256_file(dst) == bundle.constants_sha256:
        return
    with atomic_path(dst) as tmp:
        shutil.copyfile(bundle_dir / bundle.constants_file, tmp)


def _remove_stale(out_dir: Path, previous: Manifest | None, current: Manifest) -> None:
    """Delete engines the previous manifest listed and the new one does not (only those: never guess)."""
    if previous is None:
        return
    keep = {f for a in current.artifacts for f in (a.file, a.data_file) if f}
    for a in previous.artifacts:
        for f in (a.file, a.data_file):
            if f and f not in keep:
                (out_dir / f).unlink(missing_ok=True)
                log.info("removed the replaced engine %s", f)


# ---- the two backends -------------------------------------------------------------------------------
class _StageMaker(Protocol):
    def key(self, a: Artifact) -> tuple[EngineKey, str, str]: ...
    def build(self, a: Artifact, key: EngineKey, digest: str, file_name: str) -> Artifact: ...
    def settings(self, artifacts: list[Artifact]) -> EngineSettings: ...
    def libraries(self) -> dict[str, str]: ...


class _TensorRTMaker(_StageMaker):
    def __init__(
        self, bundle_dir: Path, out_dir: Path, preset: BuildPreset, axes: dict, timing_dir: Path, progress: bool
    ) -> None:
        from . import tensorrt_builder as tb

        self.tb = tb
        self.env = tb.tensorrt_environment()  # BackendUnavailableError here, before any build work
        self.bundle_dir, self.out_dir, self.preset, self.axes, self.progress = bundle_dir, out_dir, preset, axes, progress
        self.timing_cache = tb.timing_cache_file(timing_dir, self.env.tensorrt_version, self.env.device)
        log.info(
            "TensorRT %s on %s (sm_%s, %.1f GB free), preset %s",
            self.env.tensorrt_version,
            self.env.device.name,
            self.env.device.compute_capability.replace(".", ""),
            self.env.device.free_bytes / GB,
            preset.name,
        )

    def _weight_streaming(self, a: Artifact) -> bool:
        weight_bytes = a.size_bytes + ((self.bundle_dir / a.data_file).stat().st_size if a.data_file else 0)
        return self.preset.wants_weight_streaming(weight_bytes, self.env.device.free_bytes)

    def key(self, a: Artifact) -> tuple[EngineKey, str, str]:
        flags = TensorRTFlags(
            builder_optimization_level=self.preset.builder_optimization_level,
            workspace_bytes=self.preset.workspace_bytes,
            weight_streaming=self._weight_streaming(a),
            tf32=a.precision is not Precision.FP32,  # an fp32 engine computes in fp32, not TF32
        )
        key = EngineKey(backend=Backend.TENSORRT, stage=a.stage, onnx_sha256=a.sha256, data_sha256=a.data_sha256,
                        precision=a.precision, profile=self.tb.shape_profile(a.inputs, self.axes), builder_flags=flags,
                        tensorrt_version=self.env.tensorrt_version, compute_capability=self.env.device.compute_capability,
                        gpu_name=self.env.device.name)  # fmt: skip
        digest = key_hash(key)
        return key, digest, engine_file_name(key, digest, a.steps)

    def build(self, a: Artifact, key: EngineKey, digest: str, file_name: str) -> Artifact:
        flags = key.tensorrt
        options = self.tb.BuildOptions(
            opt_level=flags.builder_optimization_level,
            workspace_bytes=flags.workspace_bytes,
            weight_streaming=flags.weight_streaming,
            tf32=bool(flags.tf32),
            timing_cache=self.timing_cache,
            progress=self.progress,
        )
        log.info("%s: building %s", a.label(), file_name)
        plan = self.out_dir / file_name
        seconds = self.tb.build_engine(self.bundle_dir / a.file, plan, stage=a.stage, profile=key.profile, options=options)
        log.info("%s: built in %.1f s", a.label(), seconds)
        info = EngineInfo(
            key=key,
            key_hash=digest,
            tensorrt_version=self.env.tensorrt_version,
            compute_capability=self.env.device.compute_capability,
            gpu_name=self.env.device.name,
            build_seconds=round(seconds, 3),
        )
        return Artifact(
            stage=a.stage,
            precision=a.precision,
            file=file_name,
            sha256=sha256_file(plan),
            size_bytes=plan.stat().st_size,
            inputs=a.inputs,
            outputs=a.outputs,
            engine=info,
            steps=a.steps,
        )

    def settings(self, artifacts: list[Artifact]) -> EngineSettings:
        # run-time budget for weight-streaming engines: half the memory free at build time (a heuristic;
        # the preset's explicit budget wins)
        budget = self.preset.weight_streaming_budget_gb
        budget_bytes = int(budget * GB) if budget is not None else self.env.device.free_bytes // 2
        streaming = {a.stage: budget_bytes for a in artifacts if a.engine and a.engine.key.tensorrt.weight_streaming}
        return EngineSettings(tensorrt=TensorRTSettings(
            preset=self.preset.name,
            static_shapes=self.preset.static_shapes,
            cuda_graphs=self.preset.cuda_graphs,
            weight_streaming_budget_bytes=streaming,
        ))

    def libraries(self) -> dict[str, str]:
        return {"tensorrt": self.env.tensorrt_version}


class _OnnxRuntimeMaker(_StageMaker):
    def __init__(self, bundle_dir: Path, out_dir: Path, provider: str | None, axes: dict) -> None:
        self.bundle_dir, self.out_dir, self.axes = bundle_dir, out_dir, axes
        self.target = ort_optimize.choose_ort_target(provider)
        self.version = ort_optimize.onnxruntime_version()
        log.info("onnxruntime %s, optimizing for %s", self.version, self.target.provider_name)

    def key(self, a: Artifact) -> tuple[EngineKey, str, str]:
        flags = OnnxRuntimeFlags(provider=Provider(self.target.provider), graph_optimization_level=self.target.level,
                                 onnxruntime=self.version)
        key = EngineKey(backend=Backend.ONNXRUNTIME, stage=a.stage, onnx_sha256=a.sha256, data_sha256=a.data_sha256,
                        precision=a.precision, profile={}, builder_flags=flags)
        digest = key_hash(key)
        return key, digest, ort_model_file_name(key, digest, a.steps)

    def build(self, a: Artifact, key: EngineKey, digest: str, file_name: str) -> Artifact:
        log.info("%s: optimizing for onnxruntime (%s)", a.label(), self.target.provider)
        model, data = ort_optimize.optimize_model(
            self.bundle_dir / a.file, self.out_dir / file_name, self.target, external=True if a.data_file else None
        )
        built = Artifact(
            stage=a.stage,
            precision=a.precision,
            file=model.name,
            sha256=sha256_file(model),
            size_bytes=model.stat().st_size,
            inputs=a.inputs,
            outputs=a.outputs,
            data_file=data.name if data else None,
            data_sha256=sha256_file(data) if data else None,
            engine=EngineInfo(key=key, key_hash=digest),
            steps=a.steps,
        )
        if self.target.provider == "tensorrt":
            ort_optimize.warm_up_tensorrt_ep(self.out_dir, built, self.axes)
        return built

    def settings(self, artifacts: list[Artifact]) -> EngineSettings:
        tensorrt_ep = TensorRTEPOptions() if self.target.provider == "tensorrt" else None
        return EngineSettings(onnxruntime=OnnxRuntimeSettings(
            provider=Provider(self.target.provider), graph_optimization_level=self.target.level, tensorrt_ep=tensorrt_ep,
        ))

    def libraries(self) -> dict[str, str]:
        return {"onnxruntime": self.version}
