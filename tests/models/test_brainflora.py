"""BrainFLORA's EEG encoder: its keys and numbers against BrainFLORA's own code, strict loading from a full
multi-tower checkpoint (the other towers reported, not loaded), and the files it is told apart from."""

import zlib

import pytest

torch = pytest.importorskip("torch", reason="needs torch (the export extra)")

from eeg2img_deploy.errors import CheckpointError
from eeg2img_deploy.models.brainflora import BrainFloraEncoder
from eeg2img_deploy.models.encoders import detect_encoder_kind, load_eeg_encoder
from eeg2img_deploy.names import EncoderKind
from eeg2img_deploy.tiny_brainflora import CHECKPOINT

# Counted on BrainFLORA's UnifiedEncoder(num_experts=5) at commit 2b94307 (ncclab-sustech/BrainFLORA): the EEG
# tower's 94 entries, moe_projection's 6 and logit_scale; all values, buffers included (pe, BatchNorm stats).
FULL_ENTRIES, FULL_VALUES = 101, 27_278_803
FULL_SHAPES = {
    "encoder.eeg.encoder.enc_embedding.value_embeddings.0.tokenConv.weight": (250, 1, 63, 2),
    "encoder.eeg.encoder.enc_embedding.value_embeddings.2.tokenConv.weight": (250, 1, 63, 8),
    "encoder.eeg.encoder.enc_embedding.position_embedding.pe": (1, 5000, 250),
    "encoder.eeg.encoder.enc_embedding.learnable_embeddings.1": (1, 250),
    "encoder.eeg.encoder.encoder.attn_layers.0.attention.intra_attentions.2.query_projection.weight": (248, 250),
    "encoder.eeg.encoder.encoder.attn_layers.0.attention.inter_attention.out_projection.weight": (250, 248),
    "encoder.eeg.encoder.encoder.attn_layers.0.conv1.weight": (256, 250, 1),
    "encoder.eeg.encoder.projection.weight": (250, 55250),
    "encoder.eeg.subject_wise_linear.9.weight": (250, 250),
    "encoder.eeg.enc_eeg.0.tsconv.4.weight": (40, 40, 221, 1),
    "encoder.eeg.proj_eeg.0.weight": (1024, 1440),
    "encoder.eeg.proj_eeg.1.fn.1.weight": (1024, 1024),
    "encoder.eeg.logit_scale": (),
    "moe_projection.experts.weight": (5120, 1024),
    "moe_projection.router.0.weight": (2048, 1024),
    "moe_projection.router.2.weight": (5, 2048),
    "logit_scale": (),
}
# BrainFLORA's UnifiedEncoder(...)(eeg, ids, "eeg") at commit 2b94307, weights from fill_by_name, eeg from seed 7.
GOLDEN_FIRST8 = [
    [-0.575384, 0.588908, 0.426473, -0.889562, -0.295849, 0.38896, 0.215036, 0.235646],
    [-0.567806, 0.592773, 0.42178, -0.881032, -0.290133, 0.389989, 0.216582, 0.227284],
    [-0.571837, 0.602988, 0.425356, -0.88405, -0.286107, 0.388412, 0.221342, 0.231033],
]
GOLDEN_SUM, GOLDEN_ABS_SUM, GOLDEN_MAX_ABS = [11.39492, 11.24554, 11.40892], [664.861, 664.8907, 665.2102], 3.163697


def fill_by_name(model) -> dict:
    """Weights that depend only on each key's name and shape (so two implementations get the same ones)."""
    out = {}
    for k, v in model.state_dict().items():
        g = torch.Generator().manual_seed(zlib.crc32(k.encode()))
        if v.dtype != torch.float32:
            out[k] = torch.full(v.shape, 7, dtype=v.dtype)
        elif k.endswith(".pe"):
            out[k] = v  # the model's own sinusoidal table: BrainFLORA's is computed the same way
        elif k.endswith("running_var"):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            fan = int(torch.tensor(v.shape[1:]).prod()) if v.ndim > 1 else 1
            out[k] = torch.randn(v.shape, generator=g) / fan**0.5
    return out


@pytest.fixture(scope="module")
def full_size():
    return BrainFloraEncoder().eval()


def test_full_size_keys_and_shapes_are_brainfloras(full_size):
    state = full_size.state_dict()
    assert (len(state), sum(v.numel() for v in state.values())) == (FULL_ENTRIES, FULL_VALUES)
    assert {k: tuple(state[k].shape) for k in FULL_SHAPES} == FULL_SHAPES


def test_full_size_numbers_match_brainfloras_code(full_size):
    full_size.load_state_dict(fill_by_name(full_size), strict=True)
    eeg = torch.randn(3, 63, 250, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        out = full_size(eeg, torch.tensor([1, 5, 10]))
        other_ids = full_size(eeg, torch.tensor([0, 0, 0]))
    scale = GOLDEN_MAX_ABS
    assert abs(out.abs().max().item() - scale) / scale < 1e-5
    assert (out[:, :8] - torch.tensor(GOLDEN_FIRST8)).abs().max().item() / scale < 1e-5
    assert (out.sum(1) - torch.tensor(GOLDEN_SUM)).abs().max().item() < 1e-3
    assert (out.abs().sum(1) - torch.tensor(GOLDEN_ABS_SUM)).abs().max().item() < 1e-2
    assert torch.equal(out, other_ids)  # the EEG tower ignores subject ids
    # the trials' rows differ by 5e-3 (relative), 500x the tolerance: a tower that lost the EEG fails the checks
    assert (out[0] - out[1]).abs().max().item() / scale > 100 * 1e-5


@pytest.fixture(scope="module")
def tiny_state(tiny_dir):
    """init-tiny's BrainFLORA checkpoint: all three towers, moe_projection, logit_scale."""
    return torch.load(tiny_dir / "brainflora" / CHECKPOINT, weights_only=True)


def test_loads_eeg_tower_strictly_and_reports_the_towers_left_aside(tmp_path, tiny_state):
    path = tmp_path / "150.pth"
    torch.save(tiny_state, path)
    enc = load_eeg_encoder(path)
    assert enc.kind is EncoderKind.BRAINFLORA and enc.uses_subject_ids is False and enc.num_subjects is None
    loaded = enc.module.state_dict()
    assert set(loaded) == {k for k in tiny_state if not k.startswith(("encoder.meg.", "encoder.fmri."))}
    assert all(torch.equal(loaded[k], tiny_state[k]) for k in loaded)
    aside = enc.provenance["left_aside"]
    for tower in ("meg", "fmri"):
        keys = [k for k in tiny_state if k.startswith(f"encoder.{tower}.")]
        assert aside[f"encoder.{tower}"] == {"keys": len(keys), "values": sum(tiny_state[k].numel() for k in keys)}
    assert enc.provenance["architecture"]["d_model"] == 80 and enc.provenance["architecture"]["num_experts"] == 2


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("encoder.eeg.proj_eeg.2.bias"), r"missing keys: encoder\.eeg\.proj_eeg\.2\.bias"),
    (lambda s: s.update({"encoder.eeg.extra.weight": torch.zeros(2)}), r"unexpected keys: encoder\.eeg\.extra\.weight"),
    (lambda s: s.update({"encoder.eeg.enc_eeg.0.tsconv.4.weight": torch.zeros(40, 40, 178, 1)}),
     r"misshaped keys: encoder\.eeg\.enc_eeg\.0\.tsconv\.4\.weight expected \[40, 40, 221, 1\]"),
])
def test_eeg_tower_mismatch_is_refused_by_key(tmp_path, tiny_state, change, message):
    state = dict(tiny_state)
    change(state)
    torch.save(state, tmp_path / "150.pth")
    with pytest.raises(CheckpointError, match=message):
        load_eeg_encoder(tmp_path / "150.pth")


def test_files_it_is_told_apart_from(tiny_state):
    assert detect_encoder_kind(tiny_state, "x") is EncoderKind.BRAINFLORA
    caption = {**tiny_state, "moe_projection.upsample.weight": torch.zeros(256, 1)}
    with pytest.raises(CheckpointError, match="caption UnifiedEncoder.*reconstruction_checkpoints/150.pth"):
        detect_encoder_kind(caption, "x")
    single = {k[len("encoder.eeg."):]: v for k, v in tiny_state.items() if k.startswith("encoder.eeg.")}
    with pytest.raises(CheckpointError, match="single BrainFLORA tower"):
        detect_encoder_kind(single, "x")
    no_eeg = {k: v for k, v in tiny_state.items() if not k.startswith("encoder.eeg.")}
    with pytest.raises(CheckpointError, match=r"without an EEG tower \(towers: \['fmri', 'meg'\]\)"):
        detect_encoder_kind(no_eeg, "x")
    from eeg2img_deploy.models.diffusion_prior import DiffusionPriorUNet

    with pytest.raises(CheckpointError, match="is the diffusion prior.*--prior"):
        detect_encoder_kind(DiffusionPriorUNet().state_dict(), "x")
    with pytest.raises(CheckpointError, match="neither the paper's ATM-S.*--encoder-factory"):
        detect_encoder_kind({"w": torch.zeros(1)}, "x")
