"""What ``bench`` records about the machine: CPU, GPUs, library versions, and memory per phase."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from pathlib import Path
from typing import Any

from ..manifest import library_versions as manifest_library_versions

LIBRARIES = ("numpy", "onnxruntime", "onnxruntime-gpu", "tensorrt", "torch", "diffusers", "transformers")


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


def reset_peak_rss() -> bool:
    """Linux lets a process reset its own peak RSS (VmHWM), so each phase gets its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def rss_mb() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss / 2**20


@contextlib.contextmanager
def memory_phase(out: dict[str, Any]):
    """Record RSS before, and the peak RSS during, a phase (the process's lifetime peak where it cannot be reset)."""
    out["peak_rss_scope"] = "phase" if reset_peak_rss() else "process lifetime"
    out["rss_before_mb"] = rss_mb()
    yield
    out["peak_rss_mb"] = peak_rss_mb()
    out["rss_after_mb"] = rss_mb()
    if out["rss_before_mb"] is not None:  # what the phase added: the process may hold other things already
        out["peak_rss_increase_mb"] = out["peak_rss_mb"] - out["rss_before_mb"]


def nvml_used_mb() -> float | None:
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
