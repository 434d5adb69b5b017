"""GPU check for a user's CUDA machine: TensorRT vs onnxruntime parity and per-stage timings.

    python benchmarks/gpu_check.py [--skip-sdxl] [--out benchmarks/results]

With TensorRT installed: builds the tiny bundle's engines (``init_tiny`` -> ``export_bundle`` ->
``build_engines``) and a full-size SDXL-Turbo UNet with random weights (diffusers' SDXL config, fp16
ONNX), checks each TensorRT engine against onnxruntime on the same inputs, and times each stage.
With only PyTorch CUDA: times the reference SDXL UNet + VAE decoder in fp16, eager and CUDA graphs,
as the baseline. Results: ``gpu-check-<gpu>-<date>.json`` and ``.md`` under ``--out``.
Not run in CI (no GPU there); kept small and shares the library's code paths.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("gpu_check")
SDXL_UNET_CONFIG = dict(  # stabilityai/sdxl-turbo unet/config.json, the parts that set the shapes
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)  # fmt: skip


def time_ms(fn: Callable[[], Any], sync: Callable[[], None], warmup: int = 3, iters: int = 20) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": float(np.median(samples)), "p90_ms": float(np.percentile(samples, 90))}


def has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


# ---- TensorRT vs onnxruntime ------------------------------------------------------------------------------
def parity_and_timing(bundle_dir: Path, engine_dir: Path) -> list[dict[str, Any]]:
    import onnxruntime as ort

    from eeg2img_deploy.manifest import read_manifest
    from eeg2img_deploy.runtime.backend import axis_sizes, resolve_shape
    from eeg2img_deploy.runtime.trt_backend import open_tensorrt_stage

    bundle, engines = read_manifest(bundle_dir), read_manifest(engine_dir)
    sizes = axis_sizes(engines.bundle.axes, "opt")
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    rows = []
    rng = np.random.default_rng(0)
    for a in engines.artifacts:
        feeds = {}
        for t in a.inputs:
            shape = resolve_shape(t, sizes)
            feeds[t.name] = (
                rng.integers(0, 1000, shape).astype(t.dtype) if "int" in t.dtype else rng.standard_normal(shape).astype(t.dtype)
            )
        sess = ort.InferenceSession(str(bundle_dir / bundle.artifact(a.stage, a.precision).file), providers=providers)
        want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        with open_tensorrt_stage(engine_dir, a) as stage:
            got = stage.run(feeds)
            err = max(float(np.max(np.abs(got[k].astype(np.float32) - want[k].astype(np.float32)))) for k in want)
            trt_t = time_ms(lambda: stage.run(feeds), lambda: None)
        ort_t = time_ms(lambda: sess.run(None, feeds), lambda: None)
        rows.append({"stage": a.stage, "precision": a.precision.value, "max_abs_diff": err,
                     "tensorrt": trt_t, "onnxruntime": {**ort_t, "provider": providers[0]}})  # fmt: skip
        log.info("%s %s: max |trt - ort| = %.3g, trt %.2f ms, ort %.2f ms", a.stage, a.precision.value, err,
                 trt_t["median_ms"], ort_t["median_ms"])  # fmt: skip
    return rows


def tiny_check(work: Path) -> list[dict[str, Any]]:
    from eeg2img_deploy.engines.build import build_engines
    from eeg2img_deploy.export import (
        export_bundle,  # written alongside; imported lazily
    )
    from eeg2img_deploy.tiny import init_tiny

    init_tiny(work / "tiny-weights")
    for precision in ("fp32", "fp16"):
        export_bundle(work / "tiny-weights", work / "tiny-bundle", precision=precision)
    build_engines(work / "tiny-bundle", work / "tiny-engines", backend="tensorrt", progress=False)
    return parity_and_timing(work / "tiny-bundle", work / "tiny-engines")


def sdxl_unet_onnx(folder: Path) -> Path:
    """A random-weight SDXL UNet exported to fp16 ONNX (external data: it is 5 GB)."""
    import torch
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**SDXL_UNET_CONFIG).to("cuda", torch.float16).eval()

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unet = unet

        def forward(self, latents, t, text, text_embeds, time_ids):  # type: ignore[no-untyped-def]
            cond = {"text_embeds": text_embeds, "time_ids": time_ids}
            return self.unet(latents, t, text, added_cond_kwargs=cond, return_dict=False)[0]

    args = (
        torch.randn(1, 4, 64, 64, device="cuda", dtype=torch.float16),
        torch.tensor([999], device="cuda", dtype=torch.int64),
        torch.randn(1, 77, 2048, device="cuda", dtype=torch.float16),
        torch.randn(1, 1280, device="cuda", dtype=torch.float16),
        torch.randn(1, 6, device="cuda", dtype=torch.float16),
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "unet.fp16.onnx"
    with torch.no_grad():
        torch.onnx.export(Wrapped(), args, str(path), opset_version=17, dynamo=False,
                          input_names=["latents", "timestep", "text", "text_embeds", "time_ids"],
                          output_names=["noise_pred"])  # fmt: skip
    import onnx

    model = onnx.load(str(path))
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="unet.fp16.onnx.data")
    return path


def sdxl_trt_check(work: Path) -> dict[str, Any]:
    from eeg2img_deploy.engines.tensorrt_builder import (
        BuildOptions,
        build_engine,
        shape_profile,
    )
    from eeg2img_deploy.manifest import TensorSpec

    onnx_path = sdxl_unet_onnx(work / "sdxl")
    specs = (TensorSpec("latents", "float16", (1, 4, 64, 64)), TensorSpec("timestep", "int64", (1,)),
             TensorSpec("text", "float16", (1, 77, 2048)), TensorSpec("text_embeds", "float16", (1, 1280)),
             TensorSpec("time_ids", "float16", (1, 6)))  # fmt: skip
    seconds = build_engine(onnx_path, work / "sdxl" / "unet.plan", stage="unet", profile=shape_profile(specs, {}),
                           options=BuildOptions(progress=True))  # fmt: skip
    return {"unet_build_seconds": seconds, "plan_bytes": (work / "sdxl" / "unet.plan").stat().st_size}


# ---- PyTorch baseline -----------------------------------------------------------------------------------
def torch_baseline() -> list[dict[str, Any]]:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    sync = torch.cuda.synchronize
    unet = UNet2DConditionModel(**SDXL_UNET_CONFIG).to("cuda", torch.float16).eval()
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=2, sample_size=1024).to("cuda", torch.float16).eval()  # fmt: skip
    lat = torch.randn(1, 4, 64, 64, device="cuda", dtype=torch.float16)
    text = torch.randn(1, 77, 2048, device="cuda", dtype=torch.float16)
    cond = {"text_embeds": torch.randn(1, 1280, device="cuda", dtype=torch.float16),
            "time_ids": torch.randn(1, 6, device="cuda", dtype=torch.float16)}  # fmt: skip
    t = torch.tensor([999], device="cuda")
    calls = {
        "unet": lambda: unet(lat, t, text, added_cond_kwargs=cond, return_dict=False),
        "vae_decoder": lambda: vae.decode(lat, return_dict=False),
    }
    rows = []
    with torch.no_grad():
        for name, fn in calls.items():
            eager = time_ms(fn, sync)
            graph = torch.cuda.CUDAGraph()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                fn()  # warm-up on the capture stream
            torch.cuda.current_stream().wait_stream(stream)
            with torch.cuda.graph(graph):
                fn()
            graphed = time_ms(graph.replay, sync)
            rows.append({"stage": name, "precision": "fp16", "torch_eager": eager, "torch_cuda_graph": graphed})
            log.info("%s: eager %.2f ms, CUDA graph %.2f ms", name, eager["median_ms"], graphed["median_ms"])
    return rows


# ---- report ---------------------------------------------------------------------------------------------
def write_results(out: Path, result: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    gpu = re.sub(r"[^a-z0-9]+", "-", result["gpu"].lower()).strip("-")
    stem = out / f"gpu-check-{gpu}-{dt.date.today().isoformat()}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# GPU check: {result['gpu']}", "", f"TensorRT: {result.get('tensorrt')}", ""]
    lines += ["| stage | precision | what | median ms | p90 ms | max abs diff |", "|---|---|---|---|---|---|"]
    for row in result["stages"]:
        for what in ("tensorrt", "onnxruntime", "torch_eager", "torch_cuda_graph"):
            if what in row:
                r = row[what]
                lines.append(f"| {row['stage']} | {row['precision']} | {what} | {r['median_ms']:.2f} | "
                             f"{r['p90_ms']:.2f} | {row.get('max_abs_diff', '')} |")  # fmt: skip
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return stem.with_suffix(".md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--skip-sdxl", action="store_true", help="skip the full-size SDXL UNet (5 GB, minutes)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA GPU (torch.cuda.is_available() is False)")
    result: dict[str, Any] = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "stages": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if has_tensorrt():
            import tensorrt

            result["tensorrt"] = tensorrt.__version__
            result["stages"] += tiny_check(work)
            if not args.skip_sdxl:
                result["sdxl_unet"] = sdxl_trt_check(work)
        result["stages"] += torch_baseline()
    log.info("wrote %s", write_results(args.out, result))


if __name__ == "__main__":
    main()
