"""The ``bench`` harness: cold start, timed runs of the runtime, and the torch baseline beside it."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.options import RunOptions
from ..manifest import Backend, Decoder, Precision, Provider, read_manifest
from .machine import library_versions, machine_info, memory_phase, nvml_used_mb
from .prior_graphs import compare_prior_graphs
from .stats import latency_stats, progress_bar, report_stages, stats_table, time_calls

REPORT_VERSION = 3  # 2: settings.device -> provider, runtime.device -> provider; 3: settings hold RunOptions.record()


# ---- inputs --------------------------------------------------------------------------------------
def synthetic_eeg(batch: int, spec, num_subjects: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed unit-variance EEG batch and subject ids cycling through the encoder's table."""
    rng = np.random.default_rng(seed)
    eeg = rng.standard_normal((batch, *spec.shape), dtype=np.float32)
    return eeg, (np.arange(batch) % (num_subjects or 1)).astype(np.int64)  # None: no subject table


def _load_reference(layout, manifest, *, torch_device: str, precision: str, ip_scale: float):
    import torch

    from ..reference.pipeline import ReferencePipeline

    cuda = torch_device.startswith("cuda")
    dtype = torch.float16 if cuda and precision == "fp16" else torch.float32  # Stage II; the runtime's precision
    ref = ReferencePipeline.from_weights(
        layout, variant=manifest.bundle.encoder_variant,
        ip_scale=ip_scale, device=torch_device, dtype=dtype, cuda_event_timing=cuda,
    )
    return ref, str(dtype).removeprefix("torch.")


def _baseline_layout(weights, manifest):
    """The baseline's :class:`~..weights.WeightsLayout` (``weights``: one, or a weights folder), checked before any
    timing: a bundle of a user's encoder needs its factory."""
    from ..errors import OptionError
    from ..manifest import EncoderKind
    from ..weights import WeightsLayout, resolve_weights

    layout = weights if isinstance(weights, WeightsLayout) else resolve_weights(weights)
    enc = manifest.bundle.encoder
    if enc.kind is EncoderKind.CUSTOM and layout.encoder_factory is None:
        raise OptionError(f"this bundle's encoder is your model ({enc.factory}): the torch baseline builds it too, so "
                          "pass --encoder-factory, --encoder and --encoder-channels as for its export")
    return layout


def _same_weights(manifest, layout) -> bool | None:
    """Whether the baseline's encoder and prior (and a custom encoder's code) are the files the bundle was exported from."""
    from ..fileio import sha256_file
    from ..models.custom_encoder import factory_source

    src = manifest.sources
    if not {"encoder", "prior"} <= set(src):
        return None
    files = {k: getattr(layout, k) for k in ("encoder", "prior")}
    if "encoder_factory" in src:
        files["encoder_factory"] = factory_source(layout.encoder_factory) if layout.encoder_factory else None
    return all(path is not None and src[k].sha256 == sha256_file(path) for k, path in files.items())


def _weights_label(weights) -> Any:
    """How the report names the baseline's weights: the folder, or each component of a layout."""
    if weights is None or isinstance(weights, (str, os.PathLike)):
        return None if weights is None else str(weights)
    return weights.describe()


# ---- the benchmark -------------------------------------------------------------------------------
def run_bench(
    bundle: str | Path,
    options: RunOptions | None = None,
    *,
    backend: Backend | str = Backend.ONNXRUNTIME,
    provider: Provider | str = Provider.CPU,
    precision: Precision | str | None = None,
    runs: int = 20,
    warmup: int = 3,
    batch: int = 1,
    vae: Decoder | str = Decoder.FULL,
    baseline_weights: Any = None,
    torch_device: str | None = None,
    eeg: np.ndarray | None = None,
    progress: bool = False,
    threads: int | None = None,
    allow_cpu_fallback: bool = False,
    verify: bool = False,
    **knobs: Any,
) -> dict[str, Any]:
    """Time ``Pipeline.from_bundle(bundle, ...)`` running ``options`` (:class:`~..core.options.RunOptions`;
    ``knobs``: any of its fields, changed) and, with ``baseline_weights`` (a weights folder, or a
    :class:`~..weights.WeightsLayout` for component overrides such as ``--encoder-factory``), the torch reference.

    ``eeg`` (B, 63, 250) replaces the synthetic batch of ``batch`` trials; subject ids cycle 0, 1, ...
    The low-level path adds a "low_level" stage, captions a "caption" one and prompts a "text_encoder" one.
    ``torch_device`` runs the baseline (default: cuda for TensorRT or a GPU provider, else cpu).
    The prior is also timed both ways (``runtime.prior_graphs``) where the bundle has a fused graph for
    ``prior_steps``. Returns a JSON-able report (see the package docstring); ``print_report`` and
    ``plot_report`` show it.
    """
    from ..errors import OptionError

    if runs < 1 or warmup < 0 or batch < 1:
        raise OptionError(f"need --runs >= 1, --warmup >= 0, --batch >= 1; got {runs}, {warmup}, {batch}")
    run = RunOptions.make(options, **knobs)
    backend, provider, vae = Backend(backend), Provider(provider), Decoder(vae)
    if torch_device is None:
        torch_device = "cuda" if backend is Backend.TENSORRT or provider is not Provider.CPU else "cpu"
    settings = {"bundle": str(bundle), "backend": backend.value, "provider": provider.value,
                "precision": None if precision is None else str(precision), "runs": runs, "warmup": warmup,
                "batch": batch, "vae": vae.value, **run.record(),
                "baseline_weights": _weights_label(baseline_weights), "threads": threads}
    report: dict[str, Any] = {"report_version": REPORT_VERSION, "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                              "settings": settings}

    layout = None if baseline_weights is None else _baseline_layout(baseline_weights, read_manifest(bundle))
    load_before = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    rt, first, manifest, eeg, ids = _bench_runtime(bundle, backend=backend, provider=provider, precision=precision,
                                                   vae=vae, eeg=eeg, batch=batch, run=run, runs=runs,
                                                   warmup=warmup, progress=progress, threads=threads,
                                                   allow_cpu_fallback=allow_cpu_fallback, verify=verify)
    settings.update(batch=len(eeg), image_size=manifest.bundle.image_size, prior_graph=first.prior_graph,
                    **{k: getattr(first.options, k) for k in ("steps", "prior_steps", "guidance", "ip_scale")})
    report.update(runtime=rt, baseline=None, ratios=None)
    if layout is not None:
        report["baseline"] = base = _bench_baseline(
            layout, manifest, eeg, ids, first, torch_device=torch_device,
            precision=rt["artifacts"]["unet"]["precision"], vae=vae,
            run=first.options,
            image_size=settings["image_size"], runs=runs, warmup=warmup, progress=progress, threads=threads,
        )
        report["ratios"] = {k: base["latency_ms"][k]["p50"] / rt["latency_ms"][k]["p50"]
                            for k in (*report_stages(settings), "total")}
    # Machine info last: torch.cuda (if the baseline imported torch) can then name the GPU.
    report["machine"] = machine_info()
    report["machine"]["load_average_1m_at_start"] = load_before
    report["versions"] = library_versions()
    return report


def _bench_runtime(bundle, *, backend, provider, precision, vae, eeg, batch, run, runs, warmup, progress, threads,
                   allow_cpu_fallback, verify):
    """Cold start (backend import, load, first call), then the timed runs; the pipeline is closed after."""
    rt: dict[str, Any] = {"backend": backend.value, "provider": provider.value, "memory": {}}
    stages = report_stages(run.record())
    with memory_phase(rt["memory"]):
        module = "tensorrt" if backend is Backend.TENSORRT else "onnxruntime"
        if module not in sys.modules:
            t0 = time.perf_counter()
            with contextlib.suppress(ImportError):  # from_bundle raises the helpful error
                __import__(module)
            rt["import_ms"] = (time.perf_counter() - t0) * 1e3
        from ..runtime.pipeline import Pipeline

        used0 = nvml_used_mb() if provider is not Provider.CPU or backend is Backend.TENSORRT else None
        t0 = time.perf_counter()
        pipe = Pipeline.from_bundle(bundle, backend=backend, precision=precision, provider=provider, vae=vae,
                                    threads=threads, allow_cpu_fallback=allow_cpu_fallback, verify=verify,
                                    low_level=run.low_level)
        rt["load_ms"] = (time.perf_counter() - t0) * 1e3
        rt["artifacts"] = {s: {"file": sess.artifact.file, "precision": sess.artifact.precision.value}
                           for s, sess in pipe.sessions.items()}
        if eeg is None:
            eeg, ids = synthetic_eeg(batch, pipe.eeg_spec, pipe.num_subjects, run.seed)
        else:
            eeg = np.asarray(eeg, np.float32)
            ids = (np.arange(len(eeg)) % (pipe.num_subjects or 1)).astype(np.int64)
        first = pipe(eeg, ids, options=run)
        rt["first_call_ms"] = first.timings_ms["total"]
        rt["first_call_stages_ms"] = {k: first.timings_ms[k] for k in stages}

        def call():
            r = pipe(eeg, ids, options=run)
            overhead = r.timings_ms["total"] - r.backend_ms
            return r.timings_ms, {"backend": r.backend_ms, "overhead": overhead,
                                  "overhead_pct": 100.0 * overhead / r.timings_ms["total"]}

        with progress_bar(progress) as bar:
            samples = time_calls(call, runs, warmup, (*stages, "total"), bar, "runtime")
        if used0 is not None and (used1 := nvml_used_mb()) is not None:
            rt["memory"]["cuda_used_delta_mb"] = used1 - used0  # NVML sees every process on the device
    rt["prior_graphs"] = compare_prior_graphs(pipe, first.eeg_embeds, pipe.options(run), runs=runs, warmup=warmup)
    pipe.close()
    rt["samples_ms"] = samples
    rt["latency_ms"] = stats_table({k: samples[k] for k in (*stages, "total")})
    rt["backend_ms"] = latency_stats(samples["backend"])
    rt["overhead"] = {"ms": latency_stats(samples["overhead"]), "pct": latency_stats(samples["overhead_pct"])}
    rt["throughput_images_per_s"] = len(eeg) * 1e3 / rt["latency_ms"]["total"]["mean"]
    return rt, first, pipe.manifest, eeg, ids


def _bench_baseline(layout, manifest, eeg, ids, runtime_first, *, torch_device, precision, run, vae, image_size,
                    runs, warmup, progress, threads=None) -> dict[str, Any]:
    if threads:
        import torch

        torch.set_num_threads(threads)  # the same thread budget as the runtime's sessions
    base: dict[str, Any] = {"memory": {}}
    stages = report_stages(run.record())
    with memory_phase(base["memory"]):
        t0 = time.perf_counter()
        import torch

        base["import_ms"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        ref, dtype = _load_reference(layout, manifest, torch_device=torch_device, precision=precision,
                                               ip_scale=run.ip_scale)
        base["load_ms"] = (time.perf_counter() - t0) * 1e3
        base.update(torch_device=str(ref.device), dtype=dtype, torch_threads=torch.get_num_threads(),
                    same_weights=_same_weights(manifest, layout))
        cuda = ref.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()

        ref_run = run.replace(prior_graph=None)  # the reference has one prior path

        def call():
            return ref(eeg, ids, options=ref_run, image_size=image_size, vae=vae.value).timings_ms, {}

        first = ref(eeg, ids, options=ref_run, image_size=image_size, vae=vae.value)
        base["first_call_ms"] = first.timings_ms["total"]
        base["first_call_stages_ms"] = {k: first.timings_ms[k] for k in stages}
        # Same EEG, seed and noise on both sides: a large gap here means the two did not compute the same thing.
        base["parity"] = {
            "image_embeds_max_abs_diff": float(np.abs(first.image_embeds - runtime_first.image_embeds).max()),
            "images_max_abs_diff": int(np.abs(first.images.astype(np.int16) - runtime_first.images.astype(np.int16)).max()),
        }
        with progress_bar(progress) as bar:
            samples = time_calls(call, runs, warmup, (*stages, "total"), bar, "torch baseline")
        if cuda:
            base["memory"]["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    base["samples_ms"] = samples
    base["latency_ms"] = stats_table(samples)
    base["throughput_images_per_s"] = len(eeg) * 1e3 / base["latency_ms"]["total"]["mean"]
    return base


