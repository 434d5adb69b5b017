"""BrainFLORA through the whole toolkit: init-tiny's UnifiedEncoder checkpoint and prior -> export ->
build-engines (onnxruntime) -> the torch-free runtime, against the PyTorch reference on the same files.

One export (fp32, SDXL-Turbo 1 and 4 steps, the fused 10-step prior: BrainFLORA's setting) for the module.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from eeg2img_deploy.manifest import EncoderKind, Precision, read_manifest
from eeg2img_deploy.runtime.pipeline import Pipeline
from eeg2img_deploy.tiny_brainflora import CHECKPOINT, PRIOR

from support import TEST_IMAGE_SIZE, psnr

SEED, PRIOR_STEPS, GUIDANCE, STEPS = 5, 10, 2.0, 4  # BrainFLORA's reconstruction settings
SUBJECT = 10  # sub-10: past every subject table, and BrainFLORA's EEG tower reads no subject id


@pytest.fixture(scope="module")
def bf_layout(tiny_dir):
    from eeg2img_deploy.weights import resolve_weights

    folder = tiny_dir / "brainflora"
    return resolve_weights(encoder=folder / CHECKPOINT, prior=folder / PRIOR, sdxl=tiny_dir / "sdxl-turbo",
                           ip_adapter=tiny_dir / "ip-adapter")


@pytest.fixture(scope="module")
def bf_engines(bf_layout, tmp_path_factory):
    from eeg2img_deploy.engines.build import build_engines
    from eeg2img_deploy.export.bundle import ExportSettings, export_bundle

    root = tmp_path_factory.mktemp("brainflora")
    settings = ExportSettings(precisions=(Precision.FP32,), image_size=TEST_IMAGE_SIZE, fused_prior_steps=(PRIOR_STEPS,))
    export_bundle(bf_layout, root / "bundle", settings, progress=False)
    build_engines(root / "bundle", root / "engines", backend="onnxruntime", ort_provider="cpu", progress=False)
    return root / "bundle", root / "engines"


@pytest.fixture(scope="module")
def bf_pipe(bf_engines):
    pipe = Pipeline.from_bundle(bf_engines[1])
    yield pipe
    pipe.close()


@pytest.fixture(scope="module")
def bf_reference(bf_layout, tiny_eeg):
    from eeg2img_deploy.reference.pipeline import ReferencePipeline

    ref = ReferencePipeline.from_weights(bf_layout)
    return ref, ref(tiny_eeg[:2], SUBJECT, SEED, steps=STEPS, prior_steps=PRIOR_STEPS, guidance=GUIDANCE,
                    image_size=TEST_IMAGE_SIZE)


def test_manifest_and_card_name_brainflora(bf_engines):
    bundle, engines = bf_engines
    for folder in (bundle, engines):
        m = read_manifest(folder)
        assert m.bundle.encoder.kind is EncoderKind.BRAINFLORA and not m.bundle.encoder.uses_subject_ids
        assert m.bundle.num_subjects is None
        assert [t.name for t in m.artifact("encoder", "fp32").inputs] == ["eeg"]  # no subject-id input
        aside = m.sources["encoder"].found["left_aside"]
        assert set(aside) == {"encoder.meg", "encoder.fmri"} and all(t["keys"] > 0 for t in aside.values())
        card = (folder / "README.md").read_text()
        assert "BrainFLORA's UnifiedEncoder, EEG tower and MoE projection" in card and "`encoder.meg`" in card
    validation = read_manifest(bundle).artifact("encoder", "fp32").validation
    assert validation.worst() <= 1e-5 and validation.tolerance == 1e-5


def test_runtime_matches_the_torch_modules(bf_pipe, bf_reference, tiny_eeg):
    _, ref = bf_reference
    run = bf_pipe(tiny_eeg[:2], SUBJECT, SEED, steps=STEPS, prior_steps=PRIOR_STEPS, guidance=GUIDANCE)
    enc_err = np.abs(run.eeg_embeds - ref.eeg_embeds).max() / np.abs(ref.eeg_embeds).max()
    prior_err = np.abs(run.image_embeds - ref.image_embeds).max() / np.abs(ref.image_embeds).max()
    db = [psnr(a, b) for a, b in zip(run.images, ref.images)]
    print(f"\nBrainFLORA: encoder rel. error {enc_err:.2e}, prior {prior_err:.2e}, PSNR min {min(db):.1f} dB "
          f"({run.prior_graph} prior)")
    assert enc_err <= 1e-5 and prior_err <= 1e-4 and min(db) >= 40.0
    assert run.prior_graph == "fused"


def test_eeg_moves_everything_and_subject_ids_nothing(bf_pipe, bf_reference, tiny_eeg):
    _, ref = bf_reference
    eeg = tiny_eeg[:2]
    moved = bf_pipe(eeg + 0.5 * np.random.default_rng(0).standard_normal(eeg.shape, dtype=np.float32), SUBJECT, SEED,
                    steps=STEPS, prior_steps=PRIOR_STEPS, guidance=GUIDANCE)
    enc_moved = np.abs(moved.eeg_embeds - ref.eeg_embeds).max() / np.abs(ref.eeg_embeds).max()
    assert enc_moved > 1e3 * 1e-5 and max(psnr(a, b) for a, b in zip(moved.images, ref.images)) < 30.0
    other = bf_pipe(eeg, 1, SEED, steps=STEPS, prior_steps=PRIOR_STEPS, guidance=GUIDANCE)
    same = bf_pipe(eeg, SUBJECT, SEED, steps=STEPS, prior_steps=PRIOR_STEPS, guidance=GUIDANCE)
    np.testing.assert_array_equal(other.eeg_embeds, same.eeg_embeds)
    np.testing.assert_array_equal(other.images, same.images)


def test_the_bundle_recommends_brainfloras_settings(bf_engines, bf_reference, tiny_bundle):
    from eeg2img_deploy.core.options import RunOptions
    from eeg2img_deploy.manifest import RecommendedRun

    for folder in bf_engines:
        bundle = read_manifest(folder).bundle
        assert bundle.recommended == RecommendedRun(PRIOR_STEPS, GUIDANCE, STEPS, "BrainFLORA eval/FLORA_inference_reconst.py")
        run = RunOptions().resolve(bundle)
        assert (run.prior_steps, run.guidance, run.steps, run.ip_scale) == (PRIOR_STEPS, GUIDANCE, STEPS, 1.0)
        assert "recommended by the encoder's authors" in (folder / "README.md").read_text()
        assert RunOptions(prior_steps=50, guidance=5.0, steps=1).resolve(bundle).prior_steps == 50  # given wins
    ref, _ = bf_reference
    assert ref.options().prior_steps == PRIOR_STEPS and ref.options().guidance == GUIDANCE  # the reference too
    paper = RunOptions().resolve(read_manifest(tiny_bundle).bundle)  # an ATM bundle recommends nothing
    assert (paper.prior_steps, paper.guidance, paper.steps) == (50, 5.0, 1)


def test_cli_infer_takes_the_bundle_defaults(bf_engines, bf_pipe, tiny_dir, tmp_path, monkeypatch, capsys):
    from support import run_main

    code, _, err = run_main(monkeypatch, capsys, ["infer", "--bundle", bf_engines[1], "--eeg",
                                                  tiny_dir / "eeg" / "synthetic_eeg.npy", "--trials", "0:2", "--subject",
                                                  SUBJECT, "--seed", SEED, "--out", tmp_path / "out"])
    assert code == 0, err
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["subject_ids"] == [SUBJECT, SUBJECT] and result["prior_graph"] == "fused"
    assert (result["prior_steps"], result["guidance"], result["steps"]) == (PRIOR_STEPS, GUIDANCE, STEPS)
    from PIL import Image

    want = bf_pipe(np.load(tiny_dir / "eeg" / "synthetic_eeg.npy")[:2], SUBJECT, SEED, steps=STEPS,
                   prior_steps=PRIOR_STEPS, guidance=GUIDANCE)
    got = np.stack([np.asarray(Image.open(tmp_path / "out" / f"image_{i:03d}.png")) for i in range(2)])
    np.testing.assert_array_equal(got, want.images)
    code, out, _ = run_main(monkeypatch, capsys, ["infer", "--help"])
    flat = " ".join(out.split())
    assert "[default: from the bundle, else 50; 1<=x<=1000]" in flat and "[default: from the bundle, else 5]" in flat


def test_triton_repo_leaves_the_fused_ensemble_to_the_bls_model(bf_engines, tmp_path):
    """The ensemble would feed subject_id to an encoder that has no such input: only the BLS model is written."""
    from eeg2img_deploy.serve.triton_repo import RepoSettings, write_repository

    configs = write_repository(bf_engines[0], tmp_path / "repo", RepoSettings())
    assert "eeg2img" in configs and f"prior_sampler_{PRIOR_STEPS}" in configs
    assert not [name for name in configs if name.startswith("eeg2img_fused_")]
    assert [i["name"] for i in configs["encoder"]["input"]] == ["eeg"]


def test_tensorrt_would_parse_the_encoder_graph(bf_engines):
    """BrainFLORA's encoder graph (MatMul attention, Tile end padding, EEG-only input) against TensorRT's ONNX
    parser rules and the workstation profile (engines/trt_rules.py; no TensorRT needed)."""
    from eeg2img_deploy.engines.build import check_for_tensorrt

    found = check_for_tensorrt(bf_engines[0], stages=["encoder"])
    assert not [v.line() for v in found if v.blocking]
