"""One dtype per stage edge: every tensor the runtime passes from a producer (a stage, or the host's samplers)
to a consumer stage already has the consumer's dtype, in every precision, on every path (fused and stepwise
prior, low-level start, captions with their KV cache, prompts): fp16 graphs have float32 edges and cast
inside. Bundles exported before (float16 edges) still open and run, with host casts at those edges.
"""

from __future__ import annotations

import numpy as np
import pytest

from eeg2img_deploy.manifest import read_manifest
from eeg2img_deploy.runtime.pipeline import Pipeline

from support import float16_edges, psnr

SUBJECT, SEED = 8, 3


def _spy(monkeypatch) -> list[tuple[str, str, str, str]]:
    """Every host feed the pipeline hands a stage: (stage, input, dtype produced, dtype the stage takes)."""
    seen: list[tuple[str, str, str, str]] = []
    cast = Pipeline._cast

    def spying(self, stage, feeds):
        for t in self.sessions[stage].inputs:
            if t.name in feeds and hasattr(feeds[t.name], "dtype"):
                seen.append((stage, t.name, str(np.dtype(feeds[t.name].dtype)), t.dtype))
        return cast(self, stage, feeds)

    monkeypatch.setattr(Pipeline, "_cast", spying)
    return seen


def _every_path(pipe, eeg) -> None:
    pipe(eeg, SUBJECT, SEED, prior_steps=10, steps=4, low_level=True, caption=True, prompt_from_caption=True)  # fused
    pipe(eeg, SUBJECT, SEED, prior_steps=3)  # stepwise prior


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_every_edge_of_the_runtime_has_one_dtype(tiny_bundle, tiny_eeg, monkeypatch, precision) -> None:
    seen = _spy(monkeypatch)
    pipe = Pipeline.from_bundle(tiny_bundle, precision=precision, low_level=True)
    try:
        _every_path(pipe, tiny_eeg[:2])
        keys = set(pipe.sessions)
        edges = {(k, t.name, t.dtype) for k, s in pipe.sessions.items() for t in (*s.inputs, *s.outputs)}
    finally:
        pipe.close()
    manifest = read_manifest(tiny_bundle)
    want = {s if not manifest.step_counts(s) else f"{s}@{n}"
            for s in manifest.stages() for n in manifest.step_counts(s) or [0]}
    want -= {"prior_sampler@50", "taesd_decoder"}  # one fused graph (10 steps) and one decoder are enough
    assert keys >= want and {stage for stage, *_ in seen} >= want, "every stage ran"
    # producers: every stage gives float32 (and the host's samplers hand on float32); consumers take it as it is
    assert {dtype for *_, dtype in edges} <= {"float32", "int64", "uint8"}, sorted(e for e in edges
                                                                                 if e[2] == "float16")
    floats = [s for s in seen if np.dtype(s[2]).kind == "f" or np.dtype(s[3]).kind == "f"]
    assert floats and all(produced == taken == "float32" for _, _, produced, taken in floats), \
        [s for s in floats if s[2] != s[3] or s[3] != "float32"]


def test_a_bundle_exported_with_float16_edges_still_runs(tiny_bundle, tiny_eeg, tmp_path, monkeypatch) -> None:
    """A bundle from before float32 edges (fp16 I/O in its fp16 graphs) opens: the runtime casts on the host at
    the edges that differ (the same numbers as its graphs gave before) and keeps within fp16 parity of a new one."""
    old = tmp_path / "old"
    float16_edges(tiny_bundle, old)
    seen = _spy(monkeypatch)
    pipe = Pipeline.from_bundle(old, precision="fp16", vae="tiny")
    got = pipe(tiny_eeg[:2], SUBJECT, SEED, prior_steps=10)
    assert pipe.sessions["encoder"].outputs[0].dtype == "float16"  # an edge a GPU backend crosses through the host
    assert ("unet", "image_embeds", "float32", "float16") in seen  # the fused prior's float32 output, cast
    want = Pipeline.from_bundle(tiny_bundle, precision="fp16", vae="tiny")(tiny_eeg[:2], SUBJECT, SEED, prior_steps=10)
    assert psnr(got.images, want.images) >= 40.0  # measured 52 dB (onnxruntime's CPU drops cast pairs differently)
