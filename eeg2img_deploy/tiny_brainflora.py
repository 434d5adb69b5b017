"""The tiny set's BrainFLORA part: a reconstruction ``UnifiedEncoder`` checkpoint and its own prior.

Laid out as BrainFLORA publishes them (``reconstruction_checkpoints/150.pth`` and ``prior_diffusion/150.pth``)
and in its format: all three towers (EEG, MEG, fMRI), ``moe_projection`` and ``logit_scale`` in one plain
state dict. Tiny where the architecture allows: each tower keeps its input (63 x 250 EEG, 271 x 201 MEG,
8 x 1024 fMRI) and the 1024-d output, with narrow Medformers (d_model 80), two experts, and an fMRI voxel
projection from 70 inputs instead of 7000. The prior is the paper's, full size, with its own seed.
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINT = Path("reconstruction_checkpoints") / "150.pth"
PRIOR = Path("reconstruction_checkpoints") / "prior_diffusion" / "150.pth"
TINY_TOWER = {"d_model": 80, "d_ff": 32, "num_class": 4, "num_subject_linears": 2}  # the widths the keys carry
OTHER_TOWERS = {"meg": {"channels": 271, "samples": 201}, "fmri": {"channels": 8, "samples": 1024}}
FMRI_VOXELS = 70  # the real proj_fmri reads 7000 (padded voxels): 57 M weights for a tower EEG never runs


def brainflora_state(seed: int) -> dict:
    """The whole UnifiedEncoder state dict; the EEG tower's BatchNorms calibrated on synthetic EEG."""
    import torch

    from .models.brainflora import BrainFloraArchitecture, BrainFloraEncoder, MedformerTower
    from .tiny import calibrate_batchnorms, synthetic_eeg

    torch.manual_seed(seed + 11)
    model = BrainFloraEncoder(BrainFloraArchitecture(**TINY_TOWER, num_experts=2))
    tsconv = model.encoder["eeg"].enc_eeg[0].tsconv
    eeg = torch.from_numpy(synthetic_eeg(16, seed + 4))
    calibrate_batchnorms(model, (eeg, torch.zeros(len(eeg), dtype=torch.int64)), (tsconv[2], tsconv[5]))
    state = dict(model.state_dict())
    for name, size in OTHER_TOWERS.items():
        tower = MedformerTower(BrainFloraArchitecture(**TINY_TOWER, **size))
        state.update({f"encoder.{name}.{k}": v for k, v in tower.state_dict().items()})
    voxels = torch.nn.Linear(FMRI_VOXELS, 8 * 1024)  # fmri_encoder: voxels -> (8, 1024) before its Medformer
    state.update({f"encoder.fmri.proj_fmri.{k}": v for k, v in voxels.state_dict().items()})
    return state


def write_brainflora(folder: Path, seed: int) -> None:
    import torch

    from .models.diffusion_prior import DiffusionPriorUNet
    from .tiny import strengthen_prior

    (folder / PRIOR).parent.mkdir(parents=True, exist_ok=True)
    torch.save(brainflora_state(seed), folder / CHECKPOINT)
    torch.manual_seed(seed + 12)
    prior = DiffusionPriorUNet()
    strengthen_prior(prior)
    torch.save(prior.state_dict(), folder / PRIOR)
