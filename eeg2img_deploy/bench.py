"""``bench``: latency of the runtime per stage and end to end, optionally against the PyTorch reference.

The harness behind ``eeg2img-deploy bench`` and the scripts in ``benchmarks/``: it runs the same
:class:`~.runtime.pipeline.Pipeline` that ``infer`` runs, on a fixed synthetic EEG batch, and reports

- cold start: importing the backend, ``Pipeline.from_bundle``, and the first call;
- per stage (encoder, prior, unet, decoder) and end to end: p50/p90/p99, mean, min, max over ``runs``;
- throughput, and the runtime's own overhead: wall time minus the time spent inside backend calls;
- peak host RSS, and CUDA memory where it can be read;
- with ``baseline_weights``: the :class:`~.reference.pipeline.ReferencePipeline` on the same EEG,
  seed and settings in the same process, and the ratio baseline / runtime of each median.

The report is a plain JSON-able dict. Torch is imported only when the baseline is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .manifest import library_versions as manifest_library_versions

log = logging.getLogger(__name__)

STAGES = ("encoder", "prior", "unet", "decoder")
LOW_LEVEL_STAGES = ("encoder", "prior", "low_level", "unet", "decoder")  # with the low-level path's start latents
REFERENCE_STAGE = {"encoder": "encoder", "prior": "prior", "low_level": "low_level", "unet": "unet", "decoder": "vae"}


def report_stages(settings: dict[str, Any]) -> tuple[str, ...]:
    """The timed stages of a run: the low-level path adds one."""
    return LOW_LEVEL_STAGES if settings.get("low_level") else STAGES
LIBRARIES = ("numpy", "onnxruntime", "onnxruntime-gpu", "tensorrt", "torch", "diffusers", "transformers")
REPORT_VERSION = 1


# ---- statistics ----------------------------------------------------------------------------------
def latency_stats(samples_ms: list[float]) -> dict[str, float]:
    """p50/p90/p99 (linear interpolation, so p50 <= p90 <= p99 <= max), mean, min, max, n."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples: runs must be >= 1")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(a.mean()),
            "min": float(a.min()), "max": float(a.max()), "n": int(a.size)}


def _stats_table(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {k: latency_stats(v) for k, v in samples.items()}


# ---- machine, versions, memory ----------------------------------------------------------------------
def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _gpus() -> list[dict[str, Any]] | str:
    """GPUs through torch.cuda, only if torch is already imported (the baseline imports it), else nvidia-smi."""
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if not torch.cuda.is_available():
            return []
        return [{"name": torch.cuda.get_device_name(i), "capability": "sm_{}{}".format(*torch.cuda.get_device_capability(i)),
                 "memory_gb": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
                for i in range(torch.cuda.device_count())]
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"nvidia-smi failed: {e}"
    return [dict(zip(("name", "memory", "driver"), (s.strip() for s in line.split(",")))) for line in out.splitlines() if line]


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
    }
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["ram_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    with contextlib.suppress(AttributeError, OSError):
        info["usable_cores"] = len(os.sched_getaffinity(0))
        info["load_average_1m"] = round(os.getloadavg()[0], 2)  # other work on the machine disturbs timings
    info["gpus"] = _gpus()
    return info


def library_versions() -> dict[str, str]:
    return manifest_library_versions(LIBRARIES)


def _reset_peak_rss() -> bool:
    """Linux lets a process reset its own peak RSS (VmHWM), so each phase gets its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _rss_mb() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss / 2**20


@contextlib.contextmanager
def _memory_phase(out: dict[str, Any]):
    """Record RSS before, and the peak RSS during, a phase (the process's lifetime peak where it cannot be reset)."""
    out["peak_rss_scope"] = "phase" if _reset_peak_rss() else "process lifetime"
    out["rss_before_mb"] = _rss_mb()
    yield
    out["peak_rss_mb"] = _peak_rss_mb()
    out["rss_after_mb"] = _rss_mb()
    if out["rss_before_mb"] is not None:  # what the phase added: the process may hold other things already
        out["peak_rss_increase_mb"] = out["peak_rss_mb"] - out["rss_before_mb"]


def _nvml_used_mb() -> float | None:
    """Device memory in use (all processes) through NVML, if nvidia-ml-py is installed; None otherwise."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).used / 2**20
    except pynvml.NVMLError:  # no driver, no GPU: skip
        return None


# ---- inputs --------------------------------------------------------------------------------------
def synthetic_eeg(batch: int, spec, num_subjects: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed unit-variance EEG batch and subject ids cycling through the encoder's table."""
    rng = np.random.default_rng(seed)
    eeg = rng.standard_normal((batch, *spec.shape), dtype=np.float32)
    return eeg, (np.arange(batch) % num_subjects).astype(np.int64)


# ---- timing loops --------------------------------------------------------------------------------
def _progress(enabled: bool):
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import Progress

    return Progress(transient=True)


def _time_calls(call, runs: int, warmup: int, keys: tuple[str, ...], progress, label: str) -> dict[str, list[float]]:
    """``call()`` returns (timings_ms, extra) ; collects ``keys`` of timings_ms and every key of extra per run."""
    task = progress.add_task(label, total=warmup + runs) if progress else None
    samples: dict[str, list[float]] = {}
    for i in range(warmup + runs):
        timings, extra = call()
        if i >= warmup:
            for k, v in {**{k: timings[k] for k in keys}, **extra}.items():
                samples.setdefault(k, []).append(float(v))
        if progress:
            progress.advance(task)
    return samples


def _cuda_event_timer(ref):
    """On CUDA, stage times from CUDA events (device time, no host launch gaps hidden by the sync).

    Replaces the reference's ``_timed``, which already synchronizes around each stage; the events
    only make the number device-side. The end-to-end total stays host wall time.
    """
    import torch

    @contextlib.contextmanager
    def timed(timings: dict[str, float], stage: str):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        yield
        end.record()
        end.synchronize()
        timings[stage] = start.elapsed_time(end)

    return timed


def _load_reference(weights, manifest, *, device: str, precision: str):
    import torch

    from .models.atm_encoder import EncoderVariant
    from .reference.pipeline import ReferencePipeline
    from .weights import resolve_weights

    layout = resolve_weights(weights)
    cuda = device.startswith("cuda")
    dtype = torch.float16 if cuda and precision == "fp16" else torch.float32  # Stage II; the runtime's precision
    ref = ReferencePipeline.from_weights(
        layout, variant=EncoderVariant(**manifest.settings.get("encoder_variant", {})),
        ip_scale=float(manifest.settings.get("ip_scale", 1.0)), device=device if cuda else "cpu", dtype=dtype,
    )
    if cuda:
        ref._timed = _cuda_event_timer(ref)
    return ref, layout, str(dtype).removeprefix("torch.")


def _same_weights(manifest, layout) -> bool | None:
    """Whether the baseline's encoder and prior are the files the bundle was exported from."""
    from .fileio import sha256_file

    src = manifest.sources
    if not {"encoder", "prior"} <= set(src):
        return None
    return all(src[k].get("sha256") == sha256_file(getattr(layout, k)) for k in ("encoder", "prior"))


# ---- the benchmark -------------------------------------------------------------------------------
def run_bench(
    bundle: str | Path,
    *,
    backend: str = "onnxruntime",
    device: str = "cpu",
    precision: str | None = None,
    runs: int = 20,
    warmup: int = 3,
    batch: int = 1,
    steps: int = 1,
    prior_steps: int = 50,
    vae: str = "full",
    baseline_weights: str | Path | None = None,
    seed: int = 0,
    eeg: np.ndarray | None = None,
    progress: bool = False,
    threads: int | None = None,
    low_level=None,
) -> dict[str, Any]:
    """Time ``Pipeline.from_bundle(bundle, ...)`` and, with ``baseline_weights``, the torch reference.

    ``low_level``: a :class:`~.runtime.low_level.LowLevelOptions`, to time the low-level path.

    ``eeg`` (B, 63, 250) replaces the synthetic batch of ``batch`` trials; subject ids cycle 0, 1, ...
    Returns a JSON-able report (see the module docstring); :func:`print_report` and :func:`plot_report` show it.
    """
    if runs < 1 or warmup < 0 or batch < 1:
        raise ValueError(f"need runs >= 1, warmup >= 0, batch >= 1; got runs={runs}, warmup={warmup}, batch={batch}")
    settings = {"bundle": str(bundle), "backend": backend, "device": device, "precision": precision, "runs": runs,
                "warmup": warmup, "batch": batch, "steps": steps, "prior_steps": prior_steps, "vae": vae,
                "baseline_weights": None if baseline_weights is None else str(baseline_weights), "seed": seed,
                "threads": threads, "low_level": None if low_level is None else {"strength": low_level.strength,
                                                                                      "mode": low_level.mode}}
    report: dict[str, Any] = {"report_version": REPORT_VERSION, "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                              "settings": settings}

    load_before = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    call_kw = {"seed": seed, "steps": steps, "prior_steps": prior_steps, "low_level": low_level}
    rt, first, manifest, eeg, ids = _bench_runtime(bundle, backend=backend, device=device, precision=precision, vae=vae,
                                                   eeg=eeg, batch=batch, call_kw=call_kw, runs=runs, warmup=warmup,
                                                   progress=progress, threads=threads)
    settings.update(batch=len(eeg), image_size=int(manifest.settings["image_size"]))
    report.update(runtime=rt, baseline=None, ratios=None)
    if baseline_weights is not None:
        report["baseline"] = base = _bench_baseline(
            baseline_weights, manifest, eeg, ids, first, device="cuda" if backend == "tensorrt" else device,
            precision=rt["artifacts"]["unet"]["precision"], call_kw=call_kw, vae=vae,
            image_size=settings["image_size"], runs=runs, warmup=warmup, progress=progress, threads=threads,
        )
        report["ratios"] = {k: base["latency_ms"][k]["p50"] / rt["latency_ms"][k]["p50"]
                            for k in (*report_stages(settings), "total")}
    # Machine info last: torch.cuda (if the baseline imported torch) can then name the GPU.
    report["machine"] = machine_info()
    report["machine"]["load_average_1m_at_start"] = load_before
    report["versions"] = library_versions()
    return report


def _bench_runtime(bundle, *, backend, device, precision, vae, eeg, batch, call_kw, runs, warmup, progress, threads):
    """Cold start (backend import, load, first call), then the timed runs; the pipeline is closed after."""
    rt: dict[str, Any] = {"backend": backend, "device": device, "memory": {}}
    stages = report_stages(call_kw)
    with _memory_phase(rt["memory"]):
        module = "tensorrt" if backend == "tensorrt" else "onnxruntime"
        if module not in sys.modules:
            t0 = time.perf_counter()
            with contextlib.suppress(ImportError):  # from_bundle raises the helpful error
                __import__(module)
            rt["import_ms"] = (time.perf_counter() - t0) * 1e3
        from .runtime.pipeline import Pipeline

        used0 = _nvml_used_mb() if device != "cpu" or backend == "tensorrt" else None
        t0 = time.perf_counter()
        pipe = Pipeline.from_bundle(bundle, backend=backend, precision=precision, provider=device, vae=vae, threads=threads,
                                    low_level=call_kw["low_level"] is not None)
        rt["load_ms"] = (time.perf_counter() - t0) * 1e3
        rt["artifacts"] = {s: {"file": sess.artifact.file, "precision": sess.artifact.precision.value}
                           for s, sess in pipe.sessions.items()}
        if eeg is None:
            eeg, ids = synthetic_eeg(batch, pipe.eeg_spec, pipe.num_subjects, call_kw["seed"])
        else:
            eeg = np.asarray(eeg, np.float32)
            ids = (np.arange(len(eeg)) % pipe.num_subjects).astype(np.int64)
        first = pipe(eeg, ids, **call_kw)
        rt["first_call_ms"] = first.timings_ms["total"]
        rt["first_call_stages_ms"] = {k: first.timings_ms[k] for k in stages}

        def call():
            r = pipe(eeg, ids, **call_kw)
            overhead = r.timings_ms["total"] - r.backend_ms
            return r.timings_ms, {"backend": r.backend_ms, "overhead": overhead,
                                  "overhead_pct": 100.0 * overhead / r.timings_ms["total"]}

        with _progress(progress) as bar:
            samples = _time_calls(call, runs, warmup, (*stages, "total"), bar, "runtime")
        if used0 is not None and (used1 := _nvml_used_mb()) is not None:
            rt["memory"]["cuda_used_delta_mb"] = used1 - used0  # NVML sees every process on the device
    pipe.close()
    rt["samples_ms"] = samples
    rt["latency_ms"] = _stats_table({k: samples[k] for k in (*stages, "total")})
    rt["backend_ms"] = latency_stats(samples["backend"])
    rt["overhead"] = {"ms": latency_stats(samples["overhead"]), "pct": latency_stats(samples["overhead_pct"])}
    rt["throughput_images_per_s"] = len(eeg) * 1e3 / rt["latency_ms"]["total"]["mean"]
    return rt, first, pipe.manifest, eeg, ids


def _bench_baseline(weights, manifest, eeg, ids, runtime_first, *, device, precision, call_kw, vae, image_size,
                    runs, warmup, progress, threads=None) -> dict[str, Any]:
    if threads:
        import torch

        torch.set_num_threads(threads)  # the same thread budget as the runtime's sessions
    base: dict[str, Any] = {"memory": {}}
    stages = report_stages(call_kw)
    with _memory_phase(base["memory"]):
        t0 = time.perf_counter()
        import torch

        base["import_ms"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        ref, layout, dtype = _load_reference(weights, manifest, device=device, precision=precision)
        base["load_ms"] = (time.perf_counter() - t0) * 1e3
        base.update(device=str(ref.device), dtype=dtype, torch_threads=torch.get_num_threads(),
                    same_weights=_same_weights(manifest, layout))
        cuda = ref.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()

        def call():
            r = ref(eeg, ids, image_size=image_size, vae=vae, **call_kw)
            return {**{k: r.timings_ms[REFERENCE_STAGE[k]] for k in stages}, "total": r.timings_ms["total"]}, {}

        first = ref(eeg, ids, image_size=image_size, vae=vae, **call_kw)
        base["first_call_ms"] = first.timings_ms["total"]
        base["first_call_stages_ms"] = {k: first.timings_ms[REFERENCE_STAGE[k]] for k in stages}
        # Same EEG, seed and noise on both sides: a large gap here means the two did not compute the same thing.
        base["parity"] = {
            "image_embeds_max_abs_diff": float(np.abs(first.image_embeds - runtime_first.image_embeds).max()),
            "images_max_abs_diff": int(np.abs(first.images.astype(np.int16) - runtime_first.images.astype(np.int16)).max()),
        }
        with _progress(progress) as bar:
            samples = _time_calls(call, runs, warmup, (*stages, "total"), bar, "torch baseline")
        if cuda:
            base["memory"]["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    base["samples_ms"] = samples
    base["latency_ms"] = _stats_table(samples)
    base["throughput_images_per_s"] = len(eeg) * 1e3 / base["latency_ms"]["total"]["mean"]
    return base


# ---- showing the report ----------------------------------------------------------------------------
def print_report(report: dict[str, Any], console=None) -> None:
    """A rich table of stage latencies (runtime, and baseline + ratio when present), then a summary."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:  # a pipe or a log file: room for every column
            console = Console(width=120)
    s, rt, base, ratios = report["settings"], report["runtime"], report.get("baseline"), report.get("ratios")
    title = (f"{s['backend']} on {s['device']}, batch {s['batch']}, {s.get('image_size', '?')} px, "
             f"{s['steps']} step(s), {s['prior_steps']} prior steps, {s['runs']} runs (ms)")
    table = Table(title=title, box=box.SIMPLE_HEAD)
    table.add_column("stage", no_wrap=True)
    for col in ("p50", "p90", "p99", "mean", "min", "max"):
        table.add_column(col, justify="right")
    if base:
        table.add_column("torch p50", justify="right", no_wrap=True)
        table.add_column("torch/runtime", justify="right", no_wrap=True)
    for k in (*report_stages(s), "total"):
        st = rt["latency_ms"][k]
        row = [k, *(f"{st[c]:.1f}" for c in ("p50", "p90", "p99", "mean", "min", "max"))]
        if base:
            row += [f"{base['latency_ms'][k]['p50']:.1f}", f"{ratios[k]:.2f}x"]
        table.add_row(*row, style="bold" if k == "total" else None)
    console.print(table)
    ov = rt["overhead"]
    imported = f"import {rt['import_ms']:.0f} ms" if "import_ms" in rt else "backend already imported"
    lines = [
        f"cold start: {imported}, load {rt['load_ms']:.0f} ms, first call {rt['first_call_ms']:.0f} ms",
        f"throughput: {rt['throughput_images_per_s']:.2f} images/s",
        f"runtime overhead (wall - backend): p50 {ov['ms']['p50']:.2f} ms = {ov['pct']['p50']:.1f} % of the total",
        (f"peak RSS: {rt['memory']['peak_rss_mb']:.0f} MB ({rt['memory']['peak_rss_scope']}), "
        f"+{rt['memory'].get('peak_rss_increase_mb', float('nan')):.0f} MB over the RSS before loading"),
    ]
    if base:
        lines.append(f"torch baseline: load {base['load_ms']:.0f} ms, first call {base['first_call_ms']:.0f} ms, "
                     f"{base['throughput_images_per_s']:.2f} images/s, peak RSS {base['memory']['peak_rss_mb']:.0f} MB "
                     f"(+{base['memory'].get('peak_rss_increase_mb', float('nan')):.0f}), "
                     f"image_embeds max |diff| {base['parity']['image_embeds_max_abs_diff']:.1e}")
    for line in lines:
        console.print(line)


def plot_report(report: dict[str, Any], path: str | Path) -> Path:
    """PNG: one stacked bar of stage medians per pipeline (runtime, and the torch baseline if present)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import (
        Figure,  # no pyplot: no global state, no display needed
    )

    s = report["settings"]
    bars = {f"runtime ({s['backend']})": report["runtime"]}
    if report.get("baseline"):
        bars["torch reference"] = report["baseline"]
    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    names = list(bars)
    bottom = np.zeros(len(names))
    for stage in report_stages(s):
        values = np.array([bars[n]["latency_ms"][stage]["p50"] for n in names])
        ax.bar(names, values, bottom=bottom, label=stage, width=0.5)
        bottom += values
    for i, n in enumerate(names):
        total = bars[n]["latency_ms"]["total"]["p50"]
        ax.annotate(f"{total:.1f} ms", (i, bottom[i]), ha="center", va="bottom", xytext=(0, 3), textcoords="offset points")
    ax.set_ylabel("median latency (ms)")
    ax.set_ylim(0, bottom.max() * 1.15)
    ax.set_title(f"batch {s['batch']}, {s.get('image_size', '?')} px, {s['steps']} step(s), {s['prior_steps']} prior steps, "
                 f"{s['vae']} VAE, {s['device']}", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


# ---- results files ----------------------------------------------------------------------------------
def report_markdown(report: dict[str, Any]) -> str:
    """The stage table of a report as markdown (medians; ratio = torch / runtime)."""
    rt, base, ratios = report["runtime"], report.get("baseline"), report.get("ratios")
    head = ["stage", "runtime p50", "p90", "p99", "mean"] + (["torch p50", "p90", "torch / runtime"] if base else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in (*report_stages(report["settings"]), "total"):
        st = rt["latency_ms"][k]
        row = [f"**{k}**" if k == "total" else k, *(f"{st[c]:.2f}" for c in ("p50", "p90", "p99", "mean"))]
        if base:
            b = base["latency_ms"][k]
            row += [f"{b['p50']:.2f}", f"{b['p90']:.2f}", f"{ratios[k]:.2f}x"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def update_results_readme(readme: str | Path, name: str, body: str) -> Path:
    """Replace the section between ``<!-- name -->`` and ``<!-- /name -->`` (or append it); leave the rest alone."""
    import re

    from .fileio import atomic_write_text

    readme = Path(readme)
    text = readme.read_text() if readme.is_file() else "# Benchmark results\n\nEach section is written by the script it names.\n"
    block = f"<!-- {name} -->\n{body.strip()}\n<!-- /{name} -->"
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.DOTALL)
    text = pattern.sub(lambda _: block, text, count=1) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block + "\n"
    readme.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(readme, text)
    return readme
