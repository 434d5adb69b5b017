"""Load the paper's encoder and prior checkpoints, strictly, and say exactly what did not match.

Only tensors are read: ``torch.load(..., weights_only=True)`` never runs pickled code from a
downloaded file. The model's size (subject table rows, number of ``subject_wise_linear`` entries)
is read from the checkpoint itself, because paper-era and refactor checkpoints differ.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import torch
from torch import nn

from eeg2img_deploy.errors import CheckpointError, WeightsNotFoundError
from eeg2img_deploy.fileio import sha256_file
from eeg2img_deploy.models.atm_encoder import ATMEncoder, EncoderVariant
from eeg2img_deploy.models.diffusion_prior import DiffusionPriorUNet
from eeg2img_deploy.models.low_level_encoder import (
    LATENT_CONVENTIONS,
    LINEAR_PREFIX,
    LowLevelArchitecture,
    LowLevelEncoder,
)

TORCH_SUFFIXES = (".pth", ".pt", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
SUBJECT_TABLE_KEY = "encoder.enc_embedding.subject_embedding.subject_embedding.weight"
_SUBJECT_LINEAR = re.compile(r"^subject_wise_linear\.(\d+)\.")
_MAX_LISTED = 10  # keys listed per kind of mismatch; the rest are counted


@dataclass(frozen=True)
class EncoderProvenance:
    file_name: str
    sha256: str
    num_subjects: int
    num_subject_linears: int
    token_slice: str
    positional_embedding: bool
    num_parameters: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PriorProvenance:
    file_name: str
    sha256: str
    cond_dim: int
    num_parameters: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file into a flat ``{key: tensor}`` dict."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"checkpoint {path} does not exist: check the path or download the weights")
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001 - SafetensorError, or an OSError of a damaged file
            raise unreadable_safetensors(path, exc) from None
    elif suffix in TORCH_SUFFIXES:
        _check_torch_file(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a pickled module, or a corrupt / truncated file
            raise CheckpointError(
                f"cannot read {path.name} as a tensor-only checkpoint ({exc.__class__.__name__}: {exc}); "
                "if it holds a whole pickled model, re-save it with torch.save(model.state_dict(), path)"
            ) from exc
    else:
        raise CheckpointError(
            f"{path.name}: unsupported file type {suffix!r}, expected one of "
            f"{', '.join(TORCH_SUFFIXES + (SAFETENSORS_SUFFIX,))}"
        )
    return _unwrap(state, path)


def unreadable_safetensors(path: Path, exc: Exception) -> CheckpointError:
    """A .safetensors file safetensors cannot read (truncated, damaged): before, its error was a traceback."""
    return CheckpointError(f"cannot read {path} as a safetensors file ({exc.__class__.__name__}: {exc}): it is "
                           "damaged or incomplete; copy or download it again")


def _check_torch_file(path: Path) -> None:
    """torch.save writes a zip archive (or, before torch 1.6, a pickle): anything else is named as such,
    where torch.load would fail with an unrelated IndexError or KeyError."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return
    if len(head) > 8 and head[8:9] == b"{":  # an 8-byte header length, then JSON: a safetensors file
        raise CheckpointError(f"{path.name} is a safetensors file with a {path.suffix} name: rename it to "
                              f"{path.stem}.safetensors")
    raise CheckpointError(f"{path} is not a PyTorch checkpoint (torch.save writes a zip archive; this file "
                          f"starts {head[:8]!r}): pass the .pth/.pt file that torch.save wrote")


def _is_state_dict(value: object) -> TypeGuard[dict[Any, torch.Tensor]]:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _unwrap(state: object, path: Path) -> dict[str, torch.Tensor]:
    # Training scripts save the weights inside a wrapper: {'state_dict': ...}, {'model': ...}, the lab's
    # closed-loop code {'eeg_model_state_dict': ..., 'epoch': ...}, often with optimizer state beside
    # them; a model trained under nn.DataParallel prefixes every key with 'module.'. None of this
    # changes the weights, so any wrapper holding exactly one state dict of tensors is accepted.
    if isinstance(state, dict) and not _is_state_dict(state):
        inner = [k for k, v in state.items() if _is_state_dict(v)]
        if len(inner) != 1:
            found = ", ".join(f"{k!r} ({type(v).__name__})" for k, v in list(state.items())[:8]) or "nothing"
            why = "no" if not inner else f"{len(inner)} ({', '.join(map(repr, inner))}), not exactly one"
            raise CheckpointError(
                f"{path.name} holds {why} state dict of tensors; its keys: {found}: save the model's weights "
                "alone with torch.save(model.state_dict(), path), or pass the right file"
            )
        state = state[inner[0]]
    if not _is_state_dict(state):
        raise CheckpointError(
            f"{path.name} does not hold a state dict of tensors (found {type(state).__name__}); "
            "save it with torch.save(model.state_dict(), path)"
        )
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], what: str, hint: str | None = None) -> None:
    """Raise ``CheckpointError`` listing missing, unexpected and misshaped keys (none tolerated); ``hint``: the fix."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    problems = []
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    misshaped = [k for k in expected if k in found and expected[k] != found[k]]
    if missing:
        problems.append("missing keys: " + _listing(missing, lambda k: f"{k} {list(expected[k])}"))
    if unexpected:
        problems.append("unexpected keys: " + _listing(unexpected, lambda k: f"{k} {list(found[k])}"))
    if misshaped:
        problems.append(
            "misshaped keys: "
            + _listing(misshaped, lambda k: f"{k} expected {list(expected[k])}, found {list(found[k])}")
        )
    if problems:
        hint = hint or ("Check that the file is the right component (encoder vs prior) saved with "
                        "torch.save(model.state_dict()) from the paper's code, unmodified.")
        raise CheckpointError(f"{what} does not match the model ({'; '.join(problems)}). {hint}")


def _listing(keys: list[str], describe) -> str:
    shown = ", ".join(describe(k) for k in keys[:_MAX_LISTED])
    return shown + (f" and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else "")


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_encoder(
    path: str | Path, variant: EncoderVariant = EncoderVariant()
) -> tuple[ATMEncoder, EncoderProvenance]:
    """Build an eval-mode ``ATMEncoder`` sized from the checkpoint and load it strictly."""
    path = Path(path)
    return atm_from_state(load_state_dict_file(path), path, variant)


def atm_from_state(state: dict[str, torch.Tensor], path: Path, variant: EncoderVariant) -> tuple[ATMEncoder, EncoderProvenance]:
    """``load_encoder`` on a state dict already read from ``path``."""
    what = f"encoder checkpoint {path.name}"
    if SUBJECT_TABLE_KEY not in state:
        raise CheckpointError(
            f"{what} has no {SUBJECT_TABLE_KEY}: it is not an ATM-S encoder state dict "
            "(is it the diffusion prior?); pass the encoder's .pth"
        )
    num_subjects = state[SUBJECT_TABLE_KEY].shape[0]
    linear_ids = {int(m.group(1)) for k in state if (m := _SUBJECT_LINEAR.match(k))}
    num_linears = max(linear_ids) + 1 if linear_ids else 0
    if num_linears == 0:
        raise CheckpointError(f"{what} has no subject_wise_linear.N.* keys; expected 1 or 2 entries")
    model = ATMEncoder(num_subjects, num_linears, variant)
    check_state_dict(model, state, what)
    model.load_state_dict(state, strict=True)
    model.eval()
    provenance = EncoderProvenance(
        file_name=path.name,
        sha256=sha256_file(path),
        num_subjects=num_subjects,
        num_subject_linears=num_linears,
        token_slice=variant.token_slice,
        positional_embedding=variant.positional_embedding,
        num_parameters=num_parameters(model),
    )
    return model, provenance


def load_prior(path: str | Path) -> tuple[DiffusionPriorUNet, PriorProvenance]:
    """Build an eval-mode ``DiffusionPriorUNet`` (cond_dim 1024) and load it strictly."""
    path = Path(path)
    state = load_state_dict_file(path)
    model = DiffusionPriorUNet()
    check_state_dict(model, state, f"prior checkpoint {path.name}")
    model.load_state_dict(state, strict=True)
    model.eval()
    provenance = PriorProvenance(
        file_name=path.name,
        sha256=sha256_file(path),
        cond_dim=model.cond_dim,
        num_parameters=num_parameters(model),
    )
    return model, provenance


# ---- the low-level encoder ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LowLevelProvenance:
    file_name: str
    sha256: str
    architecture: dict
    latent_convention: str
    num_parameters: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_UPSAMPLER_WEIGHT = re.compile(r"^upsampler\.(\d+)\.weight$")


def low_level_architecture(state: dict[str, torch.Tensor], what: str) -> LowLevelArchitecture:
    """Read generation, widths and head from the keys and shapes (the load stays strict: see the caller)."""
    generation = next((g for g, prefix in LINEAR_PREFIX.items() if f"{prefix}.0.weight" in state), None)
    if generation is None:
        raise CheckpointError(
            f"{what} has neither subject_wise_linear.0.weight (paper era) nor subject_linear.0.weight (2025 "
            "refactor): it is not a low-level encoder state dict; pass the encoder_low_level checkpoint to --low-level-encoder"
        )
    prefix = LINEAR_PREFIX[generation]
    linear_ids = {int(m.group(1)) for k in state if (m := re.match(rf"^{prefix}\.(\d+)\.", k))}
    features, samples = state[f"{prefix}.0.weight"].shape
    convs = sorted((int(m.group(1)), state[k]) for k in state if (m := _UPSAMPLER_WEIGHT.match(k)) and state[k].ndim == 4)
    if not convs or samples != 250:
        raise CheckpointError(f"{what}: {prefix}.0.weight is {list(state[f'{prefix}.0.weight'].shape)} and the "
                              f"upsampler has {len(convs)} ConvTranspose2d layers; expected [128, 250] and 7-8 layers")
    # ConvTranspose2d weights are (in, out, k, k): 4x4 kernels double the size, 1x1 ones form the head
    widths = tuple(int(w.shape[1]) for _, w in convs if w.shape[-1] == 4)
    head = tuple(int(w.shape[1]) for _, w in convs[len(widths):-1])
    arch = LowLevelArchitecture(generation=generation, num_linears=max(linear_ids) + 1, linear_features=int(features),
                                widths=widths, head=head, logit_scale="logit_scale" in state)
    return arch


def low_level_encoder_from_state(state: dict[str, torch.Tensor], what: str) -> LowLevelEncoder:
    """An eval-mode ``LowLevelEncoder`` holding ``state``'s tensors; every key and shape must match."""
    arch = low_level_architecture(state, what)
    with torch.device("meta"):  # no init cost: the paper's first layer alone has 132 M weights
        model = LowLevelEncoder(arch)
    check_state_dict(model, state, what)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def load_low_level_encoder(path: str | Path, latent_convention: str = "unscaled") -> tuple[LowLevelEncoder, LowLevelProvenance]:
    """Build an eval-mode ``LowLevelEncoder`` shaped like the checkpoint and load it strictly."""
    if latent_convention not in LATENT_CONVENTIONS:
        raise ValueError(f"latent convention must be one of {LATENT_CONVENTIONS}, got {latent_convention!r}")
    path = Path(path)
    model = low_level_encoder_from_state(load_state_dict_file(path), f"low-level encoder checkpoint {path.name}")
    provenance = LowLevelProvenance(
        file_name=path.name,
        sha256=sha256_file(path),
        architecture=model.arch.to_dict(),
        latent_convention=latent_convention,
        num_parameters=num_parameters(model),
    )
    return model, provenance
