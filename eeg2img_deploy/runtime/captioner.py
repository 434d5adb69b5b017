"""Captions at run time: image embedding -> PixelProjector -> GIT with a KV cache, greedy, in numpy.

``projector`` gives the 257 visual tokens, ``caption_prefill`` their keys and values in every layer
(once per image), then ``caption_decoder`` one token per call: BOS first, then each argmax, until
every sample has produced EOS or 25 new tokens (transformers' greedy ``generate``, the paper's
default decoding). A finished sample is fed PAD, as transformers does; its caption ends at its EOS.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .prompts import load_tokenizer

Run = Callable[[str, dict[str, np.ndarray]], dict[str, np.ndarray]]


class Captioner:
    def __init__(self, constants: dict[str, np.ndarray], run: Run):
        self.run = run
        self.tokenizer = load_tokenizer(constants, "tokenizer_git_json")
        self.bos, self.eos, self.pad, self.visual_tokens, self.max_new_tokens = (int(x) for x in constants["caption_settings"])

    def token_ids(self, image_embeds: np.ndarray) -> list[list[int]]:
        """Per sample: the generated ids, BOS excluded, up to and including EOS."""
        b = len(image_embeds)
        tokens = self.run("projector", {"image_embeds": image_embeds})["visual_tokens"]
        kv = self.run("caption_prefill", {"visual_tokens": tokens})["visual_kv"]
        ids = np.full((b, 1), self.bos, np.int64)
        done = np.zeros(b, bool)
        steps = []
        for step in range(self.max_new_tokens):
            out = self.run("caption_decoder", {"input_ids": ids, "position_ids": np.full((b, 1), step, np.int64), "past_kv": kv})
            kv = out["present_kv"]
            nxt = np.where(done, self.pad, out["logits"].argmax(-1)).astype(np.int64)
            steps.append(nxt)
            done |= nxt == self.eos
            if done.all():
                break
            ids = nxt[:, None]
        seqs = np.stack(steps, axis=1).tolist()
        return [s[: s.index(self.eos) + 1] if self.eos in s else s for s in seqs]

    def decode(self, ids: list[list[int]]) -> list[str]:
        return self.tokenizer.decode_batch(ids, skip_special_tokens=True)
