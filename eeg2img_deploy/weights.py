"""Where each component of a weights folder lives, for real installs and the tiny set alike.

``--weights DIR`` is resolved into a :class:`WeightsLayout`; each component can be overridden
(``--encoder --prior --sdxl --ip-adapter --taesd``). SDXL-Turbo and IP-Adapter may also come from the
Hugging Face cache (never downloaded: ``local_files_only``). No torch import here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import WeightsNotFoundError

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
SDXL_REPO = "stabilityai/sdxl-turbo"
IP_ADAPTER_REPO = "h94/IP-Adapter"
IP_ADAPTER_SUBFOLDER = "sdxl_models"
IP_ADAPTER_NAMES = ("ip-adapter_sdxl_vit-h.safetensors", "ip-adapter_sdxl_vit-h.bin")
GIT_REPO = "microsoft/git-large-coco"  # the paper's captioner (optional: only for captions)

@dataclass(frozen=True)
class IPAdapterLocation:
    folder: str  # a local folder or an HF repo id resolved through the cache
    subfolder: str
    weight_name: str

    @property
    def file(self) -> Path:
        return Path(self.folder) / self.subfolder / self.weight_name


@dataclass(frozen=True)
class WeightsLayout:
    encoder: Path
    prior: Path
    sdxl: Path
    ip_adapter: IPAdapterLocation
    taesd: Path | None = None
    low_level: Path | None = None  # the optional low-level encoder (EEG -> VAE latent)
    git: Path | None = None  # GIT captioner folder; captions need it and the projector
    projector: Path | None = None
    encoder_factory: str | None = None  # --encoder-factory MODULE:CALLABLE: a user's model for the encoder checkpoint
    encoder_channels: Path | None = None  # --encoder-channels FILE: that model's EEG channels (default: the paper's 63)

    def describe(self) -> dict[str, str | None]:
        custom = {"encoder_factory": self.encoder_factory,
                  "encoder_channels": str(self.encoder_channels) if self.encoder_channels else None}
        return {**{k: v for k, v in custom.items() if v is not None},
            "encoder": str(self.encoder),
            "prior": str(self.prior),
            "sdxl": str(self.sdxl),
            "ip_adapter": str(self.ip_adapter.file),
            "taesd": str(self.taesd) if self.taesd else None,
            "low_level": str(self.low_level) if self.low_level else None,
            "git": str(self.git) if self.git else None,
            "projector": str(self.projector) if self.projector else None,
        }


def _missing(what: str, looked: list[Path | str], flag: str) -> WeightsNotFoundError:
    """One line (it was the whole layout, twelve lines): the layout is in the README and in a tiny set."""
    where = ", ".join(str(p) for p in looked) or "nowhere (no --weights given)"
    return WeightsNotFoundError(
        f"no {what} found (looked in {where}): pass {flag} PATH, or --weights DIR laid out as README's 'Your own "
        "weights' shows (`eeg2img-deploy init-tiny --out DIR` writes a complete tiny example)"
    )


def _single_checkpoint(folder: Path, what: str, flag: str) -> Path:
    found = sorted(p for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
    if len(found) == 1:
        return found[0]
    if not found:
        raise _missing(what, [folder], flag)
    names = ", ".join(p.name for p in found)
    raise WeightsNotFoundError(f"{folder} holds several {what} checkpoints ({names}): choose one with {flag} PATH")


def _checkpoint(root: Path | None, override: str | os.PathLike | None, sub: str, what: str, flag: str) -> Path:
    if override is not None:
        path = Path(override)
        if path.is_dir():
            return _single_checkpoint(path, what, flag)
        if not path.is_file():
            raise WeightsNotFoundError(f"{flag} {path} does not exist: give the {what} checkpoint's path")
        return path
    if root is None:
        raise _missing(what, [], flag)
    folder = root / sub
    if folder.is_dir():
        return _single_checkpoint(folder, what, flag)
    raise _missing(what, [folder], flag)


def hf_cache_snapshot(repo_id: str) -> Path | None:
    """The newest local snapshot of ``repo_id`` in the Hugging Face cache, without any network."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # the hub raises several types for "not cached"; all mean the same here
        return None


def _sdxl(root: Path | None, override: str | os.PathLike | None) -> Path:
    looked: list[Path | str] = []
    for cand in ([Path(override)] if override else []) + ([root / "sdxl-turbo"] if root else []):
        looked.append(cand)
        if (cand / "model_index.json").is_file():
            return cand
        if override:
            raise WeightsNotFoundError(f"--sdxl {cand} is not a diffusers pipeline folder (no model_index.json)")
    snap = hf_cache_snapshot(SDXL_REPO)
    looked.append(f"HF cache {SDXL_REPO}")
    if snap is not None and (snap / "model_index.json").is_file():
        return snap
    raise _missing("SDXL-Turbo diffusers folder", looked, "--sdxl")


def _ip_adapter(root: Path | None, override: str | os.PathLike | None) -> IPAdapterLocation:
    if override is not None and Path(override).is_file():
        p = Path(override)
        return IPAdapterLocation(str(p.parent), "", p.name)
    looked: list[Path | str] = []

    def search(folder: Path) -> IPAdapterLocation | None:
        for sub in (IP_ADAPTER_SUBFOLDER, ""):
            for name in IP_ADAPTER_NAMES:
                looked.append(folder / sub / name)
                if (folder / sub / name).is_file():
                    return IPAdapterLocation(str(folder), sub, name)
        return None

    for folder in ([Path(override)] if override else []) + ([root / "ip-adapter"] if root else []):
        if found := search(folder):
            return found
    if not override and (snap := hf_cache_snapshot(IP_ADAPTER_REPO)) is not None:
        if found := search(snap):
            return found
    raise _missing("IP-Adapter SDXL ViT-H weights", looked[:4] + [f"HF cache {IP_ADAPTER_REPO}"], "--ip-adapter")


def _git(root: Path | None, override: str | os.PathLike | None) -> Path | None:
    if override is not None:
        if not (Path(override) / "config.json").is_file():
            raise WeightsNotFoundError(f"--git {override} is not a transformers model folder (no config.json)")
        return Path(override)
    if root is not None and (root / "git-large-coco" / "config.json").is_file():
        return root / "git-large-coco"
    snap = hf_cache_snapshot(GIT_REPO)
    return snap if snap is not None and (snap / "config.json").is_file() else None


def resolve_weights(
    weights: str | os.PathLike | None = None,
    *,
    encoder: str | os.PathLike | None = None,
    prior: str | os.PathLike | None = None,
    sdxl: str | os.PathLike | None = None,
    ip_adapter: str | os.PathLike | None = None,
    taesd: str | os.PathLike | None = None,
    low_level: str | os.PathLike | None = None,
    git: str | os.PathLike | None = None,
    projector: str | os.PathLike | None = None,
    encoder_factory: str | None = None,
    encoder_channels: str | os.PathLike | None = None,
) -> WeightsLayout:
    root = Path(weights) if weights is not None else None
    if root is not None and not root.is_dir():
        raise WeightsNotFoundError(f"--weights {root} is not a folder")
    taesd_path: Path | None = None
    if taesd is not None:
        taesd_path = Path(taesd)
        if not (taesd_path / "config.json").is_file():
            raise WeightsNotFoundError(f"--taesd {taesd_path} is not an AutoencoderTiny folder (no config.json)")
    elif root is not None and (root / "taesdxl" / "config.json").is_file():
        taesd_path = root / "taesdxl"
    return WeightsLayout(
        encoder=_checkpoint(root, encoder, "encoder", "EEG encoder", "--encoder"),
        prior=_checkpoint(root, prior, "prior", "diffusion prior", "--prior"),
        sdxl=_sdxl(root, sdxl),
        ip_adapter=_ip_adapter(root, ip_adapter),
        taesd=taesd_path,
        low_level=_optional_checkpoint(root, low_level, "low-level", "low-level encoder", "--low-level-encoder"),
        git=_git(root, git),
        projector=_optional_checkpoint(root, projector, "pixel-projector", "PixelProjector", "--projector"),
        encoder_factory=encoder_factory,
        encoder_channels=Path(encoder_channels) if encoder_channels is not None else None,
    )


def _optional_checkpoint(root: Path | None, override, sub: str, what: str, flag: str) -> Path | None:
    """An optional component: given explicitly, or present in its subfolder; otherwise None."""
    if override is None and (root is None or not (root / sub).is_dir()):
        return None
    return _checkpoint(root, override, sub, what, flag)
