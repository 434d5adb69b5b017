"""The semantic stages in the bundle reproduce PyTorch: GIT's logits step by step, and the SDXL text encoders.

The KV-cache graphs are checked against ``GitForCausalLM``'s own uncached forward (not only against
the export wrapper), and the text-encoder graph against diffusers' ``encode_prompt``.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from eeg2img_deploy.export.caption import _decoder_module, _prefill_module
from eeg2img_deploy.export.onnx_io import ort_session
from eeg2img_deploy.manifest import AxisRange, Precision, read_manifest

SEMANTIC_STAGES = ("text_encoders", "projector", "caption_prefill", "caption_decoder")
MAX_REL = 1e-4


def _hf_logits(model, tokens, ids):
    """GIT's logits for the last of ``ids``, full uncached forward, image tokens as the visual features."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), pixel_values=tokens[None, None], use_cache=False).logits[0, -1].numpy()


def _rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def test_bundle_has_the_semantic_stages_validated(tiny_bundle):
    m = read_manifest(tiny_bundle)
    for stage in SEMANTIC_STAGES:
        a = m.artifact(stage, Precision.FP32)
        assert a.validation.worst() <= MAX_REL, stage
    assert m.precisions("text_encoders") == [Precision.FP32] and "text_encoders" in m.bundle.fp32_only_stages
    assert m.precisions("caption_decoder") == [Precision.FP32, Precision.FP16]
    assert m.bundle.axes["past"] == AxisRange(257, 269, 289)
    dec = m.artifact("caption_decoder", Precision.FP32)
    assert [t.name for t in dec.outputs] == ["logits", "present_kv"]
    assert m.sources["git"].sha256 and m.sources["projector"].sha256


def test_kv_cache_graphs_reproduce_gits_logits(tiny_bundle, reference_pipe):
    model = reference_pipe.captioner.model
    tokens = reference_pipe.projector(torch.rand(1, 1, 1024) * 2 - 1).detach()[0]
    prefill, decoder = (ort_session(tiny_bundle / f"{s}.onnx") for s in ("caption_prefill", "caption_decoder"))
    wrap_pre, wrap_dec = _prefill_module(model), _decoder_module(model)
    kv = prefill.run(None, {"visual_tokens": tokens[None].numpy()})[0]
    with torch.no_grad():
        kv_t = wrap_pre(tokens[None])
    ids = [101]
    worst = worst_wrapper = 0.0
    for step in range(12):
        feeds = {"input_ids": np.array([[ids[-1]]]), "position_ids": np.array([[step]]), "past_kv": kv}
        logits, kv = decoder.run(None, feeds)
        with torch.no_grad():
            logits_t, kv_t = wrap_dec(torch.tensor([[ids[-1]]]), torch.tensor([[step]]), kv_t)
        ref = _hf_logits(model, tokens, ids)
        worst, worst_wrapper = max(worst, _rel(logits[0], ref)), max(worst_wrapper, _rel(logits_t[0].numpy(), ref))
        assert kv.shape == (4, 1, 4, 257 + step + 1, 8)
        ids.append(int(ref.argmax()))
    print(f"\nGIT logits: ONNX vs GitForCausalLM max rel {worst:.2e}, wrapper {worst_wrapper:.2e}")
    assert worst <= MAX_REL and worst_wrapper <= MAX_REL
    # sensitivity: another image moves the logits far beyond the tolerance
    other = reference_pipe.projector(torch.rand(1, 1, 1024) * 2 - 1).detach()[0]
    assert _rel(_hf_logits(model, other, ids), _hf_logits(model, tokens, ids)) > 100 * MAX_REL


def test_text_encoder_graph_reproduces_encode_prompt(tiny_bundle, reference_pipe):
    from eeg2img_deploy.reference.stage2 import encode_prompts

    pipe = reference_pipe.sdxl
    prompts = ["a cat on a table", "", "A Dog, in the SNOW!"]
    feeds = {
        name: tok(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="np").input_ids.astype(np.int64)
        for name, tok in (("input_ids", pipe.tokenizer), ("input_ids_2", pipe.tokenizer_2))
    }
    embeds, pooled = ort_session(tiny_bundle / "text_encoders.onnx").run(None, feeds)
    ref = encode_prompts(pipe, prompts)
    assert embeds.shape == (3, 77, 64) and pooled.shape == (3, 32)
    err = max(np.abs(embeds - ref.prompt_embeds.numpy()).max(), np.abs(pooled - ref.pooled.numpy()).max())
    print(f"\ntext encoders: ONNX vs encode_prompt max abs {err:.2e}")
    assert err <= 1e-4
    # the empty prompt reproduces the bundle's constant
    from safetensors.numpy import load_file

    consts = load_file(str(tiny_bundle / "constants.safetensors"))
    assert np.abs(embeds[1:2] - consts["prompt_embeds"]).max() <= 1e-4
    assert np.abs(embeds[0] - embeds[1]).max() > 100 * 1e-4  # a prompt moves the embeddings
