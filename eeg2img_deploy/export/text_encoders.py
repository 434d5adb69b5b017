"""Export spec of SDXL's two text encoders as one graph: token ids -> the UNet's text conditioning.

As diffusers' ``encode_prompt`` (no clip skip): the penultimate hidden states of CLIP ViT-L
(``text_encoder``, 768) and OpenCLIP bigG (``text_encoder_2``, 1280) concatenated into
``prompt_embeds (B, 77, 2048)``, and bigG's projected pooled output ``pooled_prompt_embeds (B, 1280)``.
The runtime tokenizes with the ``tokenizers`` package from the tokenizer.json files export puts in
the constants, so this graph starts at the ids.
"""

from __future__ import annotations

import numpy as np

from ..manifest import TensorSpec
from .spec import StageExport


def _wrapper(text_encoder, text_encoder_2):
    import torch

    class TextEncoders(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.text_encoder = text_encoder
            self.text_encoder_2 = text_encoder_2

        def forward(self, input_ids, input_ids_2):
            one = self.text_encoder(input_ids, output_hidden_states=True)
            two = self.text_encoder_2(input_ids_2, output_hidden_states=True)
            return torch.cat([one.hidden_states[-2], two.hidden_states[-2]], dim=-1), two.text_embeds

    return TextEncoders().eval()


def text_encoders_stage(pipe) -> StageExport:
    one, two = pipe.text_encoder, pipe.text_encoder_2
    length = pipe.tokenizer.model_max_length
    width = one.config.hidden_size + two.config.hidden_size
    pooled = two.config.projection_dim

    def make_inputs(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        feeds = {}
        for name, tok, enc in (("input_ids", pipe.tokenizer, one), ("input_ids_2", pipe.tokenizer_2, two)):
            # BOS, random tokens, EOS at a random place, then padding: the pooled output reads the EOS position
            ids = np.full((batch, length), tok.pad_token_id, np.int64)
            for b in range(batch):
                n = int(rng.integers(1, length - 1))
                ids[b, 0] = tok.bos_token_id
                ids[b, 1 : n + 1] = rng.integers(0, min(enc.config.vocab_size, tok.bos_token_id), size=n)
                ids[b, n + 1] = tok.eos_token_id
            feeds[name] = ids
        return feeds

    return StageExport(
        name="text_encoders",
        module=_wrapper(one, two),
        inputs=(TensorSpec("input_ids", "int64", ("batch", length)), TensorSpec("input_ids_2", "int64", ("batch", length))),
        outputs=(
            TensorSpec("prompt_embeds", "float32", ("batch", length, width)),
            TensorSpec("pooled_prompt_embeds", "float32", ("batch", pooled)),
        ),
        make_inputs=make_inputs,
        # Run once per prompt, so fp16 would save little; fp32 keeps prompt embeddings within 1e-4 of PyTorch
        # (and transformers' CLIP traced in half precision mixes float types inside its LayerNorms).
        fp32_only=True,
    )
