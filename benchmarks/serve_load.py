"""Serving overhead: ``serve`` (Triton via PyTriton, dynamic batching) vs the runtime in process, vs concurrency.

    python benchmarks/serve_load.py [--work DIR] [--image-size 512] [--requests 48] [--smoke]

On the tiny set's fp32 bundle (full-size encoder and prior, tiny UNet/VAE), 1 SDXL-Turbo step, 50 prior
steps. For each concurrency C in 1, 2, 4, 8, in one run on one machine:

- ``serve``: C client threads (``eeg2img-deploy client``'s code, one HTTP connection each) send
  ``--requests`` single-trial requests to a server started for the run (``--max-batch 8``, 2 ms queue
  delay), after a warm-up; latency per request, throughput, and the batch sizes Triton formed;
- in process: the same :class:`Pipeline` settings called on batches of C trials back to back, the best an
  application can do without a server (what dynamic batching would form with no serving cost).

Served and in-process blocks alternate over ``--rounds`` (a shared machine's load drifts; both sides see it).

The ratio in-process / served throughput is the serving overhead. Every served image is checked against
the in-process image of the same (trial, seed). Writes ``serve_load.json`` and its README section under
``--out``; ``--smoke`` is a seconds-long run at 64x64 with 2 prior steps that writes to ``--out`` only.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NAME = "serve_load"
SUBJECT = 1


def prepare_bundle(work: Path, image_size: int) -> Path:
    from eeg2img_deploy.export.bundle import ExportSettings, export_bundle
    from eeg2img_deploy.manifest import Precision
    from eeg2img_deploy.tiny import init_tiny
    from eeg2img_deploy.weights import resolve_weights

    weights = work / "tiny"
    if not (weights / "eeg").is_dir():
        init_tiny(weights, seed=0)
    bundle = work / f"bundle-{image_size}"
    settings = ExportSettings(image_size=image_size, precisions=(Precision.FP32,), steps=(1,), max_batch=8)
    export_bundle(resolve_weights(weights), bundle, settings, progress=False)
    return bundle


def in_process_block(pipe, eeg: np.ndarray, concurrency: int, calls: int, prior_steps: int) -> tuple[list[float], float]:
    """``calls`` pipeline calls on batches of ``concurrency`` trials: per-call latencies (ms) and wall seconds."""
    batch = np.stack([eeg[i % len(eeg)] for i in range(concurrency)])
    lat = []
    t0 = time.perf_counter()
    for _ in range(calls):
        t = time.perf_counter()
        pipe(batch, SUBJECT, 0, prior_steps=prior_steps)
        lat.append((time.perf_counter() - t) * 1e3)
    return lat, time.perf_counter() - t0


def measure(url: str, pipe, eeg: np.ndarray, concurrency: int, requests: int, rounds: int, prior_steps: int,
            expected: np.ndarray) -> dict:
    """Served and in-process blocks alternating over ``rounds`` (the machine's load drifts; both see it)."""
    from eeg2img_deploy.bench import latency_stats
    from eeg2img_deploy.core.options import RunOptions
    from eeg2img_deploy.serve.client import Client, LoadReport, run_trials

    client = Client(url, timeout_s=300)
    opts = RunOptions(seed=0, prior_steps=prior_steps)
    run_trials(client, eeg, SUBJECT, opts, concurrency=concurrency, requests=concurrency)  # warm-up, connections
    in_process_block(pipe, eeg, concurrency, 1, prior_steps)
    per_round = max(concurrency, requests // rounds)
    calls = max(1, per_round // concurrency)
    total = LoadReport(0, concurrency, 0.0, [], [])
    wrong: set[int] = set()
    ip_lat: list[float] = []
    ip_wall = 0.0
    for _ in range(rounds):
        answers, part = run_trials(client, eeg, SUBJECT, opts, concurrency=concurrency, requests=per_round)
        total.requests += part.requests
        total.wall_s += part.wall_s
        total.latencies_ms += part.latencies_ms
        total.batch_sizes += part.batch_sizes
        total.errors += part.errors
        total.mismatches += part.mismatches
        wrong |= {a.trial for a in answers if not np.array_equal(a.image, expected[a.trial])}
        lat, wall = in_process_block(pipe, eeg, concurrency, calls, prior_steps)
        ip_lat += lat
        ip_wall += wall
    served = total.summary()
    served["images_differing_from_in_process"] = sorted(wrong)
    in_process = {"calls": len(ip_lat), "batch": concurrency, "latency_ms": latency_stats(ip_lat),
                  "throughput_images_per_s": len(ip_lat) * concurrency / ip_wall}
    ratio = in_process["throughput_images_per_s"] / served["throughput_rps"] if served["throughput_rps"] else float("inf")
    return {"concurrency": concurrency, "served": served, "in_process": in_process, "overhead_ratio": ratio}


def section(report: dict) -> str:
    from eeg2img_deploy.bench import setup_line

    m, s = report["machine"], report["settings"]
    rows = ["| concurrency | served req/s | in-process images/s | overhead (in-process / served) | served p50 ms | "
            "served p99 ms | in-process p50 ms (batch C) | Triton batch sizes |", "|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        sv, ip = r["served"], r["in_process"]
        rows.append(f"| {r['concurrency']} | {sv['throughput_rps']:.2f} | {ip['throughput_images_per_s']:.2f} | "
                    f"{r['overhead_ratio']:.2f}x | {sv['latency_ms']['p50']:.0f} | {sv['latency_ms']['p99']:.0f} | "
                    f"{ip['latency_ms']['p50']:.0f} | {sv['server_batch_sizes']} |")
    return "\n".join([
        "## Serving overhead: `serve` (Triton via PyTriton) vs in process, CPU (`serve_load.py`)",
        "",
        setup_line(report["command"], m, report["versions"], load_at_start=report["load_average_1m_at_start"]),
        "",
        (f"Tiny set (full-size encoder and prior, tiny UNet/VAE), fp32, {s['image_size']}x{s['image_size']}, 1 UNet "
         f"step, {s['prior_steps']} prior steps; {s['requests']} single-trial requests per concurrency after a warm-up, in "
         f"{s['rounds']} blocks alternating with in-process blocks of the same work; "
         f"server `--max-batch 8 --queue-delay-us {s['queue_delay_us']}`, one instance; client and server on the same "
         "machine. In process: the pipeline on batches of C trials back to back."),
        "",
        *rows,
        "",
        f"- Every served image equal to the in-process one for its trial and seed: {report['all_images_equal']}.",
        f"- Raw numbers in [{NAME}.json]({NAME}.json).",
    ])


def public_command(argv: list[str]) -> str:
    """The command as run, with folders shown as placeholders (results name no machine paths)."""
    shown, hide = [], {"--work": "<work>", "--bundle": "<bundle>", "--out": "<out>"}
    for i, arg in enumerate(argv):
        shown.append(hide[argv[i - 1]] if i and argv[i - 1] in hide else arg)
    return shlex.join(["python", "benchmarks/serve_load.py", *shown])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, help="folder for the tiny weights and bundle (default: a temporary folder)")
    ap.add_argument("--bundle", type=Path, help="an existing bundle to serve instead (--image-size is then its own)")
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--requests", type=int, default=48, help="requests per concurrency level")
    ap.add_argument("--rounds", type=int, default=3, help="served and in-process blocks alternate this many times")
    ap.add_argument("--prior-steps", type=int, default=50)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--queue-delay-us", type=int, default=2000)
    ap.add_argument("--smoke", action="store_true", help="64x64, 2 prior steps, 4 requests, concurrency 1 and 2")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    if args.smoke:
        args.image_size, args.prior_steps, args.requests, args.rounds, args.concurrency = 64, 2, 4, 2, [1, 2]
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    from eeg2img_deploy.bench import machine_info, synthetic_eeg, update_results_readme
    from eeg2img_deploy.manifest import library_versions
    from eeg2img_deploy.runtime.pipeline import Pipeline
    from eeg2img_deploy.serve.process import ServerProcess

    command = public_command(sys.argv[1:] if argv is None else argv)
    load_at_start = machine_info().get("load_average_1m")
    results = []
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        work = args.work or Path(tmp)
        bundle = args.bundle or prepare_bundle(work, args.image_size)
        pipe = Pipeline.from_bundle(bundle)
        args.image_size = pipe.image_size
        eeg, _ = synthetic_eeg(8, pipe.eeg_spec, pipe.num_subjects)
        expected = pipe(eeg, SUBJECT, 0, prior_steps=args.prior_steps).images
        with ServerProcess(bundle, "--max-batch", "8", "--queue-delay-us", str(args.queue_delay_us),
                           log_path=work / "serve.log") as server:
            for c in args.concurrency:
                r = measure(server.url, pipe, eeg, c, args.requests, args.rounds, args.prior_steps, expected)
                results.append(r)
                sv, ip, ratio = r["served"], r["in_process"], r["overhead_ratio"]
                print(f"C={c}: served {sv['throughput_rps']:.2f} req/s (p50 {sv['latency_ms']['p50']:.0f} ms, "
                      f"p99 {sv['latency_ms']['p99']:.0f} ms, batches {sv['server_batch_sizes']}), in process "
                      f"{ip['throughput_images_per_s']:.2f} images/s: overhead {ratio:.2f}x")
        pipe.close()
    report = {
        "name": NAME, "command": command, "machine": machine_info(), "load_average_1m_at_start": load_at_start,
        "versions": library_versions(("numpy", "onnxruntime", "nvidia-pytriton", "tritonclient")),
        "settings": {"image_size": args.image_size, "prior_steps": args.prior_steps, "requests": args.requests,
                     "rounds": args.rounds,
                     "queue_delay_us": args.queue_delay_us, "concurrency": args.concurrency},
        "results": results,
        "all_images_equal": all(not r["served"]["images_differing_from_in_process"] and r["served"]["errors"] == 0
                                for r in results),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{NAME}.json").write_text(json.dumps(report, indent=2) + "\n")
    update_results_readme(args.out / "README.md", NAME, section(report))
    print(f"wrote {args.out / NAME}.json and its README.md section")
    if not report["all_images_equal"]:
        sys.exit("some served images differ from the in-process ones, or requests failed: see the JSON")


if __name__ == "__main__":
    main()
