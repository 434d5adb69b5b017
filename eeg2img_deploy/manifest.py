"""The manifest: the one contract between export, build-engines and the runtime.

A bundle (``export``) and an engine folder (``build-engines``) each hold a ``manifest.json``, written
last and atomically: a folder without one is unfinished. It lists every artifact with its sha256,
I/O specs and precision, the constants file, the EEG input spec, where the weights came from, and
the library versions that made it. Nothing here imports torch, onnx or tensorrt.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import functools
import os
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from . import __version__
from .errors import ManifestError
from .fileio import atomic_write_text
from .names import (  # re-exported: the manifest's vocabulary
    RUNTIME_BACKENDS,
    STAGES,
    Backend,
    Constants,
    Decoder,
    EncoderKind,
    EncoderVariant,
    Precision,
    Provider,
    Stage,
)

__all__ = [
    "FORMAT_VERSION", "MANIFEST_NAME", "RUNTIME_BACKENDS", "STAGES", "Artifact", "AxisRange", "Backend", "BundleSettings", "Constants",
    "Decoder", "EEGInfo", "EncoderInfo", "EncoderKind", "EncoderVariant", "LowLevelInfo", "EngineInfo", "EngineKey", "EngineSettings", "Manifest",
    "OnnxRuntimeFlags", "OnnxRuntimeSettings", "ParentInfo", "Precision", "Provider", "RecommendedRun", "ShapeRange", "Source", "Stage",
    "TensorRTEPOptions", "TensorRTFlags", "TensorRTSettings", "TensorSpec", "Validation", "library_versions", "read_manifest", "write_manifest",
]

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1  # bump only when the JSON changes incompatibly (an added optional key is compatible)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: float32, float16, int64
    shape: tuple[int | str, ...]  # a str is a dynamic axis ("batch", "batch2")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(d["name"], d["dtype"], tuple(d["shape"]))


@dataclass(frozen=True)
class AxisRange:
    """The sizes one dynamic axis takes (``batch``, the CFG-doubled ``batch2``, the caption's cache ``past``): what a
    TensorRT profile gives it at min, opt and max (JSON: {"min", "opt", "max"}). Checked here, once."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 0 < self.min <= self.opt <= self.max:
            raise ValueError(f"min {self.min}, opt {self.opt}, max {self.max} are not 0 < min <= opt <= max")

    def scaled(self, k: int) -> AxisRange:
        return AxisRange(k * self.min, k * self.opt, k * self.max)


@dataclass(frozen=True)
class ShapeRange:
    """One input's shapes in an optimization profile: TensorRT's (min, opt, max), as its demo's
    ``get_input_profile`` gives them per input (JSON: {"min", "opt", "max"}, each a list)."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @classmethod
    def of(cls, spec: TensorSpec, axes: dict[str, AxisRange]) -> ShapeRange:
        """``spec``'s shapes with each dynamic axis at its range's min, opt and max (KeyError: an axis without one)."""
        dims = [axes[d] if isinstance(d, str) else AxisRange(d, d, d) for d in spec.shape]
        return cls(tuple(r.min for r in dims), tuple(r.opt for r in dims), tuple(r.max for r in dims))

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShapeRange:
        return _from_fields(cls, {k: tuple(int(n) for n in v) for k, v in d.items()}, "a profile's shape range")


@dataclass(frozen=True)
class TensorRTFlags:
    """The TensorRT builder settings of an engine key (each changes the plan)."""

    builder_optimization_level: int
    workspace_bytes: int | None  # the tactic workspace cap; None: TensorRT's default
    strongly_typed: bool = True
    weight_streaming: bool = False
    tf32: bool | None = None  # None: a key written before the flag was recorded (its JSON has none)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "tf32" or v is not None}


@dataclass(frozen=True)
class OnnxRuntimeFlags:
    """The onnxruntime optimization settings of an engine key."""

    provider: Provider  # what the model was optimized for
    graph_optimization_level: str
    onnxruntime: str  # the version that optimized it

    def __post_init__(self) -> None:
        object.__setattr__(self, "provider", Provider(self.provider))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "provider": self.provider.value}


KEY_FORMAT = 1  # bump when the meaning of a key field changes, so old engines are rebuilt


@dataclass(frozen=True, kw_only=True)
class EngineKey:
    """Every input of one build (JSON in this order); its hash names the engine file (``engines/cache_key.py``)."""

    format: int = KEY_FORMAT
    backend: Backend  # tensorrt | onnxruntime
    stage: Stage | str
    onnx_sha256: str
    data_sha256: str | None = None  # ONNX external data
    precision: Precision
    profile: dict[str, ShapeRange]  # per input; onnxruntime: empty
    builder_flags: TensorRTFlags | OnnxRuntimeFlags
    tensorrt_version: str | None = None  # TensorRT keys: these three, the machine the plan is bound to
    compute_capability: str | None = None  # "8.7", "9.0"
    gpu_name: str | None = None

    def __post_init__(self) -> None:  # the enums from their JSON values
        for name, parse in (("backend", Backend), ("stage", Stage.parse), ("precision", Precision)):
            object.__setattr__(self, name, parse(getattr(self, name)))

    @property
    def tensorrt(self) -> TensorRTFlags:
        """The TensorRT builder flags (an onnxruntime key has none: ManifestError)."""
        if not isinstance(self.builder_flags, TensorRTFlags):
            raise ManifestError(f"{self.stage}: an {self.backend.value} engine key has no TensorRT builder flags")
        return self.builder_flags

    @property
    def onnxruntime(self) -> OnnxRuntimeFlags:
        """The onnxruntime optimization settings (a TensorRT key has none: ManifestError)."""
        if not isinstance(self.builder_flags, OnnxRuntimeFlags):
            raise ManifestError(f"{self.stage}: an {self.backend.value} engine key has no onnxruntime settings")
        return self.builder_flags

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**d, "backend": self.backend.value, "stage": str(self.stage), "precision": self.precision.value,
                "profile": {n: r.to_dict() for n, r in self.profile.items()}, "builder_flags": self.builder_flags.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineKey:
        flags = TensorRTFlags if Backend(d["backend"]) is Backend.TENSORRT else OnnxRuntimeFlags
        return _from_fields(cls, {**d, "builder_flags": _from_fields(flags, d["builder_flags"], "an engine key's builder_flags"),
                                  "profile": {n: ShapeRange.from_dict(r) for n, r in d["profile"].items()}}, "an engine key")


@dataclass(frozen=True)
class EngineInfo:
    """What a built engine is bound to; the runtime refuses it on any other TensorRT or GPU."""

    key: EngineKey  # every part of the cache key (stage, onnx sha256, profile, flags, versions, GPU)
    key_hash: str
    tensorrt_version: str | None = None
    compute_capability: str | None = None  # "8.7", "9.0"
    gpu_name: str | None = None
    build_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:  # JSON: the key's profile once more, last
        profile = {n: r.to_dict() for n, r in self.key.profile.items()}
        return {**dataclasses.asdict(self), "key": self.key.to_dict(), "profile": profile}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineInfo:
        d = {k: v for k, v in d.items() if k != "profile"}
        return _from_fields(cls, {**d, "key": EngineKey.from_dict(d["key"])}, "an artifact's engine")


@dataclass(frozen=True)
class Validation:
    """How ``export`` checked a graph: onnxruntime against PyTorch fp32 on random inputs (JSON: an artifact's
    ``validation``; ``{}`` in engine folders, which validate nothing)."""

    export_seconds: float | None = None
    max_rel_error: dict[str, float] = field(default_factory=dict)  # per check ("batch1", ...); empty: --no-validate
    tolerance: float | None = None
    metric: str | None = None  # how max_rel_error is computed

    def worst(self) -> float | None:
        return max(self.max_rel_error.values(), default=None)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and v != {}}


@dataclass(frozen=True)
class Source:
    """One part of the weights a bundle was made from (JSON: ``sources.<part>``): its name and sha256, and for the
    checkpoints the loader read (encoder, prior, low-level encoder) what it found in them."""

    sha256: str
    name: str | None = None  # a file or folder of the weights layout, or
    file_name: str | None = None  # a checkpoint the loader read
    found: dict[str, Any] = field(default_factory=dict)  # the loader's record of it (architecture, subject table, ...)

    def to_dict(self) -> dict[str, Any]:
        named = {"file_name": self.file_name} if self.file_name is not None else {"name": self.name}
        return {**named, "sha256": self.sha256, **self.found}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Source:
        found = {k: v for k, v in d.items() if k not in ("sha256", "name", "file_name")}
        return cls(d["sha256"], d.get("name"), d.get("file_name"), found)


@dataclass(frozen=True)
class Artifact:
    stage: Stage | str  # a str only for a stage this version does not know
    precision: Precision
    file: str  # relative to the manifest's folder
    sha256: str
    size_bytes: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    data_file: str | None = None  # ONNX external data
    data_sha256: str | None = None
    validation: Validation = Validation()
    engine: EngineInfo | None = None
    steps: int | None = None  # the step count baked into a per-step-count graph (prior_sampler), else None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["precision"] = self.precision.value
        d["inputs"] = [t.to_dict() for t in self.inputs]
        d["outputs"] = [t.to_dict() for t in self.outputs]
        d["validation"] = self.validation.to_dict()
        d["engine"] = self.engine.to_dict() if self.engine else None
        return d

    @property
    def session_key(self) -> str:
        """How a run names it: the stage, with the step count of a per-step-count graph (``prior_sampler@50``)."""
        return str(self.stage) if self.steps is None else f"{self.stage}@{self.steps}"

    def label(self) -> str:
        """``stage/precision``, with the step count for per-step-count stages: ``prior_sampler@50/fp16``."""
        return f"{self.session_key}/{self.precision.value}"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Artifact:
        d = dict(d)
        d["stage"] = Stage.parse(d["stage"])
        d["precision"] = Precision(d["precision"])
        d["inputs"] = tuple(TensorSpec.from_dict(t) for t in d["inputs"])
        d["outputs"] = tuple(TensorSpec.from_dict(t) for t in d["outputs"])
        what = f"artifact {d['file']}" if "file" in d else "an artifact"
        d["validation"] = _from_fields(Validation, d.get("validation") or {}, f"{what}'s validation")
        d["engine"] = EngineInfo.from_dict(d["engine"]) if d.get("engine") else None
        return _from_fields(cls, d, what)


class _Malformed(ManifestError, ValueError):
    """A part of manifest.json this version cannot read: ``Manifest.from_json`` adds the file and the fix."""


_SCALARS = (bool, int, float, str, type(None))


@functools.cache
def _scalar_kinds(cls) -> dict[str, tuple[type, ...]]:
    """The fields of ``cls`` whose type is a JSON scalar (``int``, ``float | None``, ...) and the types they take."""
    kinds = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint) if isinstance(hint, type(int | None)) else (hint,)
        if args and all(a in _SCALARS for a in args):
            kinds[name] = tuple(args)
    return kinds


def _is_kind(value: Any, kinds: tuple[type, ...]) -> bool:
    """JSON's reading of ``value`` against ``kinds``: an int is a float too, a bool is not a number."""
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, kinds)


def _from_fields(cls, d: dict[str, Any], what: str):
    """Build the dataclass ``cls`` from ``d``; a key it does not know (a newer toolkit wrote it), a field left out
    or a value it refuses (ValueError) is a :class:`_Malformed` naming ``what``."""
    fields = dataclasses.fields(cls)
    unknown = sorted(set(d) - {f.name for f in fields})
    if unknown:
        raise _Malformed(f"{what} has unknown keys {unknown} (written by another version of eeg2img-deploy?)")
    missing = [f.name for f in fields if f.name not in d and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise _Malformed(f"{what} has no field {missing[0]!r}")
    for name, value in d.items():
        kinds = _scalar_kinds(cls).get(name)
        if kinds is not None and not _is_kind(value, kinds):
            wanted = " or ".join(k.__name__ for k in kinds)
            raise _Malformed(f"{what}.{name} is {value!r}, not {wanted}")
    try:
        return cls(**d)
    except ValueError as e:
        raise _Malformed(f"{what}: {e}") from None


@dataclass(frozen=True)
class EEGInfo:
    """The encoder's input trial (the JSON of :class:`~.eeg.spec.EEGSpec`) and whether a whitening ships."""

    channels: tuple[str, ...]
    sfreq: float = 250.0  # Hz
    n_times: int = 250  # samples per trial
    tmin: float = 0.0  # seconds from stimulus onset of the first sample
    whitening: bool = False  # constants hold Constants.EEG_WHITENING, applied by the runtime

    def spec(self):
        """The :class:`~.eeg.spec.EEGSpec` the runtime validates trials against."""
        from .eeg.spec import EEGSpec

        return EEGSpec(channels=self.channels, sfreq=self.sfreq, n_times=self.n_times, tmin=self.tmin)

    @classmethod
    def from_spec(cls, spec, *, whitening: bool = False) -> EEGInfo:
        return cls(tuple(spec.channels), float(spec.sfreq), int(spec.n_times), float(spec.tmin), whitening)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EEGInfo:
        d = dict(d)
        d["channels"] = tuple(str(c) for c in d.get("channels", ()))
        return _from_fields(cls, d, "'eeg'")


@dataclass(frozen=True)
class EncoderInfo:
    """Which EEG encoder the ``encoder`` graph runs (its checkpoint's provenance: ``sources.encoder``; its input:
    the manifest's ``eeg`` section, C channels by name and T samples)."""

    kind: EncoderKind = EncoderKind.ATM  # detected from the checkpoint's keys, or "custom" (--encoder-factory)
    uses_subject_ids: bool = True  # False: the graph takes the EEG alone, and no id is refused
    factory: str | None = None  # custom: MODULE:CALLABLE as given (a .py file by its name)
    factory_sha256: str | None = None  # custom: sha256 of the factory's source file

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderInfo:
        info = _from_fields(cls, d, "settings.encoder")
        return dataclasses.replace(info, kind=EncoderKind(info.kind))


@dataclass(frozen=True)
class RecommendedRun:
    """The run settings the encoder's authors reconstruct with: a run that leaves one unset takes it from here."""

    prior_steps: int | None = None
    guidance: float | None = None  # the prior's classifier-free guidance
    steps: int | None = None  # SDXL-Turbo steps
    source: str | None = None  # where the values come from

    def is_empty(self) -> bool:
        return self.prior_steps is None and self.guidance is None and self.steps is None


@dataclass(frozen=True)
class LowLevelInfo:
    """The low-level path's settings, in bundles that have a low-level encoder."""

    latent_convention: str = "unscaled"  # what the encoder's latents are (models/low_level_encoder.py)


@dataclass(frozen=True)
class BundleSettings:
    """What ``export`` decided; engine folders carry it on, with their own ``max_batch`` and ``axes``."""

    image_size: int  # pixels; latents are image_size / 8
    max_batch: int  # largest batch of the graphs' (or engines') batch axis
    axes: dict[str, AxisRange]  # dynamic axis -> its range: "batch", "batch2" (CFG-doubled), "past" (caption cache)
    num_subjects: int | None  # rows of the encoder's subject table (ids 0..num_subjects-1); None: no table
    latent_channels: int = 4
    steps: tuple[int, ...] = (1, 4)  # SDXL-Turbo step counts with a scheduler table in the constants
    ip_scale: float = 1.0  # the runtime's default IP-Adapter scale (an input of the UNet graph)
    encoder_variant: EncoderVariant = EncoderVariant()
    fp32_only_stages: tuple[str, ...] = ()  # stages exported in fp32 only (numerics), used by fp16 runs too
    opset: int | None = None
    fingerprint: str | None = None  # sources + settings; an unchanged export is a no-op
    low_level: LowLevelInfo | None = None  # bundles with the low-level path only
    encoder: EncoderInfo = EncoderInfo()
    recommended: RecommendedRun = RecommendedRun()  # the encoder's own run settings (BrainFLORA: 10 / 2.0 / 4)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["steps"], d["fp32_only_stages"] = list(self.steps), [str(s) for s in self.fp32_only_stages]
        if self.low_level is None:
            del d["low_level"]
        if self.recommended.is_empty():
            del d["recommended"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BundleSettings:
        d = dict(d)
        d["steps"] = tuple(int(n) for n in d.get("steps", (1, 4)))
        d["axes"] = {n: _from_fields(AxisRange, r, f"settings.axes.{n}") for n, r in d.get("axes", {}).items()}
        d["fp32_only_stages"] = tuple(Stage.parse(s) for s in d.get("fp32_only_stages", ()))
        d["encoder_variant"] = _from_fields(EncoderVariant, d.get("encoder_variant", {}), "settings.encoder_variant")
        d["encoder"] = EncoderInfo.from_dict(d.get("encoder", {}))
        d["recommended"] = _from_fields(RecommendedRun, d.get("recommended", {}), "settings.recommended")
        if d.get("low_level") is not None:
            d["low_level"] = _from_fields(LowLevelInfo, d["low_level"], "settings.low_level")
        return _from_fields(cls, d, "settings")


@dataclass(frozen=True)
class TensorRTSettings:
    """How ``build-engines --backend tensorrt`` wants its engines run (JSON: ``settings.engines``)."""

    preset: str
    static_shapes: bool = False
    cuda_graphs: bool = False
    weight_streaming_budget_bytes: dict[str, int] = field(default_factory=dict)  # stage -> bytes


@dataclass(frozen=True)
class TensorRTEPOptions:
    """The TensorRT execution provider's options every session of an onnxruntime engine folder shares (JSON:
    ``settings.onnxruntime.tensorrt_ep``, in onnxruntime's names); the caches are folders inside the engine folder.
    Per session the runtime adds ``trt_fp16_enable`` and the profile (``onnxrt.trt_ep_options``)."""

    trt_engine_cache_enable: bool = True
    trt_engine_cache_path: str = "trt-ep-cache"
    trt_timing_cache_enable: bool = True
    trt_timing_cache_path: str = "trt-ep-cache"
    trt_fp16_enable: bool | None = None  # recorded by folders before 2026-11-29; the runtime decides per session
    trt_builder_optimization_level: int = 3

    def options(self, folder: Path) -> dict[str, Any]:
        """onnxruntime's provider options, with the caches under ``folder``."""
        return {**self.to_dict(), "trt_engine_cache_path": str(folder / self.trt_engine_cache_path),
                "trt_timing_cache_path": str(folder / self.trt_timing_cache_path)}

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class OnnxRuntimeSettings:
    """What ``build-engines --backend onnxruntime`` optimized for (JSON: ``settings.onnxruntime``)."""

    provider: Provider  # JSON: onnxruntime's name ("CPUExecutionProvider"); either spelling is read
    graph_optimization_level: str
    tensorrt_ep: TensorRTEPOptions | None = None  # --provider tensorrt only

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "provider", Provider.parse(self.provider))
        except ValueError:
            raise ManifestError(f"manifest.json's settings.onnxruntime.provider {self.provider} is not one of "
                                f"{', '.join(p.execution_provider for p in Provider)}") from None


@dataclass(frozen=True)
class EngineSettings:
    """The engine folder's own settings; exactly one of the two is set."""

    tensorrt: TensorRTSettings | None = None
    onnxruntime: OnnxRuntimeSettings | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.tensorrt is not None:
            d["engines"] = dataclasses.asdict(self.tensorrt)
        if self.onnxruntime is not None:
            ort = self.onnxruntime
            d["onnxruntime"] = {"provider": ort.provider.execution_provider, "graph_optimization_level": ort.graph_optimization_level,
                                **({"tensorrt_ep": ort.tensorrt_ep.to_dict()} if ort.tensorrt_ep else {})}
        return d

    @classmethod
    def from_settings(cls, d: dict[str, Any]) -> EngineSettings | None:
        trt, ort = d.get("engines"), d.get("onnxruntime")
        if trt is None and ort is None:
            return None
        return cls(
            tensorrt=_from_fields(TensorRTSettings, trt, "settings.engines") if trt is not None else None,
            onnxruntime=_from_fields(OnnxRuntimeSettings, {**ort, "tensorrt_ep": _from_fields(
                TensorRTEPOptions, ort["tensorrt_ep"], "settings.onnxruntime.tensorrt_ep") if ort.get("tensorrt_ep") else None},
                "settings.onnxruntime") if ort is not None else None,
        )


ENGINE_SETTINGS_KEYS = ("engines", "onnxruntime")  # the JSON keys of EngineSettings inside "settings"


@dataclass(frozen=True)
class ParentInfo:
    """The bundle an engine folder was built from."""

    manifest_sha256: str
    bundle: str  # the bundle folder's name
    path: str | None = None  # the bundle folder relative to the engine folder, as it was at build time

    def folder(self, engine_folder: str | Path) -> Path | None:
        """The parent bundle folder if it is still where it was (it has a manifest), else None."""
        if self.path is None:
            return None
        p = Path(os.path.normpath(Path(engine_folder) / self.path))
        return p if (p / MANIFEST_NAME).is_file() else None


@dataclass(frozen=True)
class Manifest:
    backend: Backend
    artifacts: tuple[Artifact, ...]
    constants_file: str
    constants_sha256: str
    eeg: EEGInfo
    bundle: BundleSettings  # JSON: "settings", with the engine settings' keys beside these
    engine: EngineSettings | None = None  # engine folders only
    sources: dict[str, Source] = field(default_factory=dict)  # the weights' parts, by name
    libraries: dict[str, str] = field(default_factory=dict)
    parent: ParentInfo | None = None  # engines: the bundle manifest they were built from
    toolkit_version: str = __version__
    format_version: int = FORMAT_VERSION
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    # ---- lookup -----------------------------------------------------------------------------
    def stages(self) -> list[Stage | str]:
        return sorted({a.stage for a in self.artifacts}, key=_stage_order)

    def precisions(self, stage: str, steps: int | None = None) -> list[Precision]:
        return [a.precision for a in self.artifacts if a.stage == stage and (steps is None or a.steps == steps)]

    def step_counts(self, stage: str) -> list[int]:
        """The step counts a per-step-count stage (``prior_sampler``) was exported for, largest first."""
        return sorted({a.steps for a in self.artifacts if a.stage == stage and a.steps is not None}, reverse=True)

    def artifact(self, stage: str, precision: Precision | str, steps: int | None = None) -> Artifact:
        precision = Precision(precision)
        for a in self.artifacts:
            if a.stage == stage and a.precision == precision and (steps is None or a.steps == steps):
                return a
        have = ", ".join(a.label() for a in self.artifacts) or "nothing"
        what = f"stage {stage}" + (f" for {steps} steps" if steps is not None else "")
        raise ManifestError(
            f"{what} in {precision.value} is not in this {self.backend.value} manifest (it has {have}): "
            f"export it with `eeg2img-deploy export --precision {precision.value}`"
            + (" and build engines again" if self.backend is not Backend.ONNX else "")
        )

    def replace(self, **changes: Any) -> Manifest:
        return dataclasses.replace(self, **changes)

    # ---- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"format": "eeg2img-deploy", "backend": self.backend.value}
        d["artifacts"] = [a.to_dict() for a in self.artifacts]
        d["constants_file"], d["constants_sha256"] = self.constants_file, self.constants_sha256
        d["eeg"] = self.eeg.to_dict()
        d["settings"] = {**self.bundle.to_dict(), **(self.engine.to_dict() if self.engine else {})}
        d["sources"], d["libraries"] = {k: s.to_dict() for k, s in self.sources.items()}, self.libraries
        d["parent"] = None if self.parent is None else {k: v for k, v in dataclasses.asdict(self.parent).items() if v is not None}
        d["toolkit_version"], d["format_version"], d["created"] = self.toolkit_version, self.format_version, self.created
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        if d.get("format") != "eeg2img-deploy":
            raise ManifestError("manifest.json is not an eeg2img-deploy manifest (no 'format': 'eeg2img-deploy')")
        if d.get("format_version") != FORMAT_VERSION:
            raise ManifestError(
                f"manifest format version {d.get('format_version')} is not the supported {FORMAT_VERSION}: "
                "export the bundle again with this version of eeg2img-deploy"
            )
        d = {k: v for k, v in d.items() if k != "format"}
        known = ({f.name for f in dataclasses.fields(cls)} - {"bundle", "engine"}) | {"settings"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ManifestError(f"manifest.json has unknown fields {unknown}: it was written by another tool version")
        settings = dict(d.pop("settings"))
        d["engine"] = EngineSettings.from_settings(settings)
        d["bundle"] = BundleSettings.from_dict({k: v for k, v in settings.items() if k not in ENGINE_SETTINGS_KEYS})
        d["backend"] = Backend(d["backend"])
        d["artifacts"] = tuple(Artifact.from_dict(a) for a in d["artifacts"])
        d["eeg"] = EEGInfo.from_dict(d["eeg"])
        d["sources"] = {k: Source.from_dict(s) for k, s in d.get("sources", {}).items()}
        d["parent"] = _from_fields(ParentInfo, d["parent"], "parent") if d.get("parent") else None
        return _from_fields(cls, d, "the manifest")

    @classmethod
    def from_json(cls, text: str, where: str = MANIFEST_NAME) -> Manifest:
        """``where``: the file, for messages (``read_manifest`` gives its path)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{where} is not valid JSON ({e}): the folder was not written completely") from e
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as e:
            engines = isinstance(data, dict) and data.get("backend") not in (None, Backend.ONNX.value)
            redo = "build the engines again (`eeg2img-deploy build-engines`)" if engines else \
                "export the bundle again (`eeg2img-deploy export`)"
            raise ManifestError(f"{where} is malformed: {_what_is_missing(e)}; it was edited or written by another "
                                f"tool: {redo}") from e


def _what_is_missing(e: Exception) -> str:
    """What is wrong, from the KeyError of a section left out or the ValueError of a part (:func:`_from_fields`)."""
    if isinstance(e, KeyError):
        return f"the field {e.args[0]!r} is missing"
    return str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"


def library_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``names`` (absent ones left out), with this toolkit's, for manifests and reports."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"eeg2img-deploy": __version__}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _stage_order(stage: str) -> int:
    return STAGES.index(stage) if stage in STAGES else len(STAGES)


def write_manifest(folder: str | Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically. Call it last: its presence marks the folder complete."""
    path = Path(folder) / MANIFEST_NAME
    atomic_write_text(path, manifest.to_json())
    return path


def read_manifest(folder: str | Path) -> Manifest:
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise ManifestError(f"{folder} is not a folder: pass a bundle from `eeg2img-deploy export` or an engine folder")
    if not path.is_file():
        raise ManifestError(
            f"{folder} has no {MANIFEST_NAME}: it is not a bundle, or its export/build was interrupted; "
            "run `eeg2img-deploy export` (or `build-engines`) again"
        )
    return Manifest.from_json(path.read_text(encoding="utf-8"), where=str(path))



@dataclass(frozen=True)
class ServedStage:
    """One runtime session of a ``triton-repo`` repository's eeg2img model: the repository model that runs it."""

    model: str
    stage: Stage | str
    precision: Precision
    steps: int | None = None  # a per-step-count graph's step count (``prior_sampler@50``)


@dataclass(frozen=True)
class ServedModels:
    """``repo.json``, the second on-disk contract: what ``triton-repo`` chose, read by the eeg2img model in
    Triton (``serve/bls_model.py``): the runtime's session name -> its :class:`ServedStage`, and the VAE."""

    vae: str
    models: dict[str, ServedStage]

    FILE: ClassVar[str] = "repo.json"

    def write(self, folder: Path) -> None:
        d = {"vae": self.vae, "models": {k: {"model": m.model, "stage": str(m.stage), "precision": m.precision.value,
                                             "steps": m.steps} for k, m in self.models.items()}}
        atomic_write_text(folder / self.FILE, json.dumps(d, indent=2) + "\n")

    @classmethod
    def read(cls, folder: Path) -> ServedModels:
        d = json.loads((folder / cls.FILE).read_text(encoding="utf-8"))
        models = {k: ServedStage(m["model"], Stage.parse(m["stage"]), Precision(m["precision"]), m.get("steps"))
                  for k, m in d["models"].items()}
        return cls(d["vae"], models)
