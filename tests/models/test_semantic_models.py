"""The PixelProjector loads the paper's state dict strictly; GIT loads offline with a pass-through image encoder."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from eeg2img_deploy.errors import CheckpointError, WeightsNotFoundError
from eeg2img_deploy.models.pixel_projector import PixelProjector, load_projector


def test_projector_keys_and_shapes_are_the_papers(tmp_path):
    model = PixelProjector()
    assert sorted(model.state_dict()) == sorted(
        f"{i}.{p}" for i in (1, 2, 4, 5) for p in ("weight", "bias")
    )
    assert tuple(model.state_dict()["1.weight"].shape) == (257, 1) and tuple(model.state_dict()["2.weight"].shape) == (257,)
    out = model(torch.randn(3, 1, 1024))
    assert out.shape == (3, 257, 1024)
    # the last LayerNorm normalizes each token over its 1024 features
    np.testing.assert_allclose(out.detach()[..., :].mean(-1).numpy(), 0, atol=1e-4)


def test_projector_loads_bfloat16_and_rejects_foreign_files(tmp_path):
    model = PixelProjector()
    torch.save({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}, tmp_path / "PixelProjector_best.bin")
    loaded = load_projector(tmp_path / "PixelProjector_best.bin")
    assert next(loaded.parameters()).dtype == torch.float32
    extra = {**model.state_dict(), "6.weight": torch.zeros(3)}
    torch.save(extra, tmp_path / "extra.bin")
    with pytest.raises(CheckpointError, match="unexpected keys: 6.weight"):
        load_projector(tmp_path / "extra.bin")
    torch.save({"encoder.x": torch.zeros(1)}, tmp_path / "other.bin")
    with pytest.raises(CheckpointError, match="not a PixelProjector"):
        load_projector(tmp_path / "other.bin")
    with pytest.raises(WeightsNotFoundError):
        load_projector(tmp_path / "missing.bin")


def test_tiny_git_folder_is_a_real_git_large_coco_layout(tiny_dir, tiny_layout):
    from transformers import AutoConfig, AutoTokenizer

    assert tiny_layout.git == tiny_dir / "git-large-coco"
    assert tiny_layout.projector == tiny_dir / "pixel-projector" / "PixelProjector_best.bin"
    cfg = AutoConfig.from_pretrained(tiny_layout.git, local_files_only=True)
    assert cfg.model_type == "git" and (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (101, 102, 0)
    assert (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2 + 1 == 257
    tok = AutoTokenizer.from_pretrained(tiny_layout.git, local_files_only=True)
    assert (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id) == (101, 102, 0)
    assert (tiny_layout.git / "tokenizer.json").is_file()
    ids = tok("a dog on the grass").input_ids
    assert ids[0] == 101 and ids[-1] == 102 and tok.decode(ids, skip_special_tokens=True) == "a dog on the grass"
    # the runtime decodes with the tokenizers package from the same tokenizer.json: same text, punctuation included
    from tokenizers import Tokenizer

    rt = Tokenizer.from_file(str(tiny_layout.git / "tokenizer.json"))
    for text in ("a dog, a cat.", "the man's dog sitting . riding , walking ' s", "zebras eating grass."):
        ids = tok(text).input_ids + [0, 0]  # and padding after EOS, as generate leaves it
        assert rt.decode(ids, skip_special_tokens=True) == tok.decode(ids, skip_special_tokens=True), text


def test_reference_generate_equals_a_full_recompute_greedy_loop(reference_pipe):
    """transformers' cached generate (the reference) = argmax over the full, uncached forward each step."""
    cap = reference_pipe.captioner
    tokens = reference_pipe.projector(torch.rand(2, 1, 1024) * 2 - 1).detach()
    got = cap.generate_ids(tokens)
    eos = cap.config.eos_token_id
    for i, seq in enumerate(got):
        ids = [cap.config.bos_token_id]
        with torch.no_grad():
            for _ in range(25):
                logits = cap.model(input_ids=torch.tensor([ids]), pixel_values=tokens[i : i + 1, None], use_cache=False).logits
                ids.append(int(logits[0, -1].argmax()))
                if ids[-1] == eos:
                    break
        assert seq == ids[1:], i
    assert got[0] != got[1]  # different images, different captions


def test_missing_git_says_which_option_fixes_it(reference_pipe, tiny_eeg):
    saved = reference_pipe.captioner
    reference_pipe.captioner = None
    try:
        with pytest.raises(WeightsNotFoundError, match="--git"):
            reference_pipe(tiny_eeg[:1], 8, 0, prior_steps=2, image_size=64, caption=True)
    finally:
        reference_pipe.captioner = saved
