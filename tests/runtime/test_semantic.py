"""Captions and prompts in the torch-free runtime reproduce the reference, and each input moves them.

Parity (fp32, tiny set): captions token for token (and the same text), prompt embeddings within 1e-4
of diffusers' ``encode_prompt``, images with a prompt >= 40 dB. Sensitivity: another image embedding
gives another caption; another prompt gives an image far below 40 dB (< 33 dB, see MAX_PROMPT_PSNR).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from eeg2img_deploy.errors import ManifestError
from eeg2img_deploy.runtime.pipeline import Pipeline
from eeg2img_deploy.core.options import RunOptions
from eeg2img_deploy.runtime.semantic import CAPTION_STAGES, TEXT_STAGE

from support import TEST_IMAGE_SIZE, psnr

SUBJECT, SEED, PRIOR_STEPS = 8, 3, 10
MIN_PSNR = 40.0
MAX_PERTURBED_PSNR = 30.0
# The tiny UNet's text path is weak next to its IP-Adapter branch (scaled to dominate, see tiny.py): a prompt moves
# the 128 px image to 30.5-31 dB, an error 8x the MSE that the 40 dB parity tolerance allows.
MAX_PROMPT_PSNR = 33.0
PROMPTS = ["a cat on a table", "", "A Dog, in the SNOW!", "élan café " * 40]  # mixed case, accents, truncation


@pytest.fixture(scope="module")
def pipe(tiny_bundle):
    p = Pipeline.from_bundle(tiny_bundle)
    yield p
    p.close()


@pytest.fixture(scope="module")
def ref_captioned(reference_pipe, tiny_eeg):
    return reference_pipe(tiny_eeg, SUBJECT, SEED, prior_steps=PRIOR_STEPS, image_size=TEST_IMAGE_SIZE,
                          prompt_from_caption=True)


def test_empty_prompt_path_opens_nothing_and_captions_leave_the_image_alone(tiny_bundle, tiny_eeg):
    p = Pipeline.from_bundle(tiny_bundle)
    plain = p(tiny_eeg[:2], SUBJECT, SEED, prior_steps=PRIOR_STEPS)
    assert not set(p.sessions) & {TEXT_STAGE, *CAPTION_STAGES} and plain.captions is None
    assert set(plain.timings_ms) == {"encoder", "prior", "unet", "decoder", "total"}
    captioned = p(tiny_eeg[:2], SUBJECT, SEED, prior_steps=PRIOR_STEPS, caption=True)
    assert set(CAPTION_STAGES) <= set(p.sessions) and TEXT_STAGE not in p.sessions
    np.testing.assert_array_equal(captioned.images, plain.images)  # own noise stream, empty prompt kept
    assert len(captioned.captions) == 2 and captioned.timings_ms["caption"] > 0
    p.close()


def test_tokens_match_transformers(pipe, reference_pipe):
    pipe.semantic.prepare(RunOptions(prompt="x"))
    ids, ids_2 = pipe.semantic._prompts.token_ids(PROMPTS)
    for got, tok in ((ids, reference_pipe.sdxl.tokenizer), (ids_2, reference_pipe.sdxl.tokenizer_2)):
        want = tok(PROMPTS, padding="max_length", max_length=77, truncation=True, return_tensors="np").input_ids
        np.testing.assert_array_equal(got, want)
    assert ids[3, -1] == reference_pipe.sdxl.tokenizer.eos_token_id  # truncated, EOS kept


def test_prompt_embeddings_match_encode_prompt(pipe, reference_pipe):
    from eeg2img_deploy.reference.stage2 import encode_prompts

    pipe.semantic.prepare(RunOptions(prompt="x"))
    embeds, pooled = pipe.semantic._prompts(PROMPTS)
    ref = encode_prompts(reference_pipe.sdxl, PROMPTS)
    err = max(np.abs(embeds - ref.prompt_embeds.numpy()).max(), np.abs(pooled - ref.pooled.numpy()).max())
    print(f"\nprompt embeddings: runtime vs encode_prompt max abs {err:.2e}")
    assert err <= 1e-4
    np.testing.assert_allclose(embeds[1:2], pipe.constants["prompt_embeds"], atol=1e-4)  # "" is the constant


def test_captions_match_the_reference_token_for_token(pipe, ref_captioned, tiny_eeg):
    run = pipe(tiny_eeg, SUBJECT, SEED, prior_steps=PRIOR_STEPS, prompt_from_caption=True)
    print("\n" + "\n".join(run.captions))
    assert run.caption_ids == ref_captioned.caption_ids
    assert run.captions == ref_captioned.captions
    assert len(set(run.captions)) == len(run.captions)  # four trials, four captions
    db = [psnr(a, b) for a, b in zip(run.images, ref_captioned.images)]
    print(f"prompt from caption: PSNR min {min(db):.1f} dB")
    assert min(db) >= MIN_PSNR


def test_fixed_prompt_image_matches_the_reference(pipe, reference_pipe, tiny_eeg):
    ref = reference_pipe(tiny_eeg[:2], SUBJECT, SEED, prior_steps=PRIOR_STEPS, image_size=TEST_IMAGE_SIZE,
                         prompt=PROMPTS[0])
    run = pipe(tiny_eeg[:2], SUBJECT, SEED, prior_steps=PRIOR_STEPS, prompt=PROMPTS[0])
    db = [psnr(a, b) for a, b in zip(run.images, ref.images)]
    print(f"\nfixed prompt: PSNR min {min(db):.1f} dB")
    assert min(db) >= MIN_PSNR and run.captions is None


def test_the_prompt_moves_the_image(pipe, tiny_eeg):
    def image(prompt):
        return pipe(tiny_eeg[:1], SUBJECT, SEED, prior_steps=PRIOR_STEPS, prompt=prompt).images[0]

    empty = pipe(tiny_eeg[:1], SUBJECT, SEED, prior_steps=PRIOR_STEPS).images[0]
    a, b = image(PROMPTS[0]), image(PROMPTS[2])
    db = {"empty vs A": psnr(empty, a), "A vs B": psnr(a, b)}
    print(f"\nprompt sensitivity: {db}")
    assert max(db.values()) < MAX_PROMPT_PSNR
    # "" encoded at run time is the constant up to fp32 rounding: at most one grey level apart
    assert np.abs(image("").astype(int) - empty).max() <= 1


def test_the_image_embedding_moves_the_caption(pipe):
    pipe.semantic.prepare(RunOptions(caption=True))
    rng = np.random.default_rng(0)
    base = rng.uniform(-1, 1, (1, 1024)).astype(np.float32)
    others = [base + rng.normal(0, 0.3, base.shape).astype(np.float32), rng.uniform(-1, 1, (1, 1024)).astype(np.float32)]
    ids = [pipe.semantic._captioner.token_ids(e)[0] for e in (base, *others)]
    changed = [sum(x != y for x, y in zip(ids[0], o)) + abs(len(ids[0]) - len(o)) for o in ids[1:]]
    print(f"\ntokens changed: {changed} of {len(ids[0])}")
    assert min(changed) >= 3


def test_missing_caption_stages_name_the_fix(tiny_bundle, tiny_eeg):
    p = Pipeline.from_bundle(tiny_bundle)
    p.manifest = p.manifest.replace(artifacts=tuple(a for a in p.manifest.artifacts if a.stage not in CAPTION_STAGES))
    with pytest.raises(ManifestError, match="git-large-coco.*--caption"):
        p(tiny_eeg[:1], SUBJECT, SEED, prior_steps=2, caption=True)
    with pytest.raises(ValueError, match="--prompt-from-caption"):
        RunOptions(prompt="a", prompt_from_caption=True)
    p.close()


def test_cli_infer_captions_match_cli_reference(tiny_bundle, tiny_dir, tmp_path):
    from click.testing import CliRunner

    from eeg2img_deploy.cli import cli

    common = ["--eeg", str(tiny_dir / "eeg" / "synthetic_eeg.npy"), "--subject", str(SUBJECT), "--trials", "1:3",
              "--seed", "5", "--prior-steps", "5", "--caption", "--prompt-from-caption"]
    runner = CliRunner()
    ref = runner.invoke(cli, ["reference", "--weights", str(tiny_dir), "--image-size", str(TEST_IMAGE_SIZE),
                              "--out", str(tmp_path / "ref"), *common])
    assert ref.exit_code == 0, ref.output + repr(ref.exception)
    run = runner.invoke(cli, ["infer", "--bundle", str(tiny_bundle), "--out", str(tmp_path / "run"), *common])
    assert run.exit_code == 0, run.output + repr(run.exception)
    a, b = ((tmp_path / d / "captions.txt").read_text().splitlines() for d in ("ref", "run"))
    assert a == b and len(a) == 2
    ja, jb = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("ref", "run"))
    assert ja["captions"] == jb["captions"] == a and jb["prompt_from_caption"] is True
    from PIL import Image

    for name in ja["images"]:
        x, y = (np.asarray(Image.open(tmp_path / d / name)) for d in ("ref", "run"))
        assert psnr(x, y) >= MIN_PSNR, name
    bad = runner.invoke(cli, ["infer", "--bundle", str(tiny_bundle), "--out", str(tmp_path / "bad"), *common, "--prompt", "x"])
    assert bad.exit_code == 2 and "exclude each other" in bad.output and not (tmp_path / "bad").exists()


def test_onnxruntime_engine_folder_captions_match(ort_engines, ref_captioned, tiny_eeg):
    out, _ = ort_engines
    p = Pipeline.from_bundle(out)
    run = p(tiny_eeg, SUBJECT, SEED, prior_steps=PRIOR_STEPS, prompt_from_caption=True)
    p.close()
    assert run.caption_ids == ref_captioned.caption_ids
    assert min(psnr(a, b) for a, b in zip(run.images, ref_captioned.images)) >= MIN_PSNR


def test_bench_reports_the_caption_and_text_encoder_stages(tiny_bundle, tiny_dir):
    from eeg2img_deploy.bench import print_report, run_bench

    rep = run_bench(tiny_bundle, runs=1, warmup=0, prior_steps=2, baseline_weights=tiny_dir,
                    prompt_from_caption=True)
    for side in ("runtime", "baseline"):
        lat = rep[side]["latency_ms"]
        assert {"caption", "text_encoder"} <= set(lat) and lat["caption"]["p50"] > 0 and lat["text_encoder"]["p50"] > 0
    assert rep["settings"]["prompt_from_caption"] is True and "caption" in rep["ratios"]
    print_report(rep)
    assert rep["baseline"]["parity"]["images_max_abs_diff"] <= 8
