"""The fused prior graph (the whole DDPM sampler in one graph) against the stepwise numpy sampler.

Tolerance: none. Exported and run with the same onnxruntime on the same CPU (as here), the fp32 fused graph
equals ``ddpm_sample`` calling the stepwise ``prior`` graph bit for bit, on the same NoiseSource draws, at
50 and 10 steps: its folded time terms are onnxruntime's own values (export/prior_sampler.py). Where the
two sides could round differently (another CPU kind), 1e-5 (max abs; embeddings lie in [-1, 1]) is the
bound the pipeline test keeps. Sensitivity: moving any input (the condition, x_T, one late variance draw,
the guidance) moves the output > 1e-2.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from eeg2img_deploy.cli import cli
from eeg2img_deploy.errors import ManifestError
from eeg2img_deploy.manifest import read_manifest
from eeg2img_deploy.core.noise import NoiseSource
from eeg2img_deploy.runtime.ort_backend import OrtStage
from eeg2img_deploy.runtime.pipeline import Pipeline
from eeg2img_deploy.core.schedulers import ddpm_sample

TOLERANCE = 1e-5
MIN_MOVE = 1e-2
SEED = 4


@pytest.fixture(scope="module")
def pipe(tiny_bundle):
    p = Pipeline.from_bundle(tiny_bundle)
    yield p
    p.close()


@pytest.fixture(scope="module")
def cond() -> np.ndarray:
    rng = np.random.default_rng(11)
    c = rng.standard_normal((3, 1024))
    return ((c - c.mean(1, keepdims=True)) / c.std(1, keepdims=True)).astype(np.float32)  # like the encoder's output


def _fused(pipe, steps):
    return pipe.sessions[f"prior_sampler@{steps}"]


def _draws(steps: int, batch: int) -> np.ndarray:
    noise = NoiseSource(SEED, batch, "prior")
    return np.stack([noise.normal((1024,)) for _ in range(steps)], axis=1)


def _run_fused(pipe, steps, cond, draws, guidance):
    feeds = {"cond": cond, "noise": draws, "guidance": np.asarray(guidance, np.float32)}
    return _fused(pipe, steps).run(feeds)["image_embeds"]


@pytest.mark.parametrize("steps", [50, 10])
def test_fused_graph_equals_the_numpy_sampler(pipe, cond, steps):
    stepwise = pipe.sessions["prior"]

    def eps_fn(x, t, c, mask):
        return stepwise.run({"x": x, "t": t, "cond": c, "cond_mask": mask})["eps"]

    want = ddpm_sample(eps_fn, cond, NoiseSource(SEED, len(cond), "prior"), pipe.constants["prior_alphas_cumprod"],
                       steps=steps, guidance=5.0)
    got = _run_fused(pipe, steps, cond, _draws(steps, len(cond)), np.full(len(cond), 5.0))
    err = float(np.abs(got - want).max())
    print(f"\nfused vs stepwise, {steps} steps: max |diff| {err:.2e}")
    assert got.shape == want.shape == (3, 1024) and got.dtype == np.float32
    assert err == 0, "the fused graph no longer computes the stepwise sampler's arithmetic op for op"
    assert np.abs(want).max() > 0.5  # a real output, not a collapsed one


@pytest.mark.parametrize("steps", [50, 10])
def test_fused_graph_computes_only_the_denoiser_per_step(tiny_bundle, steps):
    """The time MLPs are folded and the condition terms computed once: 10 Gemms per step + 1, no sinusoid."""
    import collections

    import onnx

    a = read_manifest(tiny_bundle).artifact("prior_sampler", "fp32", steps)
    model = onnx.load(str(tiny_bundle / a.file), load_external_data=False)
    ops = collections.Counter(n.op_type for n in model.graph.node)
    assert ops["Gemm"] == 10 * steps + 1, ops  # the denoiser's 10 Linears per step, the 8 condition Linears as one
    assert ops["Sin"] == ops["Cos"] == 0 and ops["Sigmoid"] == 9 * steps, ops  # no time MLP left in the graph
    # the denoiser (50 nodes: one Add per level, time and condition terms summed for all steps at once) and the
    # sampler (10) per step; two Adds per level and the sampler's textbook form took 70, the time MLPs ~140
    assert len(model.graph.node) <= 60 * steps + 30, len(model.graph.node)


def test_folded_time_terms_are_the_priors_time_terms(tiny_layout):
    """The constants are what the prior's time MLPs give for the table's timesteps (torch within fp32 rounding)."""
    import torch

    from eeg2img_deploy.export.prior_sampler import time_terms_onnxruntime
    from eeg2img_deploy.models.checkpoints import load_prior

    prior, _ = load_prior(tiny_layout.prior)
    t = [980, 500, 0]
    got = time_terms_onnxruntime(prior, t)
    with torch.no_grad():
        enc, dec = prior.time_terms(torch.tensor(t, dtype=torch.float32), torch.float32)
    want = [w.numpy() for w in (*enc, *dec)]
    assert [g.shape for g in got] == [w.shape for w in want] == [(3, d) for d in (1024, 512, 256, 128, 64, 128, 256, 512)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-5 * np.abs(w).max())
    assert np.abs(got[0][0] - got[0][1]).max() > 1e-2  # each timestep its own terms


@pytest.mark.parametrize("steps", [50, 10])
def test_every_input_moves_the_fused_output(pipe, cond, steps):
    draws = _draws(steps, len(cond))
    guidance = np.full(len(cond), 5.0, np.float32)
    base = _run_fused(pipe, steps, cond, draws, guidance)
    other_cond = np.roll(cond, 1, axis=1)
    x_t = draws.copy()
    x_t[:, 0] = np.roll(x_t[:, 0], 1, axis=1)
    late = draws.copy()
    late[:, -1] *= -1.0  # the last variance draw (the step before t = 0)
    moved = {
        "cond": _run_fused(pipe, steps, other_cond, draws, guidance),
        "x_T": _run_fused(pipe, steps, cond, x_t, guidance),
        "late draw": _run_fused(pipe, steps, cond, late, guidance),
        "guidance": _run_fused(pipe, steps, cond, draws, guidance * 0.5),
    }
    for what, out in moved.items():
        assert np.abs(out - base).max() > MIN_MOVE, what
    # and the per-sample guidance is per sample: changing row 0's leaves row 1 as it was
    g = guidance.copy()
    g[0] = 1.0
    out = _run_fused(pipe, steps, cond, draws, g)
    assert np.abs(out[0] - base[0]).max() > MIN_MOVE
    np.testing.assert_allclose(out[1:], base[1:], atol=TOLERANCE, rtol=0)


def test_pipeline_fused_and_stepwise_give_the_same_images(pipe, tiny_eeg):
    eeg = tiny_eeg[:2]
    fused = pipe(eeg, 8, SEED, prior_steps=10)
    stepwise = pipe(eeg, 8, SEED, prior_steps=10, prior_graph="stepwise")
    assert (fused.prior_graph, stepwise.prior_graph) == ("fused", "stepwise")
    assert np.abs(fused.image_embeds - stepwise.image_embeds).max() <= TOLERANCE
    assert np.abs(fused.images.astype(int) - stepwise.images).max() <= 1  # a rounding level at most


def test_which_graph_runs(pipe):
    assert pipe.fused_prior_steps == [50, 10]
    assert pipe.prior_graph(None, "ddpm", 50) == "fused"
    assert pipe.prior_graph(None, "ddpm", 20) == "stepwise"  # no fused graph for 20 steps
    assert pipe.prior_graph(None, "ddim", 10) == "stepwise"  # the fused graph is DDPM
    assert pipe.prior_graph("stepwise", "ddpm", 50) == "stepwise"
    with pytest.raises(ManifestError, match=r"--prior-graph stepwise.*--fused-prior-steps 20"):
        pipe.prior_graph("fused", "ddpm", 20)
    with pytest.raises(ValueError, match="DDPM only"):
        pipe.prior_graph("fused", "dpmpp", 10)


def test_fp16_fused_graph_has_fp32_io_and_stays_close(tiny_bundle, cond):
    m = read_manifest(tiny_bundle)
    outs = {}
    for precision in ("fp32", "fp16"):
        a = m.artifact("prior_sampler", precision, 10)
        assert [(t.name, t.dtype) for t in (*a.inputs, *a.outputs)] == [
            ("cond", "float32"), ("noise", "float32"), ("guidance", "float32"), ("image_embeds", "float32")]
        assert a.inputs[1].shape == ("batch", 10, 1024)
        stage = OrtStage(tiny_bundle / a.file, a)
        outs[precision] = stage.run({"cond": cond, "noise": _draws(10, 3), "guidance": np.full(3, 5.0, np.float32)})
        stage.close()
    diff = np.abs(outs["fp16"]["image_embeds"] - outs["fp32"]["image_embeds"]).max()
    assert diff <= 3e-2 * np.abs(outs["fp32"]["image_embeds"]).max()


def _infer(bundle, eeg_path, out, *extra):
    return CliRunner().invoke(cli, ["infer", "--bundle", str(bundle), "--eeg", str(eeg_path), "--subject", "8",
                                    "--out", str(out), *extra])


def test_cli_prior_graph_errors(tiny_bundle, tiny_eeg, tmp_path):
    eeg_path = tmp_path / "eeg.npy"
    np.save(eeg_path, tiny_eeg[:1])
    r = _infer(tiny_bundle, eeg_path, tmp_path / "a", "--prior-graph", "fused", "--prior-sampler", "ddim")
    assert r.exit_code == 2 and "--prior-graph" in r.output and "DDPM only" in r.output, r.output
    assert not (tmp_path / "a").exists()
    r = _infer(tiny_bundle, eeg_path, tmp_path / "b", "--prior-graph", "fused", "--prior-steps", "3")
    assert isinstance(r.exception, ManifestError) and "--prior-graph stepwise" in str(r.exception)
    assert not (tmp_path / "b").exists()
