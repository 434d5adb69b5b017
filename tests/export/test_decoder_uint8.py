"""The decoder graphs emit uint8 NHWC images, byte for byte what the runtime made of the float image before."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from eeg2img_deploy.export.onnx_io import export_onnx, ort_session
from eeg2img_deploy.export.spec import StageExport
from eeg2img_deploy.manifest import Precision, TensorSpec, read_manifest
from eeg2img_deploy.core.images import to_uint8


def _float_decoder_graph(vae, scale: float, spec_in: TensorSpec, precision: Precision, path):
    """The decoder as it was exported before: [-1, 1] float images, NCHW (the runtime converted them)."""

    class FloatDecoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vae = vae

        def forward(self, latents):
            return self.vae.decode(latents / scale, return_dict=False)[0]

    module = FloatDecoder().eval()
    stage = StageExport("float_decoder", module, (spec_in,), (TensorSpec("image", "float32", ("batch", 3, "h", "w")),),
                        make_inputs=lambda b, rng: {})
    example = {"latents": np.zeros((2, *spec_in.shape[1:]), np.float32)}
    if precision is Precision.FP16:
        module.half()
    try:
        export_onnx(stage, precision, path, example)
    finally:
        module.float()
    return ort_session(path)


@pytest.mark.parametrize("stage, precision", [("vae_decoder", "fp32"), ("taesd_decoder", "fp32"), ("taesd_decoder", "fp16")])
def test_uint8_images_equal_the_runtime_conversion_of_the_float_graph(tiny_bundle, reference_pipe, tmp_path, stage, precision):
    m = read_manifest(tiny_bundle)
    a = m.artifact(stage, precision)
    size = m.bundle.image_size
    assert [(t.name, t.dtype, tuple(t.shape)) for t in a.outputs] == [("images", "uint8", ("batch", size, size, 3))]
    vae = reference_pipe.sdxl.vae if stage == "vae_decoder" else reference_pipe.taesd
    scale = float(vae.config.scaling_factor) if stage == "vae_decoder" else 1.0
    old = _float_decoder_graph(vae, scale, a.inputs[0], Precision(precision), tmp_path / "float.onnx")
    new = ort_session(tiny_bundle / a.file)
    rng = np.random.default_rng(3)
    latents = rng.standard_normal((3, *a.inputs[0].shape[1:]), dtype=np.float32) * 1.5  # some pixels saturate
    feeds = {"latents": latents.astype(a.inputs[0].dtype)}
    want = to_uint8(old.run(None, feeds)[0].astype(np.float32))
    got = new.run(None, feeds)[0]
    assert got.dtype == np.uint8 and got.shape == (3, size, size, 3)
    if precision == "fp32":
        np.testing.assert_array_equal(got, want)
    else:
        # onnxruntime's CPU provider has no fp16 kernels: it runs fp16 nodes in fp32 between Casts, and with
        # the graph's own fp32 Cast at the end it drops the last fp16 rounding the old output had. Providers
        # with fp16 kernels (CUDA, TensorRT) round there as before.
        diff = np.abs(got.astype(int) - want)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())
    # not trivially equal: the images use the whole range and differ between samples
    assert got.min() == 0 and got.max() == 255 and np.abs(got[0].astype(int) - got[1]).mean() > 10


def _uint8_tensors(model) -> set[str]:
    """Every tensor of ``model``'s main graph that is uint8: initializers, Constant and Cast outputs, and what
    shape inference finds for the rest."""
    from onnx import TensorProto

    uint8 = TensorProto.UINT8
    g = onnx.shape_inference.infer_shapes(model).graph
    found = {t.name for t in g.initializer if t.data_type == uint8}
    found |= {v.name for v in [*g.value_info, *g.input, *g.output] if v.type.tensor_type.elem_type == uint8}
    for node in g.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Cast" and attrs["to"].i == uint8:
            found.update(node.output)
        if node.op_type == "Constant" and "value" in attrs and attrs["value"].t.data_type == uint8:
            found.update(node.output)
    return found


def test_uint8_only_at_graph_inputs_and_outputs(tiny_bundle):
    """TensorRT's ONNX parser refuses uint8 intermediate tensors (uint8 only at network inputs/outputs):
    every uint8 tensor of every graph must be one of the graph's inputs or outputs."""
    m = read_manifest(tiny_bundle)
    seen = 0
    for a in m.artifacts:
        model = onnx.load(str(tiny_bundle / a.file), load_external_data=False)
        io = {v.name for v in [*model.graph.input, *model.graph.output]}
        uint8 = _uint8_tensors(model)
        assert uint8 <= io, f"{a.file}: uint8 inside the graph: {sorted(uint8 - io)}"
        seen += bool(uint8)
    assert seen >= 3  # vae_decoder, taesd_decoder fp32 and fp16 do end in uint8 images
