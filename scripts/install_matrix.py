"""The install extras, one per real target, checked against the wheels pip would really install there.

    python scripts/install_matrix.py            # resolve every target, open its wheels, print what was found
    python scripts/install_matrix.py --readme   # rewrite README.md's install table from TARGETS

For each target (an extra of pyproject.toml, a platform, a Python), pip's resolver picks the wheels as that
machine would (``pip install --dry-run --report --only-binary=:all: --platform ... --python-version ...``;
metadata by HTTP range requests, no wheel downloaded whole). Then the chosen wheels are opened the same way:

- onnxruntime-gpu: ``onnxruntime/capi/build_and_package_info.py`` (the CUDA version it was built with) and
  its TensorRT provider's ELF dependencies (the ``libnvinfer.so.N`` and ``libcudart.so.N`` it loads);
- TensorRT's bindings: the ``libnvinfer.so.N`` of ``tensorrt.so``;
- cuda-bindings, and the NVIDIA runtime wheels onnxruntime-gpu's ``[cuda,cudnn]`` brings: their CUDA major.

The rule: one CUDA major across the set, the target's; onnxruntime's TensorRT provider gets the TensorRT
major it links. TensorRT's ``tensorrt-cuNN`` is an sdist on PyPI that installs ``tensorrt-cuNN-libs`` and
``tensorrt-cuNN-bindings`` of its own version, so the resolver is given the bindings (wheels, per platform)
under the same version range, and the check asks that the newest ``tensorrt-cuNN`` in that range has a
bindings wheel for the platform (else pip would pick a version with nothing to install there).
Jetson targets take TensorRT from JetPack (apt), not from pip: the set must hold no TensorRT wheel. Every
TensorRT target installs onnx: ``build-engines`` checks the graphs against TensorRT's parser rules with it.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import struct
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "eeg2img-deploy"
INDEX = "https://pypi.org/simple"
README_MARK = ("<!-- install-matrix -->", "<!-- /install-matrix -->")


@dataclass(frozen=True)
class Target:
    extra: str
    host: str  # the README's words for the machine
    machine: str  # x86_64 | aarch64
    glibc: tuple[int, int]
    python: str
    cuda: int | None  # the CUDA major of the whole set; None: no CUDA (cpu)
    tensorrt: str  # where TensorRT comes from, for the README
    runs: str  # what the install can run, for the README
    system_tensorrt: bool = False  # JetPack's TensorRT (apt): no TensorRT wheel allowed
    setup: str = ""  # a step before pip, for the README

    @property
    def name(self) -> str:
        return f"{self.extra} ({self.machine}, Python {self.python})"


TARGETS = (
    Target("cpu", "CPU only", "x86_64", (2, 35), "3.12", None, "-", "`--backend onnxruntime --provider cpu`"),
    Target("gpu-cu12", "x86_64, CUDA 12 driver (R525+)", "x86_64", (2, 35), "3.12", 12,
           "pip wheel, 10.x (onnxruntime's TensorRT provider links `libnvinfer.so.10`)",
           "onnxruntime on `--provider cuda\\|tensorrt`, and `--backend tensorrt`"),
    Target("gpu-cu13", "x86_64, CUDA 13 driver (R580+)", "x86_64", (2, 35), "3.12", 13,
           "pip wheel, 10.x (onnxruntime's TensorRT provider links `libnvinfer.so.10`)",
           "onnxruntime on `--provider cuda\\|tensorrt`, and `--backend tensorrt`"),
    Target("gpu-cu12", "aarch64 server (GH200), CUDA 12 driver", "aarch64", (2, 39), "3.12", 12,
           "pip wheel, up to 10.13.0 (NVIDIA's last CUDA 12 aarch64 wheels)",
           "`--backend tensorrt`; onnxruntime on the CPU (no CUDA 12 onnxruntime-gpu wheel for aarch64)"),
    Target("gpu-cu13", "aarch64 server (GH200, GB200) or Jetson Thor as SBSA, CUDA 13 driver", "aarch64", (2, 39),
           "3.12", 13, "pip wheel, 10.x", "`--backend tensorrt`, onnxruntime on `--provider cuda` (the aarch64 "
           "onnxruntime-gpu has no TensorRT provider)"),
    Target("jetson6", "Jetson Orin, JetPack 6 (L4T r36, CUDA 12.6)", "aarch64", (2, 35), "3.10", 12,
           "JetPack's 10.3 (`sudo apt install python3-libnvinfer`)", "`--backend tensorrt`, onnxruntime on the CPU",
           system_tensorrt=True, setup="`python3 -m venv --system-site-packages .venv`, then "),
    Target("jetson7", "Jetson Thor, JetPack 7 (L4T r38, CUDA 13)", "aarch64", (2, 39), "3.12", 13,
           "JetPack's 10.13 (`sudo apt install python3-libnvinfer`)", "`--backend tensorrt`, onnxruntime on the CPU",
           system_tensorrt=True, setup="`python3 -m venv --system-site-packages .venv`, then "),
)


# ---- the extras, expanded for one target ----------------------------------------------------------------
def extras(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, list[str]]:
    return tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]


def marker_env(t: Target) -> dict[str, str]:
    return {"platform_machine": t.machine, "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
            "python_version": t.python, "python_full_version": f"{t.python}.0", "implementation_name": "cpython",
            "platform_python_implementation": "CPython", "extra": ""}


def requirements(extra: str, t: Target, table: dict[str, list[str]] | None = None) -> list[Requirement]:
    """The extra's requirements that apply on ``t``, the project's own extras expanded."""
    table = extras() if table is None else table
    out: list[Requirement] = []
    for line in table[extra]:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(marker_env(t)):
            continue
        if canonicalize_name(req.name) == PROJECT:
            for sub in sorted(req.extras):
                out += requirements(sub, t, table)
        else:
            out.append(req)
    return out


def platform_tags(t: Target) -> list[str]:
    """Every manylinux tag a glibc ``t.glibc`` machine accepts (pip matches --platform tags exactly)."""
    lowest = 17 if t.machine == "aarch64" else 5
    tags = [f"manylinux_2_{m}_{t.machine}" for m in range(t.glibc[1], lowest - 1, -1)]
    legacy = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5} if t.machine == "x86_64" else {"manylinux2014": 17}
    return tags + [f"{name}_{t.machine}" for name, m in legacy.items() if m <= t.glibc[1]]


# ---- the index and the wheels, read with range requests ----------------------------------------------------
def _get(url: str, headers: dict | None = None, timeout: float = 60) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
        return r.read()


def index_versions(name: str) -> list[Version]:
    data = json.loads(_get(f"{INDEX}/{canonicalize_name(name)}/", {"Accept": "application/vnd.pypi.simple.v1+json"}))
    versions = data.get("versions") or []
    return sorted({Version(v) for v in versions if not Version(v).is_prerelease})


class _RangeFile(io.RawIOBase):
    """A remote file read by HTTP range requests: zipfile reads a wheel's directory and one member."""

    def __init__(self, url: str):
        self.url, self.pos = url, 0
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=60) as r:
            self.size = int(r.headers["Content-Length"])

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = (offset, self.pos + offset, self.size + offset)[whence]
        return self.pos

    def readinto(self, b) -> int:
        if self.pos >= self.size or not len(b):
            return 0
        end = min(self.pos + len(b), self.size) - 1
        data = _get(self.url, {"Range": f"bytes={self.pos}-{end}"}, timeout=120)
        b[: len(data)] = data
        self.pos += len(data)
        return len(data)


def open_wheel(url: str) -> zipfile.ZipFile:
    if url.startswith("file://"):
        return zipfile.ZipFile(url.removeprefix("file://"))
    return zipfile.ZipFile(io.BufferedReader(_RangeFile(url), buffer_size=1 << 16))


def elf_needed(elf: bytes) -> list[str]:
    """DT_NEEDED of a 64-bit little-endian ELF shared object."""
    shoff = struct.unpack_from("<Q", elf, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", elf, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    dynamic = next(s for s in sections if s[1] == 6)  # SHT_DYNAMIC
    strtab = sections[dynamic[6]][4]  # sh_link -> .dynstr, its file offset
    out = []
    for off in range(dynamic[4], dynamic[4] + dynamic[5], 16):
        tag, value = struct.unpack_from("<qQ", elf, off)
        if tag == 0:
            break
        if tag == 1:  # DT_NEEDED
            start = strtab + value
            out.append(elf[start : elf.index(b"\0", start)].decode())
    return out


def _so_major(needed: list[str], lib: str) -> int | None:
    found = [int(m.group(1)) for n in needed if (m := re.fullmatch(rf"{re.escape(lib)}\.so\.(\d+)", n))]
    return found[0] if found else None


# ---- one target ------------------------------------------------------------------------------------------
@dataclass
class Finding:
    target: Target
    installs: dict[str, str] = field(default_factory=dict)  # name -> version, what pip chose
    facts: dict[str, object] = field(default_factory=dict)  # what the wheels say
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _for_resolver(reqs: list[Requirement]) -> tuple[list[str], dict[str, Requirement]]:
    """TensorRT's metapackage (an sdist) replaced by its bindings wheel under the same range."""
    out, tensorrt = [], {}
    for r in reqs:
        if re.fullmatch(r"tensorrt-cu\d+", canonicalize_name(r.name)):
            tensorrt[canonicalize_name(r.name)] = r
            out.append(f"{r.name}-bindings{r.specifier}")
        else:
            out.append(str(r).split(";")[0])
    return out, tensorrt


def resolve(t: Target, reqs: list[str]) -> dict[str, dict]:
    """pip's choice for ``t``: {name: report entry}."""
    with tempfile.TemporaryDirectory(prefix="install-matrix-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
               str(report), "--only-binary=:all:", "--python-version", t.python, "--implementation", "cp",
               "--target", str(Path(tmp) / "target"), "--use-feature=fast-deps", "--disable-pip-version-check",
               *(a for tag in platform_tags(t) for a in ("--platform", tag)), *reqs]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
        if run.returncode:
            err = [line for line in run.stderr.splitlines() if line.startswith("ERROR")] or run.stderr.splitlines()[-3:]
            raise RuntimeError(f"pip cannot resolve {reqs} for {t.name}: {' '.join(err)}")
        entries = json.loads(report.read_text())["install"]
    return {canonicalize_name(e["metadata"]["name"]): e for e in entries}


def check(t: Target, table: dict[str, list[str]] | None = None) -> Finding:
    """Resolve ``t``'s extra (from pyproject.toml, or ``table``) for its platform and check the set."""
    f = Finding(t)
    reqs, tensorrt = _for_resolver(requirements(t.extra, t, table))
    chosen = resolve(t, reqs)
    f.installs = {n: e["metadata"]["version"] for n, e in chosen.items()}
    cuda: dict[str, int] = {}  # what says which CUDA major

    ort_gpu = chosen.get("onnxruntime-gpu")
    if ort_gpu:
        wheel = open_wheel(ort_gpu["download_info"]["url"])
        info = wheel.read("onnxruntime/capi/build_and_package_info.py").decode()
        built = re.search(r"cuda_version\s*=\s*'(\d+)\.", info)
        if built is None:
            f.errors.append(f"onnxruntime-gpu {f.installs['onnxruntime-gpu']} names no CUDA version")
        else:
            cuda["onnxruntime-gpu (build_and_package_info)"] = int(built.group(1))
        trt_ep = [n for n in wheel.namelist() if n.endswith("libonnxruntime_providers_tensorrt.so")]
        if trt_ep:
            needed = elf_needed(wheel.read(trt_ep[0]))
            f.facts["onnxruntime TensorRT provider links"] = [n for n in needed if n.startswith(("libnvinfer", "libcudart"))]
            if (m := _so_major(needed, "libcudart")) is not None:
                cuda["onnxruntime TensorRT provider (libcudart)"] = m
            f.facts["onnxruntime_tensorrt_major"] = _so_major(needed, "libnvinfer")
    for name, entry in chosen.items():
        version = Version(entry["metadata"]["version"])
        if name == "cuda-bindings":
            cuda["cuda-bindings"] = version.major
        elif m := re.fullmatch(r"nvidia-(cuda-runtime|cudnn|cublas)(?:-cu(\d+))?", name):
            cuda[name] = int(m.group(2)) if m.group(2) else version.major
        elif m := re.fullmatch(r"tensorrt-cu(\d+)-bindings", name):
            cuda[name] = int(m.group(1))
            so = [n for n in open_wheel(entry["download_info"]["url"]).namelist() if n.endswith("/tensorrt.so")]
            needed = elf_needed(open_wheel(entry["download_info"]["url"]).read(so[0]))
            f.facts["tensorrt_major"] = _so_major(needed, "libnvinfer")
            meta = tensorrt[f"tensorrt-cu{m.group(1)}"]
            newest = max((v for v in index_versions(meta.name) if v in meta.specifier), default=None)
            f.facts["tensorrt"] = str(version)
            if newest != version:
                f.errors.append(f"pip would install {meta.name} {newest} (the newest in {meta.specifier}), which has "
                                f"no bindings wheel for {t.machine}/Python {t.python}; the newest that has: {version}")
    f.facts["cuda_majors"] = cuda
    wrong = {k: v for k, v in cuda.items() if v != t.cuda}
    if wrong:
        f.errors.append(f"CUDA {t.cuda} target, but {wrong}")
    if t.cuda is not None and "cuda-bindings" not in cuda:
        f.errors.append("no cuda-bindings in the set (the TensorRT backend's CUDA calls)")
    ep, trt = f.facts.get("onnxruntime_tensorrt_major"), f.facts.get("tensorrt_major")
    if ep is not None and trt is not None and ep != trt:
        f.errors.append(f"onnxruntime's TensorRT provider links libnvinfer.so.{ep}, the TensorRT wheel is {trt}.x")
    has_trt = any(n.startswith("tensorrt") for n in chosen)
    if t.system_tensorrt and has_trt:
        f.errors.append("a TensorRT wheel on a Jetson target (JetPack's TensorRT comes from apt)")
    if t.cuda is not None and not t.system_tensorrt and not has_trt:
        f.errors.append("no TensorRT in a GPU target")
    f.facts["onnx"] = f.installs.get("onnx")
    if t.cuda is not None and "onnx" not in chosen:
        f.errors.append("no onnx in a TensorRT target (a build checks the graphs against TensorRT's parser rules first)")
    ort = [n for n in chosen if n in ("onnxruntime", "onnxruntime-gpu")]
    if len(ort) != 1:
        f.errors.append(f"exactly one onnxruntime build expected, got {ort}")
    return f


def check_all(jobs=None) -> list[Finding]:
    """``check`` of every (target, extras table or None) in ``jobs`` (default: TARGETS with pyproject.toml), in parallel."""
    jobs = [(t, None) for t in TARGETS] if jobs is None else jobs

    def one(job) -> Finding:
        t, table = job
        try:
            return check(t, table)
        except Exception as e:  # noqa: BLE001 - a target that cannot be checked is a finding too
            return Finding(t, errors=[f"{type(e).__name__}: {e}"])

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(one, jobs))


# ---- the README table ---------------------------------------------------------------------------------------
def readme_table(targets=TARGETS) -> str:
    rows = ["| host | install | CUDA | TensorRT | runs |", "|---|---|---|---|---|"]
    for t in targets:
        check = "onnx" in {r.name for r in requirements(t.extra, t)}  # the graphs checked before a TensorRT build
        rows.append(f"| {t.host} | {t.setup}`pip install 'eeg2img-deploy[{t.extra}]'` (checked: {t.machine}, "
                    f"Python {t.python}) | {t.cuda or '-'} | {t.tensorrt} | {t.runs}"
                    f"{'; `build-engines --check` (onnx)' if check else ''} |")
    return "\n".join(rows)


def readme_block(text: str) -> str:
    start, end = README_MARK
    return text[text.index(start) + len(start) : text.index(end)].strip("\n")


def write_readme(readme: Path = ROOT / "README.md") -> None:
    text = readme.read_text()
    start, end = README_MARK
    head, rest = text.split(start, 1)
    readme.write_text(f"{head}{start}\n{readme_table()}\n{end}{rest.split(end, 1)[1]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readme", action="store_true", help="rewrite README.md's install table from TARGETS")
    args = ap.parse_args(argv)
    if args.readme:
        write_readme()
        return 0
    findings = check_all()
    for f in findings:
        print(f"{'ok    ' if f.ok else 'FAILED'} {f.target.name}: {f.installs}")
        print(f"       {f.facts}")
        for e in f.errors:
            print(f"       ! {e}")
    return 0 if all(f.ok for f in findings) else 1


if __name__ == "__main__":
    sys.exit(main())
