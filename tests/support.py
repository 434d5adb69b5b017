"""Shared test settings (importable as ``support``: pytest puts tests/ on sys.path, see pyproject.toml)."""

# Small images keep the suite fast; every code path is the same as at 512x512.
TEST_IMAGE_SIZE = 128


def psnr(a, b) -> float:
    """PSNR in dB of two uint8 images (inf when equal)."""
    import numpy as np

    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def age_files(folder, seconds: int = 60) -> None:
    """Date every file of ``folder`` ``seconds`` back: past the window in which integrity.py remembers no file."""
    import os
    import time

    t = time.time_ns() - seconds * 1_000_000_000
    for p in folder.iterdir():
        os.utime(p, ns=(t, t))


def run_main(monkeypatch, capsys, args) -> tuple[int, str, str]:
    """``eeg2img-deploy ARGS`` through the real entry point; returns (exit code, stdout, stderr)."""
    import sys

    from eeg2img_deploy import cli

    monkeypatch.setattr(sys, "argv", ["eeg2img-deploy", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = e.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def import_blocker(blocked: tuple[str, ...]) -> str:
    """Python source that makes the packages ``blocked`` (and their submodules) unimportable from then on,
    as on a machine without them: run it first in a fresh interpreter (``-c``, or as ``sitecustomize``)."""
    return f"""
import importlib.abc, sys

BLOCKED = {blocked!r}


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:  # "onnx" only: onnxruntime stays importable
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, _Blocker())
for mod in [m for m in sys.modules if m.split(".")[0] in BLOCKED]:
    del sys.modules[mod]
"""


# The float32 I/O a bundle exported before float32 graph edges kept float32 in its fp16 graphs.
FP32_BEFORE = {"prior": {"t"}, "unet": {"timestep", "time_ids", "ip_scale"},
               "prior_sampler": {"cond", "noise", "guidance", "image_embeds"}}


def float16_edges(bundle, out, stages=("encoder", "prior", "unet", "taesd_decoder")) -> None:
    """Copy ``bundle`` to ``out`` as a bundle exported before float32 graph edges: in the fp16 graphs of ``stages``
    the float I/O is float16 (but ``FP32_BEFORE``), as export wrote it then. Numerically the same graphs: a Cast
    to float32 after each such input and a Cast to float16 before each such output."""
    import dataclasses
    import shutil

    import onnx

    from eeg2img_deploy.fileio import sha256_file
    from eeg2img_deploy.manifest import Precision, TensorSpec, read_manifest, write_manifest

    shutil.copytree(bundle, out)
    manifest = read_manifest(out)
    artifacts = []
    for a in manifest.artifacts:
        if a.precision is not Precision.FP16 or a.stage not in stages:
            artifacts.append(a)
            continue
        kept = FP32_BEFORE.get(a.stage, set())
        halve = {t.name for t in (*a.inputs, *a.outputs) if t.dtype == "float32" and t.name not in kept}
        model = onnx.load(str(out / a.file))
        g = model.graph
        for v in [*g.input, *g.output]:
            if v.name in halve:
                v.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
        inner = {n: f"{n}__float32" for n in halve}
        for node in g.node:
            node.input[:] = [inner.get(i, i) for i in node.input]
            node.output[:] = [inner.get(o, o) for o in node.output]
        casts = [onnx.helper.make_node("Cast", [v.name], [inner[v.name]], to=onnx.TensorProto.FLOAT)
                 for v in g.input if v.name in halve]
        casts_out = [onnx.helper.make_node("Cast", [inner[v.name]], [v.name], to=onnx.TensorProto.FLOAT16)
                     for v in g.output if v.name in halve]
        nodes = casts + list(g.node) + casts_out
        del g.node[:]
        g.node.extend(nodes)
        onnx.checker.check_model(model)
        onnx.save(model, str(out / a.file))
        def spec(ts):
            return tuple(TensorSpec(t.name, "float16" if t.name in halve else t.dtype, t.shape) for t in ts)

        size = (out / a.file).stat().st_size
        artifacts.append(dataclasses.replace(a, inputs=spec(a.inputs), outputs=spec(a.outputs),
                                             sha256=sha256_file(out / a.file), size_bytes=size))
    write_manifest(out, dataclasses.replace(manifest, artifacts=tuple(artifacts)))


# eval's metric networks need torchvision, which imports only in the second environment on this project's machines
NEEDS_EVAL_ENV = ("torchvision is not installed: eval's metric networks run in .venv-eval "
                  "(bash scripts/setup-venv.sh eval; bash scripts/test.sh runs tests/eval there)")


def bundle_with_whitening(src, dst, w):
    """A copy of bundle ``src`` at ``dst`` (hard links) that ships whitening matrix ``w``, as
    ``export --whitening W`` writes it; returns ``dst``."""
    import dataclasses
    import os
    import shutil

    import numpy as np
    from safetensors.numpy import load_file, save_file

    from eeg2img_deploy.fileio import sha256_file
    from eeg2img_deploy.manifest import MANIFEST_NAME, read_manifest, write_manifest

    shutil.copytree(src, dst, copy_function=os.link)
    manifest = read_manifest(dst)
    consts = load_file(str(dst / manifest.constants_file))
    consts["eeg_whitening"] = np.asarray(w, dtype=np.float32)
    (dst / manifest.constants_file).unlink()  # a hard link: replace, never write through it
    save_file(consts, str(dst / manifest.constants_file))
    (dst / MANIFEST_NAME).unlink()
    write_manifest(dst, dataclasses.replace(
        manifest, constants_sha256=sha256_file(dst / manifest.constants_file),
        eeg=dataclasses.replace(manifest.eeg, whitening=True)))
    return dst

