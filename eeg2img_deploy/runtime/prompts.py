"""Text prompts at run time: the SDXL tokenizers (``tokenizers`` package) and the ``text_encoders`` graph.

The tokenizer.json files come from the bundle's constants (written by export from transformers' fast
tokenizers); tokenization follows diffusers' ``encode_prompt``: BOS, tokens, EOS, truncated to 77,
padded to 77 with each tokenizer's pad id (CLIP-L: its EOS; bigG: "!").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..checks import note_prompt_cut
from ..errors import ManifestError

Run = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def load_tokenizer(constants: dict[str, np.ndarray], key: str):
    from tokenizers import Tokenizer

    if key not in constants:
        raise ManifestError(f"this bundle has no {key} in its constants: export it again with this version of eeg2img-deploy")
    return Tokenizer.from_str(bytes(constants[key]).decode("utf-8"))


class PromptEncoder:
    def __init__(self, constants: dict[str, np.ndarray], run: Run):
        self.run = run
        self.tokenizers = []
        for key, (length, pad) in zip(("tokenizer_clip_json", "tokenizer_clip_2_json"), constants["text_token_settings"]):
            tok = load_tokenizer(constants, key)
            tok.no_padding()
            tok.enable_truncation(int(length))  # keeps BOS and EOS, as transformers' truncation=True
            self.tokenizers.append((tok, int(length), int(pad)))

    def token_ids(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for tok, length, pad in self.tokenizers:
            ids = np.full((len(prompts), length), pad, np.int64)
            for i, enc in enumerate(tok.encode_batch(list(prompts))):
                ids[i, : len(enc.ids)] = enc.ids
                if enc.overflowing:
                    note_prompt_cut(prompts[i], length)
            out.append(ids)
        return out[0], out[1]

    def __call__(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``prompt_embeds (B, 77, 2048)``, ``pooled_prompt_embeds (B, 1280)``; equal prompts are encoded once."""
        unique = list(dict.fromkeys(prompts))
        ids, ids_2 = self.token_ids(unique)
        res = self.run({"input_ids": ids, "input_ids_2": ids_2})
        rows = [unique.index(p) for p in prompts]
        return (res["prompt_embeds"].astype(np.float32)[rows], res["pooled_prompt_embeds"].astype(np.float32)[rows])
