"""The fused prior graph before and after folding the time terms: nodes, size, load and run time on the CPU.

    python benchmarks/prior_graph_fold.py [--weights DIR] [--steps 50] [--runs 60] [--out benchmarks/results]

Both graphs come from ``export/prior_sampler.py`` for the same prior (the tiny set's, full size: the real
architecture): folded (the default export: each step's time terms constants, only the denoiser per step)
and unfolded (``fold_time_terms=False``: the time MLPs in every step, as the graph was before). For each,
fp32: nodes, Gemms, file size (what the TensorRT parser and builder get), the onnxruntime session's
creation time and its run time at batch 1 (both graphs in blocks alternating over 5 rounds, one process),
and the largest difference from the stepwise numpy sampler on the same draws (both are expected to be 0).

Writes ``prior_graph_fold.json`` under ``--out`` and its own section of ``README.md``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NAME = "prior_graph_fold"
SEED = 4


def export(prior, alphas, steps: int, fold: bool, path: Path) -> dict:
    import onnx

    from eeg2img_deploy.export.onnx_io import export_onnx
    from eeg2img_deploy.export.prior_sampler import prior_sampler_stage
    from eeg2img_deploy.manifest import Precision

    t0 = time.perf_counter()
    stage = prior_sampler_stage(prior, alphas, steps, fold_time_terms=fold)
    export_onnx(stage, Precision.FP32, path, stage.make_inputs(2, np.random.default_rng(0)))
    model = onnx.load(str(path))
    ops = collections.Counter(n.op_type for n in model.graph.node)
    return {"nodes": len(model.graph.node), "ops": dict(ops.most_common()), "gemms": ops["Gemm"],
            "bytes": path.stat().st_size, "export_s": round(time.perf_counter() - t0, 1)}


def session(path: Path, threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the runtime's OrtStage
    t0 = time.perf_counter()
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return s, (time.perf_counter() - t0) * 1e3


def measure(weights: Path, steps: int, runs: int, threads: int | None, work: Path) -> dict:
    import onnxruntime as ort

    from eeg2img_deploy.bench import latency_stats
    from eeg2img_deploy.core.noise import NoiseSource
    from eeg2img_deploy.core.schedulers import ddpm_sample
    from eeg2img_deploy.export.onnx_io import export_onnx
    from eeg2img_deploy.export.prior import prior_stage
    from eeg2img_deploy.export.prior_sampler import ddpm_alphas_cumprod
    from eeg2img_deploy.manifest import Precision
    from eeg2img_deploy.models.checkpoints import load_prior
    from eeg2img_deploy.weights import resolve_weights

    prior, _ = load_prior(resolve_weights(weights).prior)
    alphas = ddpm_alphas_cumprod()
    graphs = {"folded": export(prior, alphas, steps, True, work / "folded.onnx"),
              "unfolded": export(prior, alphas, steps, False, work / "unfolded.onnx")}
    stepwise_stage = prior_stage(prior)
    export_onnx(stepwise_stage, Precision.FP32, work / "prior.onnx", stepwise_stage.make_inputs(2, np.random.default_rng(0)))
    stepwise, _ = session(work / "prior.onnx", threads)

    rng = np.random.default_rng(SEED)
    cond = rng.standard_normal((1, 1024)).astype(np.float32)
    noise = NoiseSource(SEED, 1, "prior")
    draws = np.stack([noise.normal((1024,)) for _ in range(steps)], axis=1)
    feeds = {"cond": cond, "noise": draws, "guidance": np.full(1, 5.0, np.float32)}
    want = ddpm_sample(lambda x, t, c, m: stepwise.run(None, {"x": x, "t": t, "cond": c, "cond_mask": m})[0], cond,
                       NoiseSource(SEED, 1, "prior"), alphas, steps=steps, guidance=5.0)
    sessions = {}
    for name, g in graphs.items():
        sessions[name], g["session_create_ms"] = session(work / f"{name}.onnx", threads)
        g["max_abs_diff_vs_stepwise"] = float(np.abs(sessions[name].run(None, feeds)[0] - want).max())
    samples: dict[str, list[float]] = {k: [] for k in sessions}
    per_block = -(-runs // 5)
    for _ in range(5):
        for name, s in sessions.items():
            s.run(None, feeds)
            for _ in range(per_block):
                t0 = time.perf_counter()
                s.run(None, feeds)
                samples[name].append((time.perf_counter() - t0) * 1e3)
    for name, g in graphs.items():
        g["run_ms"] = latency_stats(samples[name])
    f, u = graphs["folded"], graphs["unfolded"]
    return {"steps": steps, "graphs": graphs, "samples_ms": samples, "onnxruntime": ort.__version__,
            "ratios_unfolded_over_folded": {"nodes": u["nodes"] / f["nodes"], "gemms": u["gemms"] / f["gemms"],
                                            "bytes": u["bytes"] / f["bytes"],
                                            "session_create": u["session_create_ms"] / f["session_create_ms"],
                                            "run_p50": u["run_ms"]["p50"] / f["run_ms"]["p50"]}}


def section(result: dict) -> str:
    from eeg2img_deploy.bench import setup_line

    g, r = result["graphs"], result["ratios_unfolded_over_folded"]
    rows = ["| graph | nodes | Gemms | file MB | session created ms | run p50 ms | run p90 ms | max abs diff vs stepwise |",
            "|---|---|---|---|---|---|---|---|"]
    for name in ("unfolded", "folded"):
        x = g[name]
        rows.append(f"| {name} | {x['nodes']} | {x['gemms']} | {x['bytes'] / 1e6:.1f} | {x['session_create_ms']:.0f} | "
                    f"{x['run_ms']['p50']:.1f} | {x['run_ms']['p90']:.1f} | {x['max_abs_diff_vs_stepwise']:.1e} |")
    return "\n".join([
        f"## Fused prior graph, time terms folded vs computed per step, CPU (`{NAME}`)",
        "",
        setup_line(result["command"], result["machine"], result["versions"], load_at_start=result["load_average_1m_at_start"],
                   extra=f"; onnxruntime intra-op threads: {result['threads'] or 'default'}"),
        "",
        f"The full-size prior (9.7 M parameters), {result['steps']} DDPM steps with guidance 5 as one fp32 graph, batch 1; "
        "both graphs in blocks alternating over 5 rounds.",
        "",
        *rows,
        "",
        f"- Unfolded / folded: {r['nodes']:.2f}x the nodes, {r['gemms']:.2f}x the Gemms, {r['bytes']:.2f}x the bytes, "
        f"{r['session_create']:.2f}x the session creation, {r['run_p50']:.2f}x the run time.",
        "- Per step the folded graph runs the denoiser only (10 Gemms, 60 nodes with the sampler's arithmetic); the "
        "unfolded one also runs the 8 time MLPs (16 Gemms more, 3.2 M more weights read per step).",
        f"- Raw samples in [{NAME}.json]({NAME}.json).",
    ])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, help="weights folder (default: a tiny set written to a temporary folder)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--runs", type=int, default=60, help="timed runs of each graph")
    ap.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: onnxruntime's)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--smoke", action="store_true", help="3 steps, 2 runs: checks the script, measures nothing")
    args = ap.parse_args(argv)
    if args.smoke:
        args.steps, args.runs = 3, 2
    sys.path[:0] = [str(Path(__file__).resolve().parents[1])]  # the package from this checkout
    from eeg2img_deploy.bench import library_versions, machine_info, update_results_readme

    command = shlex.join(["python", "benchmarks/prior_graph_fold.py", *(sys.argv[1:] if argv is None else argv)])
    with tempfile.TemporaryDirectory(prefix="prior-fold-") as tmp:
        weights = args.weights
        if weights is None:
            from eeg2img_deploy.tiny import init_tiny

            weights = Path(tmp) / "tiny"
            init_tiny(weights, seed=0)
        load = round(os.getloadavg()[0], 2)
        raw = measure(weights, args.steps, args.runs, args.threads, Path(tmp))
    result = {"command": command, "threads": args.threads, "load_average_1m_at_start": load, **raw,
              "machine": machine_info(), "versions": library_versions()}
    for name, g in result["graphs"].items():
        print(f"{name:9s} nodes {g['nodes']:5d}  Gemms {g['gemms']:4d}  {g['bytes'] / 1e6:5.1f} MB  "
              f"session {g['session_create_ms']:6.0f} ms  run p50 {g['run_ms']['p50']:7.1f} ms  "
              f"vs stepwise {g['max_abs_diff_vs_stepwise']:.1e}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{NAME}.json").write_text(json.dumps(result, indent=2) + "\n")
    update_results_readme(args.out / "README.md", NAME, section(result))
    print(f"wrote {args.out / NAME}.json and its README.md section")
    return result


if __name__ == "__main__":
    main()
