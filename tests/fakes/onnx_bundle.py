"""A tiny fake export bundle: three small ONNX stages (fp32, and fp16 for two) with a real manifest.

The graphs are a few ops each but use the bundle's real conventions: dynamic axes named "batch" and
"batch2" (cond + uncond rows of the prior), int64 timesteps, external data for one model, a
``constants.safetensors`` and ``manifest.json`` written last.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eeg2img_deploy.fileio import sha256_file
from eeg2img_deploy.manifest import (
    AxisRange,
    BundleSettings,
    EEGInfo,
    Artifact,
    Backend,
    Manifest,
    Precision,
    TensorSpec,
    write_manifest,
)

AXES = {"batch": AxisRange(1, 1, 4), "batch2": AxisRange(2, 2, 8)}
SPECS = {
    "encoder": ((("eeg", "float32", ("batch", 4, 8)),), (("eeg_embeds", "float32", ("batch", 6)),)),
    "prior": ((("x", "float32", ("batch2", 6)), ("t", "int64", ("batch2",))), (("eps", "float32", ("batch2", 6)),)),
    "unet": (
        (("latents", "float32", ("batch", 2, 4, 4)), ("embeds", "float32", ("batch", 6))),
        (("noise_pred", "float32", ("batch", 2, 4, 4)),),
    ),
}


def _graph(stage: str, dtype: np.dtype, rng: np.random.Generator, uint8_inside: bool = False,
           computed_axes: bool = False):
    from onnx import TensorProto, helper, numpy_helper

    elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    w = lambda name, *shape: numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(dtype), name)
    if stage == "encoder":
        nodes = [
            helper.make_node("Flatten", ["eeg"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["h"]),
            helper.make_node("Add", ["h", "b"], ["eeg_embeds"]),
        ]
        if uint8_inside:  # a uint8 round trip: onnxruntime runs it, TensorRT's parser refuses it
            nodes[-1].output[0] = "sum"
            nodes += [helper.make_node("Cast", ["sum"], ["u8"], to=TensorProto.UINT8, name="to_uint8"),
                      helper.make_node("Cast", ["u8"], ["eeg_embeds"], to=elem, name="from_uint8")]
        inits = [w("W", 32, 6), w("b", 6)]
    elif stage == "prior":
        nodes = [
            helper.make_node("Cast", ["t"], ["tf"], to=elem),
            helper.make_node("Unsqueeze", ["tf", "axis1"], ["t2"]),
            helper.make_node("Mul", ["t2", "W"], ["tw"]),
            helper.make_node("Add", ["x", "tw"], ["s"]),
            helper.make_node("Tanh", ["s"], ["eps"]),
        ]
        if computed_axes:  # the Unsqueeze axes through an Identity: TensorRT before 10.7 wants an initializer
            nodes[1].input[1] = "axis1_copy"
            nodes.insert(0, helper.make_node("Identity", ["axis1"], ["axis1_copy"]))
        inits = [w("W", 1, 6), numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    else:
        nodes = [
            helper.make_node("Conv", ["latents", "K"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("MatMul", ["embeds", "P"], ["e"]),
            helper.make_node("Reshape", ["e", "shape4"], ["e4"]),
            helper.make_node("Add", ["c", "e4"], ["noise_pred"]),
        ]
        inits = [w("K", 2, 2, 3, 3), w("P", 6, 2), numpy_helper.from_array(np.array([-1, 2, 1, 1], np.int64), "shape4")]
    ins, outs = SPECS[stage]
    vi = lambda n, dt, s: helper.make_tensor_value_info(n, TensorProto.INT64 if dt == "int64" else elem, list(s))
    graph = helper.make_graph(nodes, stage, [vi(*t) for t in ins], [vi(*t) for t in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tiny-bundle")
    model.ir_version = 8
    return model


def write_tiny_bundle(folder: str | Path, *, seed: int = 0, uint8_inside: bool = False,
                      computed_axes: bool = False) -> Manifest:
    """``uint8_inside``: the encoder graph holds a uint8 tensor (a graph TensorRT's parser refuses).
    ``computed_axes``: the prior's Unsqueeze axes are computed (refused by TensorRT before 10.7 only)."""
    import pytest

    onnx = pytest.importorskip("onnx", reason="writing ONNX graphs needs onnx (the export extra)")
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    artifacts = []
    for stage, precisions in (("encoder", ("fp32",)), ("prior", ("fp32", "fp16")), ("unet", ("fp32", "fp16"))):
        for prec in precisions:
            dtype = np.dtype(np.float16 if prec == "fp16" else np.float32)
            model = _graph(stage, dtype, rng, uint8_inside, computed_axes)
            name = f"{stage}.onnx" if prec == "fp32" else f"{stage}.fp16.onnx"
            data_name = None
            if stage == "unet" and prec == "fp32":  # one model with external weights, like the real UNet
                data_name = name + ".data"
                onnx.save(model, folder / name, save_as_external_data=True, all_tensors_to_one_file=True,
                          location=data_name, size_threshold=100)  # fmt: skip
            else:
                onnx.save(model, folder / name)
            ins, outs = SPECS[stage]
            spec = lambda n, dt, s: TensorSpec(n, "int64" if dt == "int64" else dtype.name, tuple(s))
            artifacts.append(
                Artifact(
                    stage=stage,
                    precision=Precision(prec),
                    file=name,
                    sha256=sha256_file(folder / name),
                    size_bytes=(folder / name).stat().st_size,
                    inputs=tuple(spec(*t) for t in ins),
                    outputs=tuple(spec(*t) for t in outs),
                    data_file=data_name,
                    data_sha256=sha256_file(folder / data_name) if data_name else None,
                )
            )
    save_file({"uncond_embeds": np.zeros((2, 6), np.float32)}, str(folder / "constants.safetensors"))
    manifest = Manifest(
        backend=Backend.ONNX,
        artifacts=tuple(artifacts),
        constants_file="constants.safetensors",
        constants_sha256=sha256_file(folder / "constants.safetensors"),
        eeg=EEGInfo(channels=("C1", "C2", "C3", "C4"), n_times=8),
        bundle=BundleSettings(axes=AXES, max_batch=4, image_size=16, opset=17, num_subjects=2),
        libraries={"onnx": onnx.__version__},
    )
    write_manifest(folder, manifest)
    return manifest


def sample_feeds(artifact: Artifact, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = {"batch": batch, "batch2": 2 * batch}
    feeds = {}
    for t in artifact.inputs:
        shape = tuple(sizes[d] if isinstance(d, str) else d for d in t.shape)
        if t.dtype == "int64":
            feeds[t.name] = rng.integers(0, 1000, size=shape).astype(np.int64)
        else:
            feeds[t.name] = rng.standard_normal(shape).astype(t.dtype)
    return feeds


def run_onnx(path: str | Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))
