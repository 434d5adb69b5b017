"""Export the full-size SDXL-Turbo UNet + IP-Adapter through the toolkit's own export path; time it, measure memory.

    python benchmarks/export_fullsize_unet.py [--precision fp32 fp16] [--out DIR]
                                              [--no-ort-check] [--keep]

The UNet is built from stabilityai/sdxl-turbo's unet/config.json (2.567 B parameters) with random
weights (meta-device construction, then one normal fill: no checkpoint is needed), a random
full-size h94 IP-Adapter (``tiny.ip_adapter_state_dict``) is loaded the way diffusers loads one, and
the stage is exported with ``export.unet.unet_stage`` + ``export.onnx_io.export_onnx`` at 512x512,
batch-2 example (dynamic batch axis), then checked with ``check_onnx``: the product's code path.

Each precision is exported in its own child process (``--child``); the parent samples the RSS of the
child and its descendants every 0.5 s, and the child reports its own ``ru_maxrss`` and the peak
during the export call alone. Then another fresh process loads the graph in onnxruntime (CPU) and runs
one batch-1 inference (``--ort-child``), unless memory is short. Writes
``benchmarks/results/export_fullsize_unet.json`` and a section of ``benchmarks/results/README.md``.
The exported files (GBs) go under ``--out`` (default in /tmp) and are deleted unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import tempfile
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GB = 1e9
IMAGE_SIZE = 512
EXPECTED_PARAMS = 2_567_463_684  # diffusers' UNet2DConditionModel with the config below

SDXL_TURBO_UNET_CONFIG = {  # stabilityai/sdxl-turbo unet/config.json
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2048,
    "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 64,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": None,
    "use_linear_projection": True,
}


NOTES = [
    (
        "The peak includes building the model: both runs build the UNet in fp32 (as the bundle exporter loads it) "
        "and the fp16 run halves it before export; the export call's own peak is the next column."
    ),
    (
        "External data: `program.save(path, external_data=True)` writes exactly one `<graph>.data` file beside the "
        "graph (every initializer's location), the name `export/bundle.py` expects."
    ),
    (
        "Before `export_onnx` left onnxscript's multi-output rewrite rule (SlicesSplit) out of the exporter's "
        "optimizer, the same run (same machine, similar shared load) took 614 s (fp32) and 770 s (fp16): that rule scans the whole graph for every node, "
        "about 10 CPU minutes on this 18k-node graph; the other rules take about 10 s."
    ),
    (
        "onnxruntime check: the fp32 session ran with MatMul prepacking off when RAM could not hold a second copy of "
        "the weights (`prepacking` in the JSON); it maps the external data lazily (RSS 1.5 GB after load, the peak "
        "during the first run). The fp16 graph loads slower and reaches 12.8 GB after load for 5.8 GB of weights, "
        "most likely fp32 copies behind the Casts the CPU provider inserts around fp16 ops it has no kernels for: "
        "fp16 graphs are for GPUs."
    ),
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class PeakSampler:
    """Peak RSS of a process and its descendants, sampled every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.5, cap: float | None = None):
        import psutil

        self.proc = psutil.Process(pid)
        self.interval = interval
        self.cap = cap  # bytes: kill the process (the one we started) above this, before the OOM killer picks
        self.killed = False
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        self.peak = max(self.peak, total)
        self.samples += 1
        if self.cap is not None and total > self.cap and not self.killed:
            self.killed = True
            try:
                self.proc.kill()
            except psutil.Error:
                pass

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


# ---------------------------------------------------------------------------------------------- child


def smoke_unet_config() -> dict:
    """The tiny set's UNet config: ``--smoke`` runs every step of the script on it in seconds."""
    from eeg2img_deploy.tiny import tiny_unet

    return dict(tiny_unet().config)


def build_unet(seed: int, ip_scale_weights: float, config: dict | None = None):
    """SDXL-Turbo's UNet (or ``config``) with random weights and a random IP-Adapter of its size loaded."""
    import torch
    from diffusers import UNet2DConditionModel

    from eeg2img_deploy.tiny import ip_adapter_state_dict

    with torch.device("meta"):  # no default init of 2.6 B parameters: one normal fill below instead
        unet = UNet2DConditionModel(**(config or SDXL_TURBO_UNET_CONFIG))
    n_params = sum(p.numel() for p in unet.parameters())
    unet = unet.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in unet.modules():
            for name, p in module.named_parameters(recurse=False):
                if isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                    p.fill_(1.0 if name == "weight" else 0.0)
                elif name == "weight" and p.dim() >= 2:  # fan-in scaled: activations stay O(1), fp16-safe
                    p.normal_(0.0, p[0].numel() ** -0.5, generator=gen)
                else:
                    p.normal_(0.0, 0.02, generator=gen)
        for name, b in unet.named_buffers():
            raise RuntimeError(f"unexpected buffer {name} left uninitialised by to_empty")
    unet.eval()
    flat = ip_adapter_state_dict(unet, gen, scale=ip_scale_weights)
    split = {"image_proj": {}, "ip_adapter": {}}
    for k, v in flat.items():
        group, rest = k.split(".", 1)
        split[group][rest] = v
    n_ip = sum(v.numel() for v in flat.values())
    del flat
    unet._load_ip_adapter_weights([split], low_cpu_mem_usage=False)
    del split
    return unet, n_params, n_ip


def run_child(args) -> None:
    import torch

    from eeg2img_deploy.export.onnx_io import check_onnx, export_onnx, model_bytes
    from eeg2img_deploy.export.unet import unet_stage
    from eeg2img_deploy.manifest import Precision

    torch.set_num_threads(os.cpu_count() or 1)
    precision = Precision(args.precision)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res: dict = {"precision": precision.value}
    t0 = time.perf_counter()
    unet, n_params, n_ip = build_unet(args.seed, args.ip_weight_scale, smoke_unet_config() if args.smoke else None)
    res["unet_params"] = n_params
    res["unet_params_match_sdxl"] = n_params == EXPECTED_PARAMS
    res["ip_adapter_params"] = n_ip
    res["build_seconds"] = round(time.perf_counter() - t0, 1)
    log(f"built UNet ({n_params / 1e9:.4f} B params) + IP-Adapter ({n_ip / 1e6:.1f} M) in {res['build_seconds']} s")

    stage = unet_stage(unet, args.image_size)
    if precision is Precision.FP16:
        stage.module.half()
    res["module_gb"] = round(model_bytes(stage.module) / GB, 3)
    example = stage.make_inputs(2, np.random.default_rng(0))  # batch >= 2: dynamic batch axis
    path = out / ("unet.onnx" if precision is Precision.FP32 else f"unet.{precision.value}.onnx")
    res["rss_before_export_gb"] = round(rss_bytes() / GB, 2)
    log(f"exporting {precision.value} to {path} (RSS {res['rss_before_export_gb']} GB)")
    with PeakSampler(os.getpid()) as peak:
        seconds = export_onnx(stage, precision, path, example)
    res["export_seconds"] = round(seconds, 1)
    res["export_call_peak_rss_gb"] = round(peak.peak / GB, 2)
    log(f"exported in {seconds:.1f} s, peak RSS in the call {peak.peak / GB:.2f} GB")

    files = sorted(p for p in out.iterdir() if p.name.startswith(path.name))
    res["files"] = {p.name: p.stat().st_size for p in files}
    res["graph_bytes"] = path.stat().st_size
    data = path.with_name(path.name + ".data")
    res["external_data_file"] = data.name if data.is_file() else None
    res["external_data_bytes"] = data.stat().st_size if data.is_file() else 0
    res["external_data_single_file"] = bool(data.is_file() and len(files) == 2)
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    locations = {
        e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"
    }
    res["external_data_locations"] = sorted(locations)
    res["n_nodes"] = len(model.graph.node)
    res["n_initializers"] = len(model.graph.initializer)
    del model

    t1 = time.perf_counter()
    try:
        check_onnx(path, stage, precision)
        res["checker_ok"] = True
    except Exception as e:  # noqa: BLE001 - reported, not raised
        res["checker_ok"] = False
        res["checker_error"] = f"{type(e).__name__}: {e}"[:2000]
    res["check_seconds"] = round(time.perf_counter() - t1, 1)
    res["ru_maxrss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB, 2)
    log(f"check_onnx ok={res['checker_ok']} in {res['check_seconds']} s; ru_maxrss {res['ru_maxrss_gb']} GB")
    Path(args.result).write_text(json.dumps(res, indent=2))


def feeds_for_session(sess) -> dict[str, np.ndarray]:
    """Batch-1 inputs from the graph's own I/O names and types (the export spec's make_inputs values)."""
    rng = np.random.default_rng(1)
    types = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}
    feeds = {}
    for i in sess.get_inputs():
        shape = [1 if not isinstance(d, int) else d for d in i.shape]
        dtype = types[i.type]
        if i.name == "timestep":
            x = np.full(shape, 999.0)
        elif i.name == "time_ids":
            x = np.tile(np.array([IMAGE_SIZE, IMAGE_SIZE, 0, 0, IMAGE_SIZE, IMAGE_SIZE], np.float64), (shape[0], 1))
        elif i.name == "ip_scale":
            x = np.ones(shape)
        elif i.name == "image_embeds":
            x = rng.uniform(-1, 1, size=shape)
        else:
            x = rng.standard_normal(shape)
        feeds[i.name] = x.astype(dtype)
    return feeds


def run_ort_child(args) -> None:
    import onnxruntime as ort

    res: dict = {"prepacking": not args.disable_prepacking}
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if args.disable_prepacking:
        opts.add_session_config_entry("session.disable_prepacking", "1")
    t0 = time.perf_counter()
    sess = ort.InferenceSession(args.onnx, opts, providers=["CPUExecutionProvider"])
    res["load_seconds"] = round(time.perf_counter() - t0, 1)
    res["rss_after_load_gb"] = round(rss_bytes() / GB, 2)
    feeds = feeds_for_session(sess)
    t1 = time.perf_counter()
    out = sess.run(None, feeds)[0]
    res["run_seconds"] = round(time.perf_counter() - t1, 1)
    res["output_shape"] = list(out.shape)
    res["output_dtype"] = str(out.dtype)
    res["output_finite"] = bool(np.isfinite(out).all())
    res["output_std"] = float(out.astype(np.float64).std())
    res["ru_maxrss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB, 2)
    Path(args.result).write_text(json.dumps(res, indent=2))


# --------------------------------------------------------------------------------------------- parent


def launch(cmd: list[str], log_path: Path, cap: float | None = None) -> tuple[int, float, float, bool]:
    """Run ``cmd`` with the tree's peak RSS sampled; returns (rc, seconds, peak bytes, killed over ``cap``)."""
    t0 = time.perf_counter()
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT)
        with PeakSampler(proc.pid, cap=cap) as peak:
            rc = proc.wait()
    return rc, time.perf_counter() - t0, peak.peak, peak.killed


def available_gb() -> float:
    import psutil

    return psutil.virtual_memory().available / GB


def machine() -> dict:
    """bench's machine record, with swap and the load average at start."""
    import psutil

    from eeg2img_deploy.bench import machine_info

    return {**machine_info(), "swap_gb": round(psutil.swap_memory().total / GB, 1),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "diffusers", "onnx", "onnxscript", "onnx-ir", "onnxruntime", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def run_parent(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "benchmark": "export_fullsize_unet",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(shlex.quote(a) for a in [sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "machine": machine(),
        "versions": versions(),
        "image_size": args.image_size,
        "example_batch": 2,
        "unet_config": "the tiny set's (--smoke)" if args.smoke else "stabilityai/sdxl-turbo unet/config.json (random weights)",
        "results": {},
    }
    status = 0
    for prec in args.precision:
        entry: dict = {}
        report["results"][prec] = entry
        log(f"--- {prec}: export child (available RAM {available_gb():.1f} GB)")
        result = out / f"child_{prec}.json"
        result.unlink(missing_ok=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--precision", prec, "--out", str(out),
               "--result", str(result), "--seed", str(args.seed), "--ip-weight-scale", str(args.ip_weight_scale),
               *(["--smoke"] if args.smoke else [])]
        rc, wall, peak, killed = launch(cmd, out / f"child_{prec}.log", cap=args.mem_cap_gb * GB)
        entry.update(child_rc=rc, child_wall_seconds=round(wall, 1), peak_rss_gb=round(peak / GB, 2))
        if killed:
            entry["killed"] = f"RSS above --mem-cap-gb {args.mem_cap_gb}"
        if rc != 0 or not result.is_file():
            entry["error"] = tail(out / f"child_{prec}.log")
            log(f"{prec}: export child failed (rc {rc}):\n{entry['error']}")
            status = 1
            continue
        entry.update(json.loads(result.read_text()))
        log(f"{prec}: export {entry['export_seconds']} s, peak RSS {entry['peak_rss_gb']} GB (tree, sampled), "
            f"ru_maxrss {entry['ru_maxrss_gb']} GB, graph {entry['graph_bytes'] / 1e6:.1f} MB + "
            f"data {entry['external_data_bytes'] / GB:.2f} GB, checker {entry['checker_ok']}")
        if not entry.get("checker_ok"):
            status = 1

        if not args.ort_check:
            entry["ort"] = {"skipped": "--no-ort-check"}
        else:
            onnx_path = out / next(n for n in entry["files"] if n.endswith(".onnx"))
            size_gb = (entry["graph_bytes"] + entry["external_data_bytes"]) / GB
            avail = available_gb()
            # prepacked MatMul weights are a second copy of most of the weights; without prepacking, one
            disable = None
            if avail > 2.0 * size_gb + 3.0:
                disable = False
            elif avail > 1.15 * size_gb + 3.0:
                disable = True
            if disable is None:
                entry["ort"] = {"skipped": f"needs about {1.15 * size_gb + 3:.1f} GB, {avail:.1f} GB available"}
                log(f"{prec}: onnxruntime check skipped: {entry['ort']['skipped']}")
            else:
                ort_result = out / f"ort_{prec}.json"
                ort_result.unlink(missing_ok=True)
                cmd = [sys.executable, str(Path(__file__).resolve()), "--ort-child", "--onnx", str(onnx_path),
                       "--result", str(ort_result)] + (["--disable-prepacking"] if disable else [])
                log(f"{prec}: onnxruntime load + batch-1 run in a fresh process (available RAM {avail:.1f} GB)")
                cap = min(args.mem_cap_gb, avail - 1.5) * GB
                rc, wall, peak, killed = launch(cmd, out / f"ort_{prec}.log", cap=cap)
                ort_entry = {"child_rc": rc, "wall_seconds": round(wall, 1), "peak_rss_gb": round(peak / GB, 2)}
                if killed:
                    ort_entry["killed"] = f"RSS above {cap / GB:.1f} GB (memory guard)"
                if rc == 0 and ort_result.is_file():
                    ort_entry.update(json.loads(ort_result.read_text()))
                    if not ort_entry["output_finite"]:
                        status = 1
                else:
                    ort_entry["error"] = tail(out / f"ort_{prec}.log")
                    status = 1
                entry["ort"] = ort_entry
                log(f"{prec}: onnxruntime {ort_entry}")
        if not args.keep:
            for name in entry.get("files", {}):
                (out / name).unlink(missing_ok=True)
    report["memory_needed_gb"] = max((e.get("peak_rss_gb", 0) for e in report["results"].values()), default=None)
    report["unet_params"] = next((e["unet_params"] for e in report["results"].values() if "unet_params" in e), 0)
    report["notes"] = NOTES
    report["status"] = "ok" if status == 0 else "failed"
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "export_fullsize_unet.json").write_text(json.dumps(report, indent=2) + "\n")
    write_readme(report, results)
    if not args.keep and args.out_is_default:
        shutil.rmtree(out, ignore_errors=True)
    log(f"wrote {results / 'export_fullsize_unet.json'}")
    return status


def rerender(path: Path = RESULTS / "export_fullsize_unet.json") -> None:
    """Rewrite the JSON's notes and the README section from a finished run (no export)."""
    report = json.loads(path.read_text())
    report["notes"] = NOTES
    path.write_text(json.dumps(report, indent=2) + "\n")
    write_readme(report)


def write_readme(report: dict, results: Path = RESULTS) -> None:
    m, v = report["machine"], report["versions"]
    lines = [
        "<!-- export_fullsize_unet -->",
        "## Full-size SDXL-Turbo UNet + IP-Adapter: ONNX export on CPU",
        "",
        (
            f"`benchmarks/export_fullsize_unet.py` ({report['date']}): the real sdxl-turbo UNet config "
            f"({report.get('unet_params', 0) / 1e9:.3f} B parameters, random weights) and a random full-size "
            "IP-Adapter, exported through `unet_stage` + `export_onnx` (torch.export-based exporter, opset 18, "
            f"external data) at {report['image_size']}x{report['image_size']}, batch-2 example (dynamic batch "
            "axis), each precision in its own process; then `check_onnx`, and one batch-1 onnxruntime (CPU) "
            "inference in a fresh process."
        ),
        (
            f"Machine: {m['cpu']}, {m['logical_cores']} cores, {m['ram_gb']} GB RAM (load average at start "
            f"{m['load_average_at_start']}: shared with other jobs). torch {v['torch']}, diffusers {v['diffusers']}, "
            f"onnx {v['onnx']}, onnxscript {v['onnxscript']}, onnx-ir {v['onnx-ir']}, onnxruntime {v['onnxruntime']}."
        ),
        f"Command: `{report['command']}`",
        "",
        (
            "| precision | export s | peak RSS GB (process tree) | peak in export call GB | graph MB | "
            "external data GB | checker | ORT load s | ORT batch-1 run s | ORT peak RSS GB | output finite |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for prec, e in report["results"].items():
        if "export_seconds" not in e:
            lines.append(f"| {prec} | failed (rc {e.get('child_rc')}) | {e.get('peak_rss_gb')} | | | | | | | | |")
            continue
        o = e.get("ort", {})
        if "load_seconds" in o:
            ort_cells = f"{o['load_seconds']} | {o['run_seconds']} | {o['peak_rss_gb']} | {o['output_finite']}"
        else:
            ort_cells = f"{o.get('skipped') or o.get('killed') or 'failed'} | | | "
        checker = "ok" if e["checker_ok"] else "FAILED"
        lines.append(
            f"| {prec} | {e['export_seconds']} | {e['peak_rss_gb']} | {e['export_call_peak_rss_gb']} | "
            f"{e['graph_bytes'] / 1e6:.1f} | {e['external_data_bytes'] / GB:.2f} | {checker} | {ort_cells} |"
        )
    need = report.get("memory_needed_gb")
    lines.append("")
    if need:
        lines.append(
            f"Exporting the full-size UNet needs about {need:.0f} GB of RAM (the largest sampled peak above, "
            "building the model included), plus headroom for the OS."
        )
    lines += [f"- {n}" for n in report.get("notes", [])]
    lines.append("<!-- /export_fullsize_unet -->")
    section = "\n".join(lines) + "\n"
    readme = results / "README.md"
    text = readme.read_text() if readme.is_file() else "# Benchmark results\n\n"
    pattern = re.compile(r"<!-- export_fullsize_unet -->.*?<!-- /export_fullsize_unet -->\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    readme.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--precision", nargs="+", default=["fp32", "fp16"], choices=["fp32", "fp16"])
    p.add_argument("--out", default=None, help="folder for the exported files (default: eeg2img-fullsize-unet in the system temp folder)")
    p.add_argument("--ort-check", dest="ort_check", action="store_true", default=True)
    p.add_argument("--no-ort-check", dest="ort_check", action="store_false")
    p.add_argument("--keep", action="store_true", help="keep the exported files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mem-cap-gb", type=float, default=21.0,
                   help="kill a child whose RSS passes this (before the kernel's OOM killer picks a neighbour)")
    p.add_argument("--ip-weight-scale", type=float, default=1.0,
                   help="IP-Adapter key/value weight gain (tiny.py's default 9 is for parity tests)")
    p.add_argument("--results", default=str(RESULTS), help="folder for the JSON and the README.md section")
    p.add_argument("--smoke", action="store_true",
                   help="the tiny set's UNet at 64x64: runs every step in seconds, measures nothing (the test suite's run)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ort-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--onnx", help=argparse.SUPPRESS)
    p.add_argument("--disable-prepacking", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.image_size = 64 if args.smoke else IMAGE_SIZE
    args.out_is_default = args.out is None
    args.out = args.out or os.path.join(tempfile.gettempdir(), "eeg2img-fullsize-unet")
    if args.child:
        args.precision = args.precision[0]
        run_child(args)
        return 0
    if args.ort_child:
        run_ort_child(args)
        return 0
    return run_parent(args)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
