"""The manifest: the one contract between export, build-engines and the runtime.

A bundle (``export``) and an engine folder (``build-engines``) each hold a ``manifest.json``, written
last and atomically: a folder without one is unfinished. It lists every artifact with its sha256,
I/O specs and precision, the constants file, the EEG input spec, where the weights came from, and
the library versions that made it. Nothing here imports torch, onnx or tensorrt.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ManifestError
from .fileio import atomic_write_text, sha256_file

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
STAGES = ("encoder", "prior", "unet", "vae_decoder", "taesd_decoder", "low_level_encoder", "vae_encoder", "text_encoders",
          "projector", "caption_prefill", "caption_decoder")


class Precision(str, enum.Enum):
    FP32 = "fp32"
    FP16 = "fp16"


class Backend(str, enum.Enum):
    ONNX = "onnx"  # an export bundle: plain ONNX files
    ONNXRUNTIME = "onnxruntime"  # ORT-optimized models
    TENSORRT = "tensorrt"  # serialized TensorRT engines


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
class EngineInfo:
    """What a built engine is bound to; the runtime refuses it on any other TensorRT or GPU."""

    key: dict[str, Any]  # every part of the cache key (stage, onnx sha256, profile, flags, versions, GPU)
    key_hash: str
    tensorrt_version: str | None = None
    compute_capability: str | None = None  # "8.7", "9.0"
    gpu_name: str | None = None
    build_seconds: float = 0.0
    profile: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineInfo:
        return cls(**d)


@dataclass(frozen=True)
class Artifact:
    stage: str
    precision: Precision
    file: str  # relative to the manifest's folder
    sha256: str
    size_bytes: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    data_file: str | None = None  # ONNX external data
    data_sha256: str | None = None
    validation: dict[str, Any] = field(default_factory=dict)
    engine: EngineInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["precision"] = self.precision.value
        d["inputs"] = [t.to_dict() for t in self.inputs]
        d["outputs"] = [t.to_dict() for t in self.outputs]
        d["engine"] = self.engine.to_dict() if self.engine else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Artifact:
        d = dict(d)
        d["precision"] = Precision(d["precision"])
        d["inputs"] = tuple(TensorSpec.from_dict(t) for t in d["inputs"])
        d["outputs"] = tuple(TensorSpec.from_dict(t) for t in d["outputs"])
        d["engine"] = EngineInfo.from_dict(d["engine"]) if d.get("engine") else None
        return cls(**d)


@dataclass(frozen=True)
class Manifest:
    backend: Backend
    artifacts: tuple[Artifact, ...]
    constants_file: str
    constants_sha256: str
    eeg: dict[str, Any]  # EEGSpec.to_dict()
    settings: dict[str, Any]  # image_size, max_batch, opset, encoder variant, num_subjects, ...
    sources: dict[str, Any] = field(default_factory=dict)  # weights: path name + sha256 each
    libraries: dict[str, str] = field(default_factory=dict)
    parent: dict[str, Any] | None = None  # engines: the bundle manifest they were built from
    toolkit_version: str = __version__
    format_version: int = FORMAT_VERSION
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    # ---- lookup -----------------------------------------------------------------------------
    def stages(self) -> list[str]:
        return sorted({a.stage for a in self.artifacts}, key=_stage_order)

    def precisions(self, stage: str) -> list[Precision]:
        return [a.precision for a in self.artifacts if a.stage == stage]

    def artifact(self, stage: str, precision: Precision | str) -> Artifact:
        precision = Precision(precision)
        for a in self.artifacts:
            if a.stage == stage and a.precision == precision:
                return a
        have = ", ".join(f"{a.stage}/{a.precision.value}" for a in self.artifacts) or "nothing"
        raise ManifestError(
            f"stage {stage!r} in {precision.value} is not in this {self.backend.value} manifest (it has {have}): "
            f"export it with `eeg2img-deploy export --precision {precision.value}`"
            + (" and build engines again" if self.backend is not Backend.ONNX else "")
        )

    def replace(self, **changes: Any) -> Manifest:
        return dataclasses.replace(self, **changes)

    # ---- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["backend"] = self.backend.value
        d["artifacts"] = [a.to_dict() for a in self.artifacts]
        return {"format": "eeg2img-deploy", **d}

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
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ManifestError(f"manifest.json has unknown fields {unknown}: it was written by another tool version")
        d["backend"] = Backend(d["backend"])
        d["artifacts"] = tuple(Artifact.from_dict(a) for a in d["artifacts"])
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"manifest.json is not valid JSON ({e}): the folder was not written completely") from e
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, ManifestError):
                raise
            raise ManifestError(f"manifest.json is malformed ({type(e).__name__}: {e})") from e


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
    return Manifest.from_json(path.read_text(encoding="utf-8"))


def verify_files(folder: str | Path, manifest: Manifest, stages: list[str] | None = None) -> None:
    """Check every file the manifest names (or those of ``stages``) against its recorded sha256."""
    folder = Path(folder)
    checks: list[tuple[str, str | None]] = [(manifest.constants_file, manifest.constants_sha256)]
    for a in manifest.artifacts:
        if stages is None or a.stage in stages:
            checks.append((a.file, a.sha256))
            if a.data_file:
                checks.append((a.data_file, a.data_sha256))
    for name, expected in checks:
        path = folder / name
        if not path.is_file():
            raise ManifestError(f"{path} is named in the manifest but missing: export or build the folder again")
        if expected is not None and sha256_file(path) != expected:
            raise ManifestError(
                f"{path} does not match the sha256 in manifest.json (changed or corrupt since it was written): "
                "export or build the folder again"
            )
