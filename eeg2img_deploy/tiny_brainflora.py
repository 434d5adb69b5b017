"""The tiny set's BrainFLORA part: a reconstruction ``UnifiedEncoder`` and the other towers of its checkpoint.

``init-tiny`` lays them out as BrainFLORA publishes them (``reconstruction_checkpoints/150.pth`` and
``prior_diffusion/150.pth``) and in its format: all three towers (EEG, MEG, fMRI), ``moe_projection`` and
``logit_scale`` in one plain state dict. Tiny where the architecture allows: each tower keeps its input
(63 x 250 EEG, 271 x 201 MEG, 8 x 1024 fMRI) and the 1024-d output, with narrow Medformers (d_model 80), two
experts, and an fMRI voxel projection from 70 inputs instead of 7000. The prior is the paper's, full size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHECKPOINT = Path("reconstruction_checkpoints") / "150.pth"
PRIOR = Path("reconstruction_checkpoints") / "prior_diffusion" / "150.pth"
TINY_TOWER: dict[str, Any] = {"d_model": 80, "d_ff": 32, "num_class": 4, "num_subject_linears": 2}  # the widths the keys carry
OTHER_TOWERS: dict[str, dict[str, Any]] = {"meg": {"channels": 271, "samples": 201}, "fmri": {"channels": 8, "samples": 1024}}
FMRI_VOXELS = 70  # the real proj_fmri reads 7000 (padded voxels): 57 M weights for a tower EEG never runs


def tiny_brainflora_encoder(seed: int):
    """The EEG tower and the MoE projection (a ``BrainFloraEncoder``), random; its conv head's BatchNorms are
    ``.encoder["eeg"].enc_eeg[0].tsconv[2]`` and ``[5]`` (``init-tiny`` calibrates them)."""
    import torch

    from .models.brainflora import BrainFloraArchitecture, BrainFloraEncoder

    torch.manual_seed(seed + 11)
    return BrainFloraEncoder(BrainFloraArchitecture(**TINY_TOWER, num_experts=2))


def other_towers_state() -> dict:
    """The MEG and fMRI towers' entries (``encoder.meg.*``, ``encoder.fmri.*``), random: EEG never runs them."""
    import torch

    from .models.brainflora import BrainFloraArchitecture, MedformerTower

    state = {}
    for name, size in OTHER_TOWERS.items():
        tower = MedformerTower(BrainFloraArchitecture(**TINY_TOWER, **size))
        state.update({f"encoder.{name}.{k}": v for k, v in tower.state_dict().items()})
    voxels = torch.nn.Linear(FMRI_VOXELS, 8 * 1024)  # fmri_encoder: voxels -> (8, 1024) before its Medformer
    state.update({f"encoder.fmri.proj_fmri.{k}": v for k, v in voxels.state_dict().items()})
    return state
