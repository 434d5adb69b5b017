"""The whole runtime on TensorRT engines of the real tiny bundle, through the fake TensorRT + CUDA: same
images as onnxruntime, static profiles with a partial last chunk, CUDA graphs, and the copies counted."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import install_fake_gpu

from eeg2img_deploy.core.options import RunOptions
from eeg2img_deploy.engines.build import build_engines
from eeg2img_deploy.runtime.pipeline import Pipeline


@pytest.fixture(scope="module")
def trt_engines(tiny_bundle, tmp_path_factory):
    """TensorRT engines of the tiny bundle: the workstation preset, and jetson-orin (static batch 2, CUDA graphs)."""
    root = tmp_path_factory.mktemp("trt-pipeline")
    mp = pytest.MonkeyPatch()
    try:
        state = install_fake_gpu(mp)
        build_engines(tiny_bundle, root / "ws", backend="tensorrt", progress=False)
        build_engines(tiny_bundle, root / "jetson", backend="tensorrt", preset="jetson-orin", max_batch=2, progress=False)
        build_engines(tiny_bundle, root / "fp32", backend="tensorrt", precision="fp32", progress=False)
        assert state.violations == []
    finally:
        mp.undo()
    return root


@pytest.fixture
def gpu(monkeypatch):
    state = install_fake_gpu(monkeypatch)
    yield state
    assert state.violations == [], f"TensorRT/CUDA API preconditions broken: {state.violations}"


def _run(folder, eeg, prior_steps=3, **kw):
    pipe = Pipeline.from_bundle(folder, **kw)
    try:
        return pipe(eeg, 8, 3, prior_steps=prior_steps, steps=4)
    finally:
        pipe.close()


@pytest.mark.parametrize("engines", ["ws", "jetson"])
def test_tensorrt_pipeline_matches_onnxruntime(trt_engines, tiny_bundle, tiny_eeg, gpu, engines) -> None:
    eeg = tiny_eeg[:3]  # jetson: chunks of 2 and a padded partial chunk of 1
    want = _run(tiny_bundle, eeg, precision="fp16")
    got = _run(trt_engines / engines, eeg, backend="tensorrt")
    np.testing.assert_allclose(got.image_embeds, want.image_embeds, atol=2e-3)
    assert np.abs(got.images.astype(int) - want.images).max() <= 2
    if engines == "jetson":
        names = gpu.gpu.names()
        assert names.count("cudaGraphLaunch") > 0, "the static engines replay CUDA graphs"
        x_rows = {args[1][0] for name, args in gpu.calls if name == "IExecutionContext.set_input_shape" and args[0] == "x"}
        assert x_rows == {4}, "the prior's cond+uncond rows of the last chunk (2) are padded to the static 2 x 2"


def test_copies_per_chunk(trt_engines, tiny_eeg, gpu) -> None:
    """One chunk, 3 prior steps, 4 UNet steps: the UNet's fixed inputs go up once, not once per step."""
    _run(trt_engines / "ws", tiny_eeg[:1], backend="tensorrt")
    h2d, d2h = gpu.gpu.count("H2D"), gpu.gpu.count("D2H")
    # encoder 2 up / 1 down; prior 3 x (4 up / 1 down); unet 5 fixed once + 4 x (2 up / 1 down); decoder 1 / 1
    assert (h2d, d2h) == (2 + 3 * 4 + 5 + 4 * 2 + 1, 1 + 3 + 4 + 1)
    assert all(c.pinned for c in gpu.gpu.copies)


def test_fused_prior_is_one_upload_and_one_download(trt_engines, tiny_eeg, gpu) -> None:
    """The fused prior engine: cond, noise and guidance up once and image_embeds down once for all 10 steps."""
    pipe = Pipeline.from_bundle(trt_engines / "ws", backend="tensorrt")
    try:
        assert pipe.fused_prior_steps == [50, 10]
        emb = pipe.encode(tiny_eeg[:1], np.array([8]))
        gpu.gpu.copies.clear()
        fused = pipe.prior(emb, 3, 0, steps=10, guidance=5.0, sampler="ddpm")
        assert (gpu.gpu.count("H2D"), gpu.gpu.count("D2H")) == (3, 1)
        stepwise = pipe.prior(emb, 3, 0, steps=10, guidance=5.0, sampler="ddpm", graph="stepwise")
    finally:
        pipe.close()
    # both fp16 engines; the fake runs them on onnxruntime's CPU provider, which drops fp16 roundings
    # differently in the two graphs (3e-3 seen); on onnxruntime fp32 they are bit-identical (test_fused_prior.py)
    np.testing.assert_allclose(fused, stepwise, atol=5e-3)


@pytest.mark.parametrize("engines", ["fp32", "ws"])
def test_fused_prior_chain_stays_on_the_device(trt_engines, tiny_bundle, tiny_eeg, gpu, engines) -> None:
    """Fused prior, fp32 engines and the default fp16 ones (float32 edges: before, the fp16 encoder's output and the
    UNet's input crossed the host to be cast, 19 uploads and no device copy): the EEG embedding feeds the prior graph
    and its output the UNet on the device."""
    want = _run(tiny_bundle, tiny_eeg[:2], prior_steps=10, precision="fp16" if engines == "ws" else "fp32")
    got = _run(trt_engines / engines, tiny_eeg[:2], prior_steps=10, backend="tensorrt")
    assert got.prior_graph == "fused"
    np.testing.assert_allclose(got.image_embeds, want.image_embeds, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.eeg_embeds, want.eeg_embeds, rtol=1e-5, atol=1e-5)
    assert np.abs(got.images.astype(int) - want.images).max() <= 1
    g = gpu.gpu
    # encoder 2 up; fused prior: cond on the device, noise + guidance up; unet: 4 fixed up + image_embeds on the
    # device, 4 x (sample, timestep up / noise_pred down); decoder 1 up / images down; embeddings down for Result
    assert (g.count("H2D"), g.count("D2D"), g.count("D2H")) == (2 + 2 + 4 + 4 * 2 + 1, 2, 4 + 1 + 2)


def test_caption_stages_run_on_static_engines(trt_engines, tiny_bundle, tiny_eeg, gpu) -> None:
    """jetson-orin (static batch 2) used to fix the decoder's cache axis at its opt (269) while its first step needs
    the 257 visual tokens, and to pad and cut axis 0 of every tensor while the KV cache carries the batch on
    axis 1 (caption_prefill at batch 1 gave (2, 2, ...) instead of (layers2, 1, ...))."""
    want_pipe = Pipeline.from_bundle(tiny_bundle, precision="fp16")
    pipe = Pipeline.from_bundle(trt_engines / "jetson", backend="tensorrt")
    try:
        for p in (want_pipe, pipe):
            p.semantic.prepare(RunOptions(caption=True))
        embeds = np.random.default_rng(0).uniform(-1, 1, (1, 1024)).astype(np.float32)
        tokens = want_pipe.run_stage("projector", {"image_embeds": embeds})["visual_tokens"]
        want = want_pipe.run_stage("caption_prefill", {"visual_tokens": tokens})["visual_kv"]
        got = pipe.run_stage("caption_prefill", {"visual_tokens": tokens})["visual_kv"]
        assert got.shape == want.shape and got.shape[1] == 1, got.shape
        np.testing.assert_allclose(got, want, atol=2e-3)
        step = {"input_ids": np.array([[pipe.semantic._captioner.bos]]), "position_ids": np.array([[0]])}
        nxt = pipe.run_stage("caption_decoder", {**step, "past_kv": got})  # the cache at 257: its first step
        assert nxt["present_kv"].shape == (*want.shape[:3], want.shape[3] + 1, want.shape[4])
        run = lambda p: p(tiny_eeg[:3], 8, 3, prior_steps=10, caption=True)  # noqa: E731 (chunks of 2 and a padded 1)
        assert run(pipe).caption_ids == run(want_pipe).caption_ids
    finally:
        pipe.close()
        want_pipe.close()
