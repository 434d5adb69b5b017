"""The sweep's grid: the paper's settings first, each other row changing only the knobs its name says (no torch:
this runs in both environments)."""

from __future__ import annotations

from eeg2img_deploy.eval.sweep import GRID, PAPER

# what each row changes of the paper's settings (the knobs sweep.json records)
CHANGED = {"fused-prior": {"prior_graph"}, "prior-25": {"prior_steps"}, "prior-10": {"prior_steps"},
           "dpmpp-10": {"prior_sampler", "prior_steps"}, "steps-1": {"steps"}, "taesd": {"vae"}, "fp16": {"precision"},
           "fastest": {"prior_steps", "prior_graph", "steps", "vae", "precision"}}


def test_each_row_changes_only_the_knobs_it_names():
    assert GRID[0] is PAPER and [s.name for s in GRID[1:]] == list(CHANGED)
    paper = PAPER.knobs()
    assert paper == {"prior_steps": 50, "prior_sampler": "ddpm", "prior_graph": "stepwise", "steps": 4, "guidance": 5.0,
                     "vae": "full", "precision": "fp32"}
    for s in GRID[1:]:
        assert {k for k, v in s.knobs().items() if v != paper[k]} == CHANGED[s.name], s.name
    fastest = GRID[-1].knobs()
    assert (fastest["prior_steps"], fastest["steps"], fastest["vae"], fastest["precision"]) == (10, 1, "tiny", "fp16")
