"""One loader for every EEG encoder: its kind from the checkpoint's keys (or ``--encoder-factory``), strict
loading, and the contract every encoder keeps.

The contract: ``forward(eeg (B, C, T) float32, subject_ids (B,) int64) -> (B, 1024)`` in the CLIP ViT-H-14
image-embedding space the prior reads, deterministic in eval mode, moved by the EEG (and, when the module
reads them at all, by the subject ids). :func:`check_contract` runs it on random trials before anything
else uses the module, so ``reference`` and ``export`` refuse a broken encoder the same way.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..eeg.spec import DEFAULT_SPEC, EEGSpec, encoder_spec
from ..errors import CheckpointError, EncoderContractError
from ..fileio import sha256_file
from ..names import EncoderKind
from .atm_encoder import EncoderVariant
from .brainflora import RECONSTRUCTION, TOWER, BrainFloraArchitecture, BrainFloraEncoder
from .checkpoints import SUBJECT_TABLE_KEY, atm_from_state, check_state_dict, load_state_dict_file, num_parameters

log = logging.getLogger(__name__)

EMBED_DIM = 1024  # the prior's condition: an open_clip ViT-H-14 image embedding
SENSITIVITY_MIN = 1e-3  # an input must move the output 100x the encoder's fp32 parity tolerance (1e-5)
_BF = f"encoder.{TOWER}."
_BF_CONVS = re.compile(rf"^{re.escape(_BF)}encoder\.enc_embedding\.value_embeddings\.(\d+)\.tokenConv\.weight$")


@dataclass
class LoadedEncoder:
    module: nn.Module  # eval mode
    kind: EncoderKind
    spec: EEGSpec  # the trials it takes
    num_subjects: int | None  # rows of its subject table (ATM); None: ids are passed as they are
    provenance: dict = field(default_factory=dict)  # for result.json and the manifest's sources
    uses_subject_ids: bool = True  # measured by check_contract; False: its graph takes the EEG alone
    recommended: dict = field(default_factory=dict)  # its authors' run settings (manifest.RecommendedRun's fields)


def load_eeg_encoder(path: str | Path, *, variant: EncoderVariant = EncoderVariant(), factory: str | None = None,
                     channels: str | Path | None = None) -> LoadedEncoder:
    """The encoder in ``path``: ATM-S or BrainFLORA by its keys, or built by ``factory`` (``--encoder-factory``)."""
    path = Path(path)
    if factory is not None:
        loaded = _load_custom(factory, path, channels)
    elif channels is not None:
        raise CheckpointError("--encoder-channels describes the input of an --encoder-factory encoder; ATM-S and "
                              "BrainFLORA take the 63 THINGS-EEG2 channels: drop --encoder-channels")
    else:
        state = load_state_dict_file(path)
        kind = detect_encoder_kind(state, f"encoder checkpoint {path.name}")
        loaded = _load_atm(state, path, variant) if kind is EncoderKind.ATM else _load_brainflora(state, path)
    contract = check_contract(loaded.module, loaded.spec, what=_describe(loaded))
    loaded.uses_subject_ids = contract.uses_subject_ids  # BrainFLORA's EEG tower: False
    loaded.provenance.update(kind=str(loaded.kind), uses_subject_ids=contract.uses_subject_ids)
    return loaded


def detect_encoder_kind(state: dict[str, torch.Tensor], what: str) -> EncoderKind:
    """ATM-S or BrainFLORA's reconstruction UnifiedEncoder, from the keys; other known files are named and refused."""
    if SUBJECT_TABLE_KEY in state:
        return EncoderKind.ATM
    has_moe = any(k.startswith("moe_projection.") for k in state)
    if has_moe and "moe_projection.upsample.weight" in state:
        raise CheckpointError(
            f"{what} is BrainFLORA's caption UnifiedEncoder (moe_projection.upsample: user_caption=True); image "
            "reconstruction uses the reconstruction checkpoint (reconstruction_checkpoints/150.pth): pass that to --encoder")
    if has_moe and any(k.startswith(_BF) for k in state):
        return EncoderKind.BRAINFLORA
    if has_moe:
        towers = sorted({k.split(".")[1] for k in state if k.startswith("encoder.")})
        raise CheckpointError(f"{what} is a BrainFLORA UnifiedEncoder without an EEG tower (towers: {towers}): "
                              "pass a checkpoint trained with the EEG tower")
    if "encoder.enc_embedding.value_embeddings.0.tokenConv.weight" in state and "proj_eeg.0.weight" in state:
        raise CheckpointError(
            f"{what} is a single BrainFLORA tower (checkpoints/<modality>_*.pth, its pretraining); image reconstruction "
            "runs the UnifiedEncoder with its moe_projection (reconstruction_checkpoints/150.pth): pass that to --encoder")
    if "input_layer.0.weight" in state and "output_layer.weight" in state:
        raise CheckpointError(f"{what} is the diffusion prior (input_layer, output_layer): pass it to --prior, and the "
                              "encoder's checkpoint to --encoder")
    raise CheckpointError(
        f"{what} is neither the paper's ATM-S (no {SUBJECT_TABLE_KEY}) nor BrainFLORA's UnifiedEncoder (no "
        f"moe_projection.*, {_BF}*): pass the encoder's state dict, or for your own model --encoder-factory MODULE:CALLABLE")


# ---- ATM-S ------------------------------------------------------------------------------------------------
def _load_atm(state: dict[str, torch.Tensor], path: Path, variant: EncoderVariant) -> LoadedEncoder:
    model, prov = atm_from_state(state, path, variant)
    return LoadedEncoder(model, EncoderKind.ATM, DEFAULT_SPEC, model.num_subjects, prov.to_dict())


# ---- BrainFLORA -------------------------------------------------------------------------------------------
def brainflora_architecture(state: dict[str, torch.Tensor], what: str, samples: int = 250) -> BrainFloraArchitecture:
    """The EEG tower's and MoE's sizes, read from the shapes (loading stays strict: see the caller)."""
    convs = sorted((int(m.group(1)), v) for k, v in state.items() if (m := _BF_CONVS.match(k)))

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise CheckpointError(f"{what} has no {key}: it is not a BrainFLORA UnifiedEncoder state dict saved "
                                  "with torch.save(model.state_dict()); pass the reconstruction checkpoint")
        return tuple(state[key].shape)

    if not convs:
        shape(f"{_BF}encoder.enc_embedding.value_embeddings.0.tokenConv.weight")
    d_model, _, channels, _ = convs[0][1].shape
    layer_ids = {int(m.group(1)) for k in state if (m := re.match(rf"^{re.escape(_BF)}encoder\.encoder\.attn_layers\.(\d+)\.", k))}
    linear_ids = {int(m.group(1)) for k in state if (m := re.match(rf"^{re.escape(_BF)}subject_wise_linear\.(\d+)\.", k))}
    return BrainFloraArchitecture(
        channels=int(channels), samples=samples, d_model=int(d_model),
        d_ff=shape(f"{_BF}encoder.encoder.attn_layers.0.conv1.weight")[0],
        layers=max(layer_ids) + 1 if layer_ids else 0,
        patch_lens=tuple(int(v.shape[-1]) for _, v in convs),
        num_class=shape(f"{_BF}encoder.projection.weight")[0],
        num_subject_linears=max(linear_ids) + 1 if linear_ids else 0,
        emb_size=shape(f"{_BF}enc_eeg.0.projection.0.weight")[0],
        embed_dim=shape(f"{_BF}proj_eeg.0.weight")[0],
        num_experts=shape("moe_projection.router.2.weight")[0],
    )


def _load_brainflora(state: dict[str, torch.Tensor], path: Path) -> LoadedEncoder:
    what = f"BrainFLORA checkpoint {path.name}"
    # The UnifiedEncoder holds every tower; EEG runs only its own, so the others stay in the file.
    kept = {k: v for k, v in state.items() if k.startswith(_BF) or not k.startswith("encoder.")}
    aside: dict[str, dict[str, int]] = {}
    for k, v in state.items():
        if k not in kept:
            tower = aside.setdefault(f"encoder.{k.split('.')[1]}", {"keys": 0, "values": 0})
            tower["keys"] += 1
            tower["values"] += v.numel()
    arch = brainflora_architecture(kept, what, DEFAULT_SPEC.n_times)
    if arch.channels != DEFAULT_SPEC.n_channels:
        raise CheckpointError(f"{what}: its EEG tower takes {arch.channels} channels, not the 63 of THINGS-EEG2 that "
                              "BrainFLORA's EEG model reads; pass a BrainFLORA EEG checkpoint")
    model = BrainFloraEncoder(arch)  # (built on the meta device, its sinusoidal table alone took seconds)
    check_state_dict(model, kept, what, hint="Pass BrainFLORA's reconstruction UnifiedEncoder checkpoint "
                     "(reconstruction_checkpoints/150.pth) as saved, with torch.save(model.state_dict()).")
    model.load_state_dict(kept, strict=True)
    model.eval()
    if aside:
        log.info("%s: left aside the towers BrainFLORA's EEG reconstruction does not run: %s", what,
                 ", ".join(f"{t}.* ({n['keys']} keys, {n['values']:,} values)" for t, n in aside.items()))
    provenance = {
        "file_name": path.name, "sha256": sha256_file(path), "architecture": arch.to_dict(),
        "num_parameters": num_parameters(model), "left_aside": aside,
        "left_aside_why": "other modalities' towers: EEG reconstruction runs encoder.eeg and moe_projection only",
    }
    return LoadedEncoder(model, EncoderKind.BRAINFLORA, DEFAULT_SPEC, None, provenance, recommended=dict(RECONSTRUCTION))


# ---- a user's module (--encoder-factory) ------------------------------------------------------------------
def _load_custom(factory: str, checkpoint: Path, channels: str | Path | None) -> LoadedEncoder:
    """Build the factory's module, load ``checkpoint`` strictly, read its EEG spec (``--encoder-channels``)."""
    from .custom_encoder import build_module

    module, source, name = build_module(factory)
    state = load_state_dict_file(checkpoint)
    check_state_dict(module, state, f"encoder checkpoint {checkpoint.name}",
                     hint=f"It must be the state dict of the module {name}() builds: torch.save(model.state_dict(), path).")
    module.load_state_dict(state, strict=True)
    module.float().eval()
    spec = encoder_spec(channels)
    rows = getattr(module, "num_subjects", None)
    num_subjects = int(rows) if isinstance(rows, int) and not isinstance(rows, bool) and rows > 0 else None
    provenance = {
        "file_name": checkpoint.name, "sha256": sha256_file(checkpoint), "num_parameters": num_parameters(module),
        "factory": factory if not factory.split(":")[0].endswith(".py") else f"{source.name}:{name}",
        "factory_source": source.name, "factory_sha256": sha256_file(source), "module_class": type(module).__name__,
        "channels": spec.n_channels, "samples": spec.n_times, "num_subjects": num_subjects,
    }
    return LoadedEncoder(module, EncoderKind.CUSTOM, spec, num_subjects, provenance)


# ---- the contract -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncoderContract:
    uses_subject_ids: bool
    eeg_sensitivity: float  # max |f(a) - f(b)| / max |f(a)| for two random trials
    subject_sensitivity: float  # the same for subject ids 0 and 1 on one trial (0 when ignored)


def check_contract(module: nn.Module, spec: EEGSpec, *, what: str) -> EncoderContract:
    """Run ``module`` on random trials of ``spec``; raise :class:`EncoderContractError` naming what it breaks."""
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(2, *spec.shape, generator=gen) for _ in range(2))
    ids0, ids1 = torch.zeros(2, dtype=torch.int64), torch.ones(2, dtype=torch.int64)
    out = _call(module, a, ids0, what, spec)
    if not torch.equal(out, _call(module, a, ids0, what, spec)):
        raise EncoderContractError(f"{what}: two calls on the same input differ in eval mode (dropout or a random "
                                   "augmentation left in forward?): the export needs a deterministic forward")
    moved = _relative(out, _call(module, b, ids0, what, spec))
    if moved < SENSITIVITY_MIN:
        raise EncoderContractError(f"{what}: its output hardly depends on the EEG (relative change {moved:.2g} between "
                                   f"two random trials, below {SENSITIVITY_MIN:g}): check that forward uses eeg")
    by_id = _call(module, a, ids1, what, spec)
    uses_ids = not torch.equal(out, by_id)
    moved_ids = _relative(out, by_id) if uses_ids else 0.0
    if uses_ids and moved_ids < SENSITIVITY_MIN:
        raise EncoderContractError(f"{what}: subject ids 0 and 1 change its output by only {moved_ids:.2g} (relative), "
                                   f"below {SENSITIVITY_MIN:g}, so no test could tell whether a graph uses them; a "
                                   "model that ignores ids should not read them")
    return EncoderContract(uses_ids, moved, moved_ids)


def _call(module: nn.Module, eeg: torch.Tensor, ids: torch.Tensor, what: str, spec: EEGSpec) -> torch.Tensor:
    shapes = f"eeg {tuple(eeg.shape)} float32, subject_ids {tuple(ids.shape)} int64"
    try:
        with torch.no_grad():
            out = module(eeg, ids)
    except Exception as e:  # a user's module: any error is a contract failure, reported in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise EncoderContractError(f"{what}: forward({shapes}) raised {type(e).__name__}: {first}; the EEG is "
                                   f"{spec.n_channels} channels x {spec.n_times} samples (--encoder-channels)") from None
    if not isinstance(out, torch.Tensor) or out.shape != (len(eeg), EMBED_DIM) or not out.is_floating_point():
        found = f"shape {tuple(out.shape)} {out.dtype}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise EncoderContractError(f"{what}: forward({shapes}) returned {found}, expected ({len(eeg)}, {EMBED_DIM}) "
                                   f"float: one {EMBED_DIM}-d CLIP ViT-H-14 image embedding per trial, the prior's input")
    if not torch.isfinite(out).all():
        raise EncoderContractError(f"{what}: forward on random trials returned NaN or infinite values")
    return out.float()


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))


def _describe(loaded: LoadedEncoder) -> str:
    if loaded.kind is EncoderKind.CUSTOM:
        return f"encoder factory {loaded.provenance.get('factory')}"
    return f"{loaded.kind} encoder {loaded.provenance.get('file_name')}"
