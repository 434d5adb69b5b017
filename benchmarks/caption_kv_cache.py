"""GIT captioning with a KV cache vs recomputing the whole sequence each step, onnxruntime on the CPU.

    python benchmarks/caption_kv_cache.py [--runs 5] [--threads N]
    python benchmarks/caption_kv_cache.py --smoke --out DIR     (the test suite's run: tiny config)

The decision behind ``caption_prefill`` / ``caption_decoder`` (``eeg2img_deploy/export/caption.py``).
Both variants are exported from the same randomly initialised GIT at git-large-coco's size (text
decoder: 6 layers, 768 wide, 12 heads, vocabulary 30522; 257 visual tokens of 1024; the ViT is left
out: it never runs), batch 1, fp32, and produce exactly 25 new tokens (greedy, no early EOS):

- **kv cache**: ``caption_prefill`` once (the 257 visual tokens' keys/values in every layer), then
  ``caption_decoder`` 25 times on one token each;
- **recompute**: one graph over [visual tokens; all text so far] with GIT's mask (visual tokens see
  each other, text sees every visual token and the earlier text), run 25 times on a growing sequence.

Random weights decide nothing about speed; the logits of both variants are checked equal first.
Writes ``caption_kv_cache.json`` under ``--out`` and its section of ``README.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NAME = "caption_kv_cache"
NEW_TOKENS = 25
FULL = {"hidden_size": 768, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 3072,
        "vocab_size": 30522, "max_position_embeddings": 1024}
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37,
        "vocab_size": 120, "max_position_embeddings": 64}


def make_git(size: dict):
    import torch
    from transformers import GitConfig, GitForCausalLM

    torch.manual_seed(0)
    vision = {"hidden_size": 1024, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
              "image_size": 224, "patch_size": 14}
    config = GitConfig(vision_config=vision, bos_token_id=101, eos_token_id=102, pad_token_id=0, **size)
    return GitForCausalLM(config).eval()


def recompute_module(git_model):
    """The whole sequence each call: [visual tokens; text ids] -> the last position's logits."""
    import torch

    from eeg2img_deploy.export.caption import git_parts

    parts = git_parts(git_model)

    class Recompute(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.parts = parts

        def forward(self, visual_tokens, input_ids):
            n, t = visual_tokens.shape[1], input_ids.shape[1]
            emb = self.parts.git.embeddings
            pos = torch.arange(t, device=input_ids.device)[None]
            text = emb.LayerNorm(emb.word_embeddings(input_ids) + emb.position_embeddings(pos))
            x = torch.cat([self.parts.git.visual_projection(visual_tokens), text], dim=1)
            rows = torch.arange(n + t)[:, None]
            cols = torch.arange(n + t)[None, :]
            allowed = (cols < n) & (rows >= 0) | (cols >= n) & (rows >= cols)  # visual rows never see text
            mask = torch.where(allowed, 0.0, float("-inf"))
            for layer in self.parts.git.encoder.layer:
                x, _, _ = self.parts.layer(layer, x, mask=mask)
            return self.parts.lm_head(x[:, -1])

    return Recompute().eval()


def export(module, args, names_in, names_out, axes, path: Path) -> None:
    import torch

    from eeg2img_deploy.quiet import ONNX_EXPORT, quiet

    with torch.no_grad(), quiet(*ONNX_EXPORT):  # the TorchScript exporter's notes, as export's own calls
        torch.onnx.export(module, args, str(path), input_names=names_in, output_names=names_out, dynamic_axes=axes,
                          opset_version=18, dynamo=False)


def build(work: Path, size: dict) -> dict[str, Path]:
    import torch

    from eeg2img_deploy.export.caption import _decoder_module, _prefill_module

    git = make_git(size)
    heads, dim, layers = size["num_attention_heads"], size["hidden_size"] // size["num_attention_heads"], size["num_hidden_layers"]
    vis = torch.randn(1, 257, 1024)
    paths = {k: work / f"{k}.onnx" for k in ("prefill", "decoder", "recompute")}
    export(_prefill_module(git), (vis,), ["visual_tokens"], ["visual_kv"], {"visual_tokens": {0: "b"}}, paths["prefill"])
    past = torch.randn(2 * layers, 1, heads, 260, dim)
    export(_decoder_module(git), (torch.tensor([[101]]), torch.tensor([[3]]), past), ["input_ids", "position_ids", "past_kv"],
           ["logits", "present_kv"], {"past_kv": {1: "b", 3: "p"}}, paths["decoder"])
    export(recompute_module(git), (vis, torch.tensor([[101, 5, 7]])), ["visual_tokens", "input_ids"], ["logits"],
           {"visual_tokens": {0: "b"}, "input_ids": {0: "b", 1: "t"}}, paths["recompute"])
    return paths


def caption_kv(sessions, vis: np.ndarray, steps: int) -> tuple[list[int], list[np.ndarray]]:
    kv = sessions["prefill"].run(None, {"visual_tokens": vis})[0]
    ids, logits = [101], []
    for step in range(steps):
        lg, kv = sessions["decoder"].run(None, {"input_ids": np.array([[ids[-1]]]), "position_ids": np.array([[step]]),
                                                "past_kv": kv})
        logits.append(lg[0])
        ids.append(int(lg[0].argmax()))
    return ids, logits


def caption_recompute(sessions, vis: np.ndarray, steps: int) -> tuple[list[int], list[np.ndarray]]:
    ids, logits = [101], []
    for _ in range(steps):
        lg = sessions["recompute"].run(None, {"visual_tokens": vis, "input_ids": np.array([ids])})[0]
        logits.append(lg[0])
        ids.append(int(lg[0].argmax()))
    return ids, logits


def run(paths: dict[str, Path], runs: int, threads: int | None, steps: int) -> dict:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    sessions = {k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    vis = np.random.default_rng(0).standard_normal((1, 257, 1024), dtype=np.float32)
    ids_a, lg_a = caption_kv(sessions, vis, steps)
    ids_b, lg_b = caption_recompute(sessions, vis, steps)
    worst = max(float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(lg_a, lg_b))
    if ids_a != ids_b or worst > 1e-4:
        raise SystemExit(f"the two variants disagree (tokens equal: {ids_a == ids_b}, max rel logit diff {worst:.2e})")
    out = {"logits_max_rel_diff": worst, "tokens_equal": True}
    for name, fn in (("kv_cache", caption_kv), ("recompute", caption_recompute)):
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn(sessions, vis, steps)
            times.append((time.perf_counter() - t0) * 1e3)
        out[name] = {"median_ms": float(np.median(times)), "min_ms": float(np.min(times)), "runs_ms": times}
    t0 = time.perf_counter()
    sessions["prefill"].run(None, {"visual_tokens": vis})
    out["kv_cache"]["prefill_ms"] = (time.perf_counter() - t0) * 1e3
    out["speedup_recompute_over_kv"] = out["recompute"]["median_ms"] / out["kv_cache"]["median_ms"]
    return out


def section(result: dict, command: str) -> str:
    from eeg2img_deploy.bench import setup_line

    m, r = result["machine"], result["result"]
    return "\n".join([
        "## GIT captioning: KV cache vs recomputation, CPU (`caption_kv_cache.py`)",
        "",
        setup_line(command, m, result["versions"]),
        "",
        (f"{'git-large-coco' if result['size'] == FULL else 'A tiny (smoke)'} text decoder size (random weights), batch 1, "
         f"fp32, onnxruntime, {result['new_tokens']} new "
         f"tokens, median of {result['runs']} captions:"),
        "",
        "| variant | caption (ms) | min (ms) |",
        "|---|---|---|",
        f"| KV cache (prefill once + 1 token per step) | {r['kv_cache']['median_ms']:.0f} | {r['kv_cache']['min_ms']:.0f} |",
        f"| recompute (257 visual + all text tokens per step) | {r['recompute']['median_ms']:.0f} | {r['recompute']['min_ms']:.0f} |",
        "",
        (f"The KV cache is {r['speedup_recompute_over_kv']:.1f}x faster (prefill alone: {r['kv_cache']['prefill_ms']:.0f} ms); "
         f"both give the same tokens (logits max rel. diff {r['logits_max_rel_diff']:.1e}). Raw: [{NAME}.json]({NAME}.json)."),
    ])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads [default: all cores]")
    ap.add_argument("--smoke", action="store_true", help="tiny config, 1 run, 3 tokens: checks the script, measures nothing")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)

    from eeg2img_deploy.bench import library_versions, machine_info, update_results_readme

    runs, steps, size = (1, 3, TINY) if args.smoke else (args.runs, NEW_TOKENS, FULL)
    command = shlex.join(["python", "benchmarks/caption_kv_cache.py", *(sys.argv[1:] if argv is None else argv)])
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="caption-kv-") as tmp:
        paths = build(Path(tmp), size)
        res = run(paths, runs, args.threads, steps)
    result = {"command": command, "machine": machine, "versions": library_versions(), "runs": runs,
              "new_tokens": steps, "size": size, "result": res}
    print(json.dumps(res, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{NAME}.json").write_text(json.dumps(result, indent=2) + "\n")
    update_results_readme(args.out / "README.md", NAME, section(result, command))
    return result


if __name__ == "__main__":
    main()
