"""GPU check: the toolkit's GPU path on a real CUDA machine, every part that can run there, in under 7 minutes.

    python benchmarks/gpu_check.py [--out DIR] [--budget-s 420] [--skip-export] [--skip-tiny]
    python benchmarks/gpu_check.py --dry-run [--out DIR]   # the same run on CPU at tiny UNet sizes: the test suite's

The dry run is the GPU run with the full-size UNet replaced by the tiny one: same parts, same code, same
tiny bundle (made here from ``init_tiny``, never passed in), so a part that fails on a GPU fails in the
suite first. Parts, in order; each one that cannot run here says why in the report and the run goes on:

1. environment: Python, torch/CUDA, the GPU, onnxruntime and its providers, TensorRT, diffusers; then the
   toolkit's cuda-python layer without TensorRT (``cuda_path_check.py``: copies, graph capture and replay,
   a failed capture and its cleared error).
2. the full-size SDXL-Turbo UNet + IP-Adapter (the real config, random weights, the export wrapper with
   the IP scale as an input): PyTorch fp32 output as the reference, fp16 eager and CUDA-graph latency at
   batch 1, 512x512, and fp16 parity against fp32 (the export's metric and bound, 5e-2). Needs diffusers.
3. that UNet exported to fp16 ONNX through the toolkit (``unet_stage`` + ``export_onnx`` + ``check_onnx``).
   Only where part 4 can use it: on a GPU run without onnxruntime's CUDA provider it is skipped up front
   (minutes of CPU work for a graph nothing here could run).
4. the exported graph in the runtime's onnxruntime backend (``OrtStage``) on the CUDA provider: latency
   and parity against PyTorch fp32 (needs onnxruntime-gpu; the CPU build runs it only at dry-run size).
5. the tiny bundle (``init_tiny`` + ``export_bundle`` at one image size) through the runtime ``Pipeline``
   (the CUDA provider where present, else the CPU one): the fused and the stepwise prior timed against
   each other, and TensorRT engines where TensorRT is installed.

The report, ``gpu_check-<gpu>[-dry-run]-<date>.json`` and ``.md`` under ``--out`` (default
``benchmarks/results``), is written again after every part, so a run killed at its time limit keeps the
parts it finished. ``--budget-s`` (default 420 s, a 15-minute device lease less the machine's start and
the transfers) skips a part, saying so, when less time is left than the part needs.

On the lent GPU machines (Python 3.12, torch cu130, cuda-bindings, CPU onnxruntime, no TensorRT, no
diffusers) only part 1 runs with nothing carried; parts 2-5 say "skipped: diffusers is not installed".
Carrying the diffusers wheel (pure Python, 6 MB; ``benchmarks/results/README.md`` has the commands)
adds parts 2 and 5 (part 5 on onnxruntime's CPU provider); parts 3-4 need onnxruntime-gpu as well.
Memory: about 11 GB of host RAM for the fp32 UNet (16 GB while exporting) and 15 GB on the GPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # the package from this checkout, and the sibling script

IMAGE_SIZE = {"full": 512, "dry": 64}  # the full-size UNet's images (parts 2-4)
# Part 5's tiny set, the same in the dry and the GPU run: init_tiny's low-level encoder and the bundle's
# export must agree on the image size, and only the fused prior graph that is timed is exported.
TINY_IMAGE_SIZE, TINY_PRIOR_STEPS = 128, 10
# seconds each part needs on an H200 host (16 cores), measured or estimated; a part is skipped when less is left
NEEDS_S = {"unet_torch": 120, "export": 200, "onnxruntime": 60, "tiny_pipeline": 120}
DEFAULT_BUDGET_S = 420.0  # a 15-minute device lease, less the machine's start, the transfers and a rerun's margin


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def run_part(report: dict, name: str, fn: Callable[[], dict], *, budget: Budget, needs_s: float, timed: bool,
             out: Path) -> dict:
    """Run one part; record its result, or 'skipped: why' / 'failed: error', write the report, and go on.

    ``timed``: skipped when the budget has less than ``needs_s`` left (the dry run times nothing).
    """
    if timed and budget.left() < needs_s:
        entry = {"status": "skipped", "reason": f"time budget: {budget.left():.0f} s left, the part needs ~{needs_s:.0f} s"}
    else:
        t0 = time.perf_counter()
        try:
            entry = {"status": "ok", **fn()}
        except Skip as e:
            entry = {"status": "skipped", "reason": str(e)}
        except Exception as e:  # noqa: BLE001 - a GPU check reports every failure and goes on
            entry = {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=6)}
        entry["seconds"] = round(time.perf_counter() - t0, 1)
    log(f"{name}: {entry['status']}" + (f" ({entry.get('reason') or entry.get('error')})" if entry["status"] != "ok" else ""))
    report["parts"][name] = entry
    write_results(report, out)  # after every part: a run killed at its time limit keeps what it finished
    return entry


def require_diffusers() -> None:
    """Skip the part, saying what to carry, where diffusers (the UNet's and the tiny set's classes) is absent."""
    try:
        import diffusers  # noqa: F401
    except ImportError as e:
        raise Skip(f"diffusers is not installed ({e}): carry its wheel (benchmarks/results/README.md, GPU check)") from None


class Skip(Exception):
    """A part that cannot run on this machine (the reason goes into the report)."""


def time_calls(fn: Callable[[], Any], sync: Callable[[], None], *, warmup: int, runs: int) -> dict[str, float]:
    from eeg2img_deploy.bench import latency_stats

    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - t0) * 1e3)
    return latency_stats(samples)


# ---- 1. environment ----------------------------------------------------------------------------------
def environment() -> dict:
    from eeg2img_deploy.bench import library_versions, machine_info

    env: dict[str, Any] = {"machine": machine_info(), "versions": library_versions()}
    try:
        import torch

        env["torch_cuda"] = torch.version.cuda
        env["cuda_available"] = torch.cuda.is_available()
        if env["cuda_available"]:
            p = torch.cuda.get_device_properties(0)
            env["gpu"] = {"name": p.name, "capability": f"sm_{p.major}{p.minor}", "memory_gb": round(p.total_memory / 2**30, 1)}
    except ImportError as e:
        env["torch"] = f"not importable: {e}"
    try:
        import onnxruntime as ort

        env["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError as e:
        env["onnxruntime_providers"] = f"not importable: {e}"
    for name in ("tensorrt", "diffusers", "cuda.bindings"):
        try:
            module = __import__(name, fromlist=["_"])
            env[name] = getattr(module, "__version__", "present")
        except ImportError as e:
            env[name] = f"absent ({e})"
    return env


def cuda_bindings_part() -> dict:
    from cuda_path_check import run

    from eeg2img_deploy.errors import BackendUnavailableError

    try:
        return run()
    except BackendUnavailableError as e:  # no cuda-python, no driver or no GPU
        raise Skip(str(e)) from None


# ---- 2-4. the full-size UNet + IP-Adapter ---------------------------------------------------------------
def unet_config(dry: bool) -> dict:
    from export_fullsize_unet import SDXL_TURBO_UNET_CONFIG

    if not dry:
        return dict(SDXL_TURBO_UNET_CONFIG)
    from eeg2img_deploy.tiny import tiny_unet

    return dict(tiny_unet().config)


class UNetCheck:
    """State shared by parts 2-4: the stage, its inputs, the fp32 reference output."""

    def __init__(self, dry: bool, device: str):
        self.dry, self.device = dry, device
        self.stage = self.feeds = self.ref = None
        self.onnx_path: Path | None = None

    def torch_part(self) -> dict:
        import torch

        from eeg2img_deploy.export.onnx_io import relative_error
        from eeg2img_deploy.export.unet import unet_stage
        from eeg2img_deploy.manifest import Precision
        from export_fullsize_unet import build_unet

        if not self.dry and self.device != "cuda":
            raise Skip("no CUDA GPU visible to torch: the full-size UNet is timed on the GPU only")
        require_diffusers()
        t0 = time.perf_counter()
        unet, n_params, n_ip = build_unet(0, 1.0, config=unet_config(self.dry))
        out: dict[str, Any] = {"parameters": n_params, "ip_adapter_parameters": n_ip,
                               "build_s": round(time.perf_counter() - t0, 1), "device": self.device}
        self.stage = unet_stage(unet, IMAGE_SIZE["dry" if self.dry else "full"])
        self.feeds = self.stage.make_inputs(1, np.random.default_rng(0))
        module = self.stage.module.to(self.device)
        cuda = self.device == "cuda"
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        runs, warmup = (2, 1) if self.dry else (20, 3)

        def args(precision):
            f = self.stage.module_feeds(self.feeds, precision)  # the halved module takes float16
            return [torch.from_numpy(f[t.name]).to(self.device) for t in self.stage.inputs]

        with torch.no_grad():
            a32 = args(Precision.FP32)
            self.ref = module(*a32).float().cpu().numpy().astype(np.float64)
            out["fp32_eager_ms"] = time_calls(lambda: module(*a32), sync, warmup=warmup, runs=runs)
            module.half()  # the fp16 graph is traced from the halved module too
            a16 = args(Precision.FP16)
            got = module(*a16).float().cpu().numpy()
            out["fp16_eager_ms"] = time_calls(lambda: module(*a16), sync, warmup=warmup, runs=runs)
            tol = self.stage.tolerance[Precision.FP16]
            err = relative_error(got, self.ref)
            out["fp16_vs_fp32"] = {"max_rel_error": err, "tolerance": tol, "ok": bool(err <= tol),
                                   "metric": "max|fp16 - fp32| / max|fp32|"}
            out["fp16_cuda_graph_ms"] = self._cuda_graph(module, a16, sync, warmup, runs) if cuda else (
                "skipped: no CUDA")
        self.stage.module = module.cpu()  # exported on the host, as `export` does
        if cuda:
            torch.cuda.empty_cache()
        return out

    @staticmethod
    def _cuda_graph(module, args, sync, warmup: int, runs: int):
        """Replay latency of one captured call, or why capture failed (the eager numbers stay in the report)."""
        import torch

        try:
            return UNetCheck._capture_and_time(module, args, sync, warmup, runs)
        except Exception as e:  # noqa: BLE001 - capture can fail on a sync or an allocation inside the call
            torch.cuda.synchronize()
            return f"failed: {type(e).__name__}: {e}"

    @staticmethod
    def _capture_and_time(module, args, sync, warmup: int, runs: int):
        import torch

        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                module(*args)  # warm-up on the capture stream (allocator, cuDNN/cuBLAS choices)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            module(*args)
        return time_calls(graph.replay, sync, warmup=warmup, runs=runs)

    def export_part(self, work: Path) -> dict:
        from eeg2img_deploy.export.onnx_io import check_onnx, export_onnx
        from eeg2img_deploy.manifest import Precision

        if self.stage is None:
            raise Skip("the UNet part did not run")
        if not self.dry and not cuda_provider():
            raise Skip("onnxruntime has no CUDA provider (the CPU build), so nothing here could run the exported "
                       "graph: carry onnxruntime-gpu to run parts 3-4")
        self.onnx_path = work / "unet.fp16.onnx"
        example = self.stage.make_inputs(2, np.random.default_rng(1))  # batch 2 keeps the batch axis dynamic
        seconds = export_onnx(self.stage, Precision.FP16, self.onnx_path, example)
        check_onnx(self.onnx_path, self.stage, Precision.FP16)
        size = sum(p.stat().st_size for p in work.glob("unet.fp16.onnx*"))
        return {"export_s": round(seconds, 1), "bytes": size}

    def onnxruntime_part(self) -> dict:
        from eeg2img_deploy.export.onnx_io import relative_error
        from eeg2img_deploy.manifest import Artifact, Precision
        from eeg2img_deploy.runtime.ort_backend import OrtStage

        if self.onnx_path is None:
            raise Skip("the export part did not run")
        provider = "cuda" if cuda_provider() else "cpu"
        if provider == "cpu" and not self.dry:
            raise Skip("onnxruntime has no CUDA provider (the CPU build): carry onnxruntime-gpu to run this part; "
                       "the fp16 full-size UNet on the CPU provider needs ~13 GB and minutes per call")
        artifact = Artifact(stage="unet", precision=Precision.FP16, file=self.onnx_path.name, sha256="",
                            size_bytes=0, inputs=self.stage.input_specs(Precision.FP16),
                            outputs=self.stage.output_specs(Precision.FP16))
        stage = OrtStage(self.onnx_path, artifact, provider=provider)
        try:
            feeds = self.stage.feeds_for(self.feeds, Precision.FP16)
            got = stage.run(feeds)["noise_pred"]
            runs, warmup = (2, 1) if self.dry else (20, 3)
            latency = time_calls(lambda: stage.run(feeds), lambda: None, warmup=warmup, runs=runs)
        finally:
            stage.close()
        err = relative_error(got.astype(np.float32), self.ref)
        tol = self.stage.tolerance[Precision.FP16]
        return {"provider": provider, "latency_ms": latency,
                "vs_torch_fp32": {"max_rel_error": err, "tolerance": tol, "ok": bool(err <= tol)}}


# ---- 5. the tiny bundle through the runtime ----------------------------------------------------------------
def cuda_provider() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def tiny_pipeline_part(work: Path, dry: bool) -> dict:
    from eeg2img_deploy.bench import run_bench

    require_diffusers()  # init_tiny's SDXL classes and the export
    from eeg2img_deploy.export.bundle import ExportSettings, export_bundle
    from eeg2img_deploy.tiny import init_tiny

    t0 = time.perf_counter()
    layout = init_tiny(work / "tiny-weights", image_size=TINY_IMAGE_SIZE)
    bundle = work / "tiny-bundle"
    export_bundle(layout, bundle, ExportSettings(image_size=TINY_IMAGE_SIZE, max_batch=4,
                                                 fused_prior_steps=(TINY_PRIOR_STEPS,)), progress=False)
    made_s = time.perf_counter() - t0
    provider = "cuda" if cuda_provider() else "cpu"
    runs = 2 if dry else 20
    report = run_bench(bundle, provider=provider, runs=runs, warmup=1, prior_steps=TINY_PRIOR_STEPS)
    out: dict[str, Any] = {
        "image_size": TINY_IMAGE_SIZE, "bundle_made_s": round(made_s, 1),
        "provider": provider,
        "latency_ms": {k: v["p50"] for k, v in report["runtime"]["latency_ms"].items()},
        "prior_graph": report["settings"]["prior_graph"],
        "prior_graphs": {k: v for k, v in (report["runtime"]["prior_graphs"] or {}).items() if k != "samples_ms"},
    }
    try:
        import tensorrt  # noqa: F401
    except ImportError as e:
        out["tensorrt"] = f"skipped: TensorRT is not installed ({e})"
        return out
    from eeg2img_deploy.engines.build import build_engines

    engines = build_engines(bundle, work / "tiny-engines", backend="tensorrt", progress=False)
    trt = run_bench(work / "tiny-engines", backend="tensorrt", runs=runs, warmup=1, prior_steps=TINY_PRIOR_STEPS)
    out["tensorrt"] = {"engines": [a.label() for a in engines.artifacts],
                       "latency_ms": {k: v["p50"] for k, v in trt["runtime"]["latency_ms"].items()}}
    return out


# ---- 6. results -------------------------------------------------------------------------------------------
def write_results(report: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    gpu = report["parts"].get("environment", {}).get("gpu", {}).get("name", "no-gpu")
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    stem = out / f"gpu_check-{slug}{'-dry-run' if report['dry_run'] else ''}-{dt.date.today().isoformat()}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    stem.with_suffix(".md").write_text(markdown(report) + "\n")
    return stem.with_suffix(".md")


def _ms(stats: Any) -> str:
    return f"{stats['p50']:.2f}" if isinstance(stats, dict) else str(stats)


def markdown(report: dict) -> str:
    parts = report["parts"]
    env = parts.get("environment", {})
    lines = [f"# GPU check{' (dry run: tiny sizes, CPU)' if report['dry_run'] else ''}", "",
             f"`{report['command']}`, {report['started']}; GPU: {env.get('gpu', 'none')}; "
             f"onnxruntime providers: {env.get('onnxruntime_providers')}; TensorRT: {env.get('tensorrt')}", "",
             "| part | status | seconds | notes |", "|---|---|---|---|"]
    for name, p in parts.items():
        note = p.get("reason") or p.get("error") or ""
        lines.append(f"| {name} | {p['status']} | {p.get('seconds', '')} | {note} |")
    cb = parts.get("cuda_bindings", {})
    if cb.get("status") == "ok":
        lines += ["", f"cuda-python layer: ok={cb['ok']} (round trip {cb['round_trip_equal']}, graph replay "
                      f"{cb['graph_replay_equal']}, failed capture {cb['failed_capture']})"]
    unet = parts.get("unet_torch", {})
    if unet.get("status") == "ok":
        par = unet["fp16_vs_fp32"]
        lines += ["", f"UNet + IP-Adapter ({unet['parameters'] / 1e9:.3f} B parameters), batch 1, {unet['device']}, p50 ms:", "",
                  "| fp32 eager | fp16 eager | fp16 CUDA graph | fp16 vs fp32 (max rel. error / bound) |", "|---|---|---|---|",
                  f"| {_ms(unet['fp32_eager_ms'])} | {_ms(unet['fp16_eager_ms'])} | {_ms(unet['fp16_cuda_graph_ms'])} | "
                  f"{par['max_rel_error']:.2e} / {par['tolerance']:g} |"]
    ort = parts.get("onnxruntime", {})
    if ort.get("status") == "ok":
        lines += ["", f"Exported fp16 UNet in onnxruntime ({ort['provider']}): p50 {_ms(ort['latency_ms'])} ms, "
                      f"max rel. error vs PyTorch fp32 {ort['vs_torch_fp32']['max_rel_error']:.2e}"]
    tiny = parts.get("tiny_pipeline", {})
    if tiny.get("status") == "ok":
        lines += ["", f"Tiny pipeline ({tiny['provider']}), p50 ms: " + ", ".join(f"{k} {v:.1f}" for k, v in tiny["latency_ms"].items())]
        pg = tiny.get("prior_graphs") or {}
        if pg:
            lat = pg["latency_ms"]
            lines.append(f"Prior, {pg['steps']} DDPM steps: fused {lat['fused']['p50']:.1f} ms, stepwise "
                         f"{lat['stepwise']['p50']:.1f} ms ({pg['stepwise_over_fused']:.2f}x)")
        lines.append(f"TensorRT: {tiny.get('tensorrt')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="where the report goes (only there)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny UNet, seconds: checks the script, measures nothing")
    ap.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="skip parts that would not finish within this")
    ap.add_argument("--skip-export", action="store_true", help="leave out parts 3-4 (the export takes minutes)")
    ap.add_argument("--skip-tiny", action="store_true", help="leave out part 5")
    ap.add_argument("--work", type=Path, default=None, help="folder for exported files [default: a temporary one]")
    args = ap.parse_args(argv)
    budget = Budget(args.budget_s)
    report: dict[str, Any] = {"command": " ".join(["python benchmarks/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
                              "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                              "dry_run": args.dry_run, "budget_s": args.budget_s, "parts": {}}
    timed = not args.dry_run

    def part(name: str, fn: Callable[[], dict], needs_s: float = 0.0) -> None:
        run_part(report, name, fn, budget=budget, needs_s=needs_s, timed=timed, out=args.out)

    part("environment", environment)
    part("cuda_bindings", cuda_bindings_part)
    device = "cuda" if report["parts"]["environment"].get("cuda_available") else "cpu"
    check = UNetCheck(args.dry_run, device)
    with tempfile.TemporaryDirectory(prefix="gpu-check-", dir=args.work) as tmp:
        work = Path(tmp)
        part("unet_torch", check.torch_part, NEEDS_S["unet_torch"])
        if not args.skip_export:
            part("export", lambda: check.export_part(work), NEEDS_S["export"])
            part("onnxruntime", check.onnxruntime_part, NEEDS_S["onnxruntime"])
        check.stage = None  # frees the UNet before the tiny pipeline
        if not args.skip_tiny:
            part("tiny_pipeline", lambda: tiny_pipeline_part(work, args.dry_run), NEEDS_S["tiny_pipeline"])
    log(f"wrote {write_results(report, args.out)}")
    return report


if __name__ == "__main__":
    main()
