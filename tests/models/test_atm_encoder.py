"""ATMEncoder: keys and shapes from the paper doc, the four forward variants, subject tokens, ONNX."""

import math

import numpy as np
import pytest
torch = pytest.importorskip("torch", reason="needs torch (the export extra)")

from eeg2img_deploy.models.atm_encoder import ATMEncoder, EncoderVariant

VARIANTS = [
    EncoderVariant(token_slice=s, positional_embedding=pe) for s in ("paper", "refactor") for pe in (False, True)
]
# About the variance the pooled conv features have with these weights, so BatchNorm rescales
# them to O(1) as in a trained model instead of squashing them.
RUNNING_VAR = 0.03
BUFFER_SUFFIXES = ("position_embedding.pe", "running_mean", "running_var", "num_batches_tracked")


def doc_key_shapes(num_subjects: int, num_linears: int) -> dict:
    """The state-dict layout of the paper's ATMS, written out from docs/paper-models.md section 2."""
    emb, layer = "encoder.enc_embedding.", "encoder.encoder.attn_layers.0."
    shapes = {
        emb + "value_embedding.weight": (250, 250),
        emb + "value_embedding.bias": (250,),
        emb + "position_embedding.pe": (1, 5000, 250),
        emb + "temporal_embedding.embed.weight": (250, 4),
        emb + "subject_embedding.subject_embedding.weight": (num_subjects, 250),
        emb + "subject_embedding.shared_embedding": (1, 250),
        emb + "subject_embedding.mask_embedding": (1, 250),
        emb + "mask_token": (1, 250),
    }
    for name in ("query", "key", "value"):
        shapes[f"{layer}attention.{name}_projection.weight"] = (248, 250)
        shapes[f"{layer}attention.{name}_projection.bias"] = (248,)
    shapes[layer + "attention.out_projection.weight"] = (250, 248)
    shapes[layer + "attention.out_projection.bias"] = (250,)
    shapes[layer + "conv1.weight"] = (256, 250, 1)
    shapes[layer + "conv1.bias"] = (256,)
    shapes[layer + "conv2.weight"] = (250, 256, 1)
    shapes[layer + "conv2.bias"] = (250,)
    for norm in (layer + "norm1", layer + "norm2", "encoder.encoder.norm"):
        shapes[norm + ".weight"] = (250,)
        shapes[norm + ".bias"] = (250,)
    for i in range(num_linears):
        shapes[f"subject_wise_linear.{i}.weight"] = (250, 250)
        shapes[f"subject_wise_linear.{i}.bias"] = (250,)
    conv = "enc_eeg.0.tsconv."
    shapes[conv + "0.weight"] = (40, 1, 1, 25)
    shapes[conv + "0.bias"] = (40,)
    shapes[conv + "4.weight"] = (40, 40, 63, 1)
    shapes[conv + "4.bias"] = (40,)
    for bn in (conv + "2.", conv + "5."):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[bn + name] = (40,)
        shapes[bn + "num_batches_tracked"] = ()
    shapes["enc_eeg.0.projection.0.weight"] = (40, 40, 1, 1)
    shapes["enc_eeg.0.projection.0.bias"] = (40,)
    shapes["proj_eeg.0.weight"] = (1024, 1440)
    shapes["proj_eeg.0.bias"] = (1024,)
    shapes["proj_eeg.1.fn.1.weight"] = (1024, 1024)
    shapes["proj_eeg.1.fn.1.bias"] = (1024,)
    shapes["proj_eeg.2.weight"] = (1024,)
    shapes["proj_eeg.2.bias"] = (1024,)
    shapes["logit_scale"] = ()
    return shapes


def doc_state_dict(num_subjects: int, num_linears: int, seed: int = 0) -> dict:
    """Random weights in the doc's layout, scaled so activations stay O(1) as in a trained model."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in doc_key_shapes(num_subjects, num_linears).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000, dtype=torch.int64)
        elif key.endswith("running_mean"):
            state[key] = torch.zeros(shape)
        elif key.endswith("running_var"):
            state[key] = torch.full(shape, RUNNING_VAR)
        elif key.endswith("position_embedding.pe"):
            pos = torch.arange(5000.0)[:, None]
            freq = torch.exp(torch.arange(0, 250, 2) * (-math.log(10000.0) / 250))
            pe = torch.stack([torch.sin(pos * freq), torch.cos(pos * freq)], dim=-1).reshape(5000, 250)
            state[key] = pe[None]
        elif "subject_embedding." in key or key.endswith("mask_token"):
            state[key] = torch.randn(shape, generator=gen)  # N(0, 1), as the paper initialises them
        elif len(shape) >= 2:
            state[key] = torch.randn(shape, generator=gen) / math.sqrt(math.prod(shape[1:]))
        elif key.endswith(".weight"):  # norm scales
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:  # biases, logit_scale
            state[key] = 0.1 * torch.randn(shape, generator=gen)
    return state


def eeg_batch(batch: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 63, 250, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def weights():
    return doc_state_dict(10, 2)


def build(state: dict, variant: EncoderVariant = EncoderVariant()) -> ATMEncoder:
    num_subjects = state["encoder.enc_embedding.subject_embedding.subject_embedding.weight"].shape[0]
    num_linears = sum(k.endswith(".weight") for k in state if k.startswith("subject_wise_linear."))
    model = ATMEncoder(num_subjects, num_linears, variant)
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.mark.parametrize(
    "num_subjects, num_linears, params, entries",
    [(10, 1, 3_139_663, 51), (10, 2, 3_202_413, 53), (2, 2, 3_200_413, 53)],
)
def test_doc_state_dict_loads_strict_with_doc_counts(num_subjects, num_linears, params, entries):
    shapes = doc_key_shapes(num_subjects, num_linears)
    assert len(shapes) == entries
    assert sum(math.prod(s) for k, s in shapes.items() if not k.endswith(BUFFER_SUFFIXES)) == params

    model = ATMEncoder(num_subjects, num_linears)
    model.load_state_dict(doc_state_dict(num_subjects, num_linears), strict=True)
    assert sum(p.numel() for p in model.parameters()) == params
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes


def test_default_pe_buffer_is_the_doc_sinusoid():
    expected = doc_state_dict(2, 2)["encoder.enc_embedding.position_embedding.pe"]
    torch.testing.assert_close(ATMEncoder(2, 2).encoder.enc_embedding.position_embedding.pe, expected)


def test_output_shape_and_eval_is_deterministic(weights):
    model = build(weights)
    eeg, ids = eeg_batch(2), torch.tensor([1, 8])
    with torch.no_grad():
        out = model(eeg, ids)
        assert out.shape == (2, 1024) and out.dtype == torch.float32
        assert torch.equal(out, model(eeg, ids))


def test_four_variants_differ_by_order_one(weights):
    eeg, ids = eeg_batch(4), torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        outs = [build(weights, v)(eeg, ids) for v in VARIANTS]
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert (outs[i] - outs[j]).abs().mean() > 0.1, (VARIANTS[i], VARIANTS[j])


@pytest.mark.parametrize("positional_embedding", [False, True])
def test_token_slices_keep_the_documented_tokens(weights, positional_embedding):
    eeg, ids = eeg_batch(2), torch.tensor([3, 7])
    paper = build(weights, EncoderVariant("paper", positional_embedding))
    refactor = build(weights, EncoderVariant("refactor", positional_embedding))
    with torch.no_grad():
        all_tokens = paper.encoder(eeg, ids)  # (B, 64, 250), subject token first
        assert all_tokens.shape == (2, 64, 250)
        # Paper: subject token + channels Fp1..O1 (O2's token dropped). Refactor: the 63 channels.
        assert torch.equal(paper.kept_tokens(eeg, ids), all_tokens[:, :63])
        assert torch.equal(refactor.kept_tokens(eeg, ids), all_tokens[:, 1:])


def test_paper_slice_drops_o2_token_but_not_its_influence(weights):
    # Attention mixes all 64 tokens before the slice, so perturbing O2 (channel 62) still
    # changes the paper-slice output: the slice drops O2's token, not its information.
    model = build(weights, EncoderVariant("paper"))
    eeg, ids = eeg_batch(1), torch.tensor([1])
    perturbed = eeg.clone()
    perturbed[:, 62] += 1.0
    with torch.no_grad():
        assert not torch.allclose(model(eeg, ids), model(perturbed, ids), atol=1e-4)


def test_positional_embedding_adds_pe_to_channel_tokens_only(weights):
    eeg, ids = eeg_batch(1), torch.tensor([5])
    on = build(weights, EncoderVariant(positional_embedding=True)).encoder.enc_embedding
    off = build(weights, EncoderVariant(positional_embedding=False)).encoder.enc_embedding
    with torch.no_grad():
        diff = on(eeg, ids) - off(eeg, ids)
    assert torch.equal(diff[:, 0], torch.zeros(1, 250))  # subject token untouched
    torch.testing.assert_close(diff[:, 1:], weights["encoder.enc_embedding.position_embedding.pe"][:, :63])


def test_unknown_token_slice_is_refused():
    with pytest.raises(ValueError, match="token_slice"):
        EncoderVariant(token_slice="middle")


@pytest.mark.parametrize("variant", VARIANTS)
def test_mixed_batch_equals_each_sample_alone(weights, variant):
    model = build(weights, variant)
    eeg, ids = eeg_batch(5), torch.tensor([1, 10, 8, 42, 0])  # S=10: 10 and 42 are out of table
    with torch.no_grad():
        batched = model(eeg, ids)
        alone = torch.cat([model(eeg[i : i + 1], ids[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


def test_changing_subject_changes_output(weights):
    model = build(weights)
    eeg = eeg_batch(1).repeat(2, 1, 1)
    with torch.no_grad():
        out = model(eeg, torch.tensor([1, 2]))
    assert (out[0] - out[1]).abs().mean() > 1e-2


def test_out_of_table_ids_use_the_shared_embedding(weights):
    state = dict(weights)
    table_key = "encoder.enc_embedding.subject_embedding.subject_embedding.weight"
    # Make the shared token equal to row 3: then any unknown id must behave exactly as id 3.
    state["encoder.enc_embedding.subject_embedding.shared_embedding"] = state[table_key][3:4].clone()
    model = build(state)
    eeg = eeg_batch(1).repeat(4, 1, 1)
    with torch.no_grad():
        out = model(eeg, torch.tensor([3, 10, 11, 1000]))
        tokens = model.encoder.enc_embedding.subject_embedding(torch.tensor([10, -1, 4]))
    for i in (1, 2, 3):
        torch.testing.assert_close(out[i], out[0], rtol=0, atol=1e-6)
    assert torch.equal(tokens[0, 0], state[table_key][3])  # shared == row 3 here
    assert torch.equal(tokens[1, 0], state[table_key][3])  # negative ids: shared token too
    assert torch.equal(tokens[2, 0], state[table_key][4])  # in-table id: its own row


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # dynamo=False is the legacy exporter
def test_onnx_export_dynamic_batch_matches_torch(weights, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = build(weights, EncoderVariant("paper", positional_embedding=True))
    path = tmp_path / "encoder.onnx"
    torch.onnx.export(
        model,
        (eeg_batch(2), torch.tensor([1, 2])),
        str(path),
        input_names=["eeg", "subject_ids"],
        output_names=["embedding"],
        dynamic_axes={"eeg": {0: "batch"}, "subject_ids": {0: "batch"}, "embedding": {0: "batch"}},
        opset_version=18,
        dynamo=False,
    )
    eeg, ids = eeg_batch(3, seed=7), torch.tensor([8, 10, 57])  # in-table, then two unknown ids
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"eeg": eeg.numpy(), "subject_ids": ids.numpy()})
    with torch.no_grad():
        expected = model(eeg, ids).numpy()
    np.testing.assert_allclose(onnx_out, expected, rtol=1e-4, atol=1e-4)
