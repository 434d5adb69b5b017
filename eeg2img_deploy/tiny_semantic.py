"""The tiny set's semantic part: a tiny ``git-large-coco`` folder and a ``PixelProjector_best.bin``.

The GIT folder is what ``save_pretrained`` writes for the real one (config.json, model.safetensors,
a BERT WordPiece tokenizer.json with the real special ids: [PAD] 0, [UNK] 100, [CLS] 101 = BOS,
[SEP] 102 = EOS), built locally from a small word list. GIT's ViT is kept at the real 224 px / 14 px
patches (257 tokens, the count the projector produces) but one narrow layer: it never runs.
The decoder is initialised wide (std 0.3) and its output head scaled up so that the visual tokens
decide the caption and greedy decoding has clear winners (the sensitivity and parity tests need both).
"""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "a an the of on in with and at near next to by under over is are two three some man woman person people child "
    "dog cat horse bird cow sheep elephant bear zebra giraffe car bus train truck boat plane bike motorcycle street "
    "road field grass water beach sky tree trees table plate food pizza cake sandwich banana apple bowl cup kitchen "
    "room bed couch chair window door building city park snow ball kite frisbee skateboard surfboard wave sitting "
    "standing walking riding holding eating playing flying lying parked large small white black red blue green "
    "young old top front close up view"
).split()
SUFFIXES = ("##s", "##ing", "##ed", "##er", ".", ",", "'", "s")  # punctuation: decoding's clean-up is exercised


def tiny_git_vocab() -> dict[str, int]:
    """[PAD] at 0, words at 1..99, the real BERT special ids 100..103, then the rest of the words and suffixes."""
    head, tail = WORDS[:99], [*WORDS[99:], *SUFFIXES]
    tokens = ["[PAD]", *head, "[UNK]", "[CLS]", "[SEP]", "[MASK]", *tail]
    assert tokens.index("[CLS]") == 101 and len(set(tokens)) == len(tokens)
    return {t: i for i, t in enumerate(tokens)}


def tiny_git(vocab_size: int):
    import torch
    from transformers import GitConfig, GitForCausalLM

    config = GitConfig(
        vision_config={"hidden_size": 1024, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
                       "image_size": 224, "patch_size": 14},
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, bos_token_id=101, eos_token_id=102, pad_token_id=0,
        initializer_range=0.3,  # 0.02 (the default) leaves the attention output too small to carry the image
    )
    model = GitForCausalLM(config).eval()
    with torch.no_grad():
        model.output.weight.mul_(10.0)  # wide logit gaps: greedy choices far from ties
    return model


def strengthen_text_path(pipe, scale: float = 50.0) -> None:
    """Let a prompt move the image: bigG's pooled projection feeds SDXL's time embedding.

    At init a prompt changed the tiny image by about as much as fp32 rounding noise allows (41 dB);
    scaled, two prompts give images far apart (the prompt sensitivity test).
    """
    import torch

    with torch.no_grad():
        pipe.text_encoder_2.text_projection.weight.mul_(scale)


def write_semantic(out: Path, seed: int) -> None:
    import torch
    from transformers import BertTokenizer

    from .models.pixel_projector import PixelProjector

    torch.manual_seed(seed + 7)
    vocab = tiny_git_vocab()
    git_dir = out / "git-large-coco"
    tiny_git(len(vocab)).save_pretrained(git_dir, safe_serialization=True)
    BertTokenizer(vocab=vocab).save_pretrained(git_dir)
    (out / "pixel-projector").mkdir(parents=True, exist_ok=True)
    torch.save(PixelProjector().state_dict(), out / "pixel-projector" / "PixelProjector_best.bin")
