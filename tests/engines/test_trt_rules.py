"""TensorRT's ONNX parser rules (engines/trt_rules.py): the toolkit's graphs pass them, graphs that break one fail.

Each counterfactual graph breaks one rule the real parser enforces (onnx-tensorrt 10.1: the operator table,
ModelImporter's uint8 rule, the importers' type/attribute/constant checks) and has a twin that keeps it, so
a rule that never fires, or fires on everything, fails here.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from eeg2img_deploy.engines.build import check_for_tensorrt  # noqa: E402
from eeg2img_deploy.engines.trt_rules import check_model, check_onnx_file, check_profile  # noqa: E402
from eeg2img_deploy.manifest import ShapeRange, read_manifest  # noqa: E402

F32, U8, I64 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT64


def _model(nodes, inputs, outputs, inits=(), opset=18):
    vi = lambda n, t, s: helper.make_tensor_value_info(n, t, s)
    graph = helper.make_graph(nodes, "g", [vi(*i) for i in inputs], [vi(*o) for o in outputs], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _rules(model) -> list[tuple[str, str, bool]]:
    return [(v.where, v.rule, v.refused) for v in check_model(model, "g.onnx")]


def test_every_graph_of_the_tiny_bundle_passes(tiny_bundle) -> None:
    """Every artifact of the bundle: fp32 and fp16, the fused prior per step count, low-level and caption stages."""
    manifest = read_manifest(tiny_bundle)
    stages = {a.stage for a in manifest.artifacts}
    assert {"prior_sampler", "low_level_encoder", "vae_encoder", "caption_prefill", "caption_decoder"} <= stages
    assert {a.precision.value for a in manifest.artifacts} == {"fp32", "fp16"}
    found = [v.line() for a in manifest.artifacts for v in check_onnx_file(tiny_bundle / a.file)]
    assert found == []
    # and what a build uses, with each preset's profile (jetson-orin: static batch)
    for preset, precision in (("workstation", None), ("workstation", "fp32"), ("jetson-orin", "fp16")):
        assert [v.line() for v in check_for_tensorrt(tiny_bundle, preset=preset, precision=precision)] == []


def test_uint8_only_at_the_network_outputs() -> None:
    """The decoders' old ending (Round -> Cast(uint8) -> Transpose) is refused; the Cast as the last node is not."""
    x, y = ("x", F32, [1, 3, 4, 4]), ("images", U8, [1, 4, 4, 3])
    old = _model([helper.make_node("Round", ["x"], ["r"]), helper.make_node("Cast", ["r"], ["u"], to=U8, name="cast"),
                  helper.make_node("Transpose", ["u"], ["images"], perm=[0, 2, 3, 1], name="nhwc")], [x], [y])
    assert _rules(old) == [("node cast (Cast)", "uint8 intermediate", True),
                           ("node nhwc (Transpose)", "data type", True)]  # fmt: skip
    new = _model([helper.make_node("Round", ["x"], ["r"]), helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 3, 1]),
                  helper.make_node("Cast", ["t"], ["images"], to=U8)], [x], [y])  # fmt: skip
    assert _rules(new) == []
    # a uint8 network input is fine when the first node casts it
    assert _rules(_model([helper.make_node("Cast", ["u"], ["y"], to=F32)], [("u", U8, [2])], [("y", F32, [2])])) == []


def test_operators_data_types_attributes_and_constant_inputs() -> None:
    x = ("x", F32, [2, 3])
    ok = _model([helper.make_node("Unsqueeze", ["x", "ax"], ["y"])], [x], [("y", F32, [2, 1, 3])],
                [numpy_helper.from_array(np.array([1], np.int64), "ax")])  # fmt: skip
    assert _rules(ok) == []
    computed_axes = _model([helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Slice", ["s", "a", "b"], ["ax"]),
                            helper.make_node("Unsqueeze", ["x", "ax"], ["y"], name="u")], [x], [("y", F32, None)],
                           [numpy_helper.from_array(np.array([0], np.int64), "a"),
                            numpy_helper.from_array(np.array([1], np.int64), "b")])  # fmt: skip
    assert _rules(computed_axes) == [("node u (Unsqueeze)", "constant input", True)]

    int_matmul = _model([helper.make_node("MatMul", ["a", "b"], ["c"], name="mm")], [("a", I64, [2, 2]), ("b", I64, [2, 2])],
                        [("c", I64, [2, 2])])  # fmt: skip
    assert _rules(int_matmul) == [("node mm (MatMul)", "data type", True)] * 2
    assert _rules(_model([helper.make_node("MatMul", ["x", "w"], ["c"])], [x], [("c", F32, [2, 2])],
                         [numpy_helper.from_array(np.ones((3, 2), np.float32), "w")])) == []  # fmt: skip

    unique = _model([helper.make_node("Unique", ["x"], ["y"], name="uq")], [x], [("y", F32, None)])
    assert _rules(unique) == [("node uq (Unique)", "unsupported operator", True)]
    contrib = _model([helper.make_node("FastGelu", ["x"], ["y"], domain="com.microsoft", name="fg")], [x], [("y", F32, [2, 3])])
    contrib.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    assert _rules(contrib) == [("node fg (FastGelu)", "unsupported operator", True)]

    img = ("img", F32, [1, 3, 8, 8])
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "sc")
    resize = lambda **kw: _model([helper.make_node("Resize", ["img", "", "sc"], ["y"], name="rs", **kw)], [img],
                                 [("y", F32, [1, 3, 16, 16])], [scales])  # fmt: skip
    assert _rules(resize(mode="linear")) == []
    assert _rules(resize(mode="linear", antialias=1)) == [("node rs (Resize)", "unsupported attribute", True)]
    assert _rules(resize(coordinate_transformation_mode="half_pixel_symmetric")) == [
        ("node rs (Resize)", "unsupported attribute", True)]

    ln = lambda outs: _model([helper.make_node("LayerNormalization", ["x", "s", "b"], outs, name="ln")], [x],
                             [(o, F32, None) for o in outs if o],
                             [numpy_helper.from_array(np.ones(3, np.float32), n) for n in "sb"])  # fmt: skip
    assert _rules(ln(["y"])) == []
    assert _rules(ln(["y", "mean"])) == [("node ln (LayerNormalization)", "unsupported attribute", True)]

    to16 = _model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.UINT16, name="c")], [x],
                  [("y", TensorProto.UINT16, [2, 3])])  # fmt: skip
    assert ("node c (Cast)", "unsupported attribute", True) in _rules(to16)
    assert ("output y", "data type", True) in _rules(to16)


def test_subgraphs_are_checked_and_narrowing_is_reported_not_refused() -> None:
    then = helper.make_graph([helper.make_node("Cast", ["x"], ["u"], to=U8, name="inner"),
                              helper.make_node("Cast", ["u"], ["t"], to=F32)], "then", [],
                             [helper.make_tensor_value_info("t", F32, [2])])  # fmt: skip
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", F32, [2])])  # fmt: skip
    model = _model([helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other, name="if")],
                   [("c", TensorProto.BOOL, []), ("x", F32, [2])], [("y", F32, [2])])  # fmt: skip
    found = check_model(model, "g.onnx")
    assert [(v.graph, v.where, v.rule) for v in found] == [("g.onnx [if then_branch]", "node inner (Cast)", "uint8 intermediate")]

    # a branch's own output is not a network output: uint8 there is refused too
    then8 = helper.make_graph([helper.make_node("Cast", ["x"], ["u"], to=U8, name="inner")], "then", [],
                              [helper.make_tensor_value_info("u", U8, [2])])  # fmt: skip
    else8 = helper.make_graph([helper.make_node("Cast", ["x"], ["e"], to=U8)], "else", [],
                              [helper.make_tensor_value_info("e", U8, [2])])  # fmt: skip
    model8 = _model([helper.make_node("If", ["c"], ["y"], then_branch=then8, else_branch=else8, name="if")],
                    [("c", TensorProto.BOOL, []), ("x", F32, [2])], [("y", U8, [2])])  # fmt: skip
    assert sorted((v.graph, v.rule) for v in check_model(model8, "g.onnx")) == [
        ("g.onnx [if else_branch]", "uint8 intermediate"), ("g.onnx [if then_branch]", "uint8 intermediate")]

    double = _model([helper.make_node("Cast", ["d"], ["y"], to=F32)], [("d", TensorProto.DOUBLE, [2])], [("y", F32, [2])])
    assert _rules(double) == [("input d", "narrowed", False)]


def test_profile_rules() -> None:
    model = _model([helper.make_node("Identity", ["x"], ["y"])], [("x", F32, ["batch", 4])], [("y", F32, ["batch", 4])])
    assert check_profile(model, "g.onnx", {"x": ShapeRange((1, 4), (2, 4), (4, 4))}) == []
    assert [v.message for v in check_profile(model, "g.onnx", {"x": ShapeRange((1, 5), (2, 5), (4, 5))})] == [
        "axis 1 is 4 in the graph but 5/5/5 (min/opt/max) in the profile"]
    assert [v.rule for v in check_profile(model, "g.onnx", {"x": ShapeRange((0, 4), (2, 4), (4, 4))})] == ["profile"]
    assert [v.where for v in check_profile(model, "g.onnx", {})] == ["input x"]


# ---- build-engines: --check, the check before a build, and the fake TensorRT's parser ---------------------------
def test_check_lists_each_finding_and_exits_2_without_tensorrt(tmp_path, monkeypatch, capsys) -> None:
    from fakes import remove_tensorrt
    from fakes.onnx_bundle import write_tiny_bundle
    from support import run_main

    remove_tensorrt(monkeypatch)  # --check needs no TensorRT
    write_tiny_bundle(tmp_path / "ok")
    code, out, err = run_main(monkeypatch, capsys, ["build-engines", "--bundle", tmp_path / "ok", "--check"])
    assert code == 0 and "passes TensorRT's parser rules" in out, (out, err)

    write_tiny_bundle(tmp_path / "bad", uint8_inside=True)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(monkeypatch, capsys, ["build-engines", "--bundle", tmp_path / "bad", "--check"])
    assert code == 2
    assert [line.split(": ")[:3] for line in out.splitlines()] == [
        ["encoder.onnx", "node to_uint8 (Cast)", "uint8 intermediate"]]
    assert err.strip() == "error: 1 finding(s) in 1 graph(s), one per line above"
    assert not (tmp_path / "engines").exists()

    code, out, err = run_main(monkeypatch, capsys, ["build-engines", "--bundle", tmp_path / "ok", "--check",
                                                    "--backend", "onnxruntime"])  # fmt: skip
    assert code == 2 and out == "" and "--backend onnxruntime" in err


def test_a_build_stops_before_the_first_engine_and_the_fake_parser_refuses_too(tmp_path, fake_gpu) -> None:
    from fakes.onnx_bundle import write_tiny_bundle

    from eeg2img_deploy.engines.build import build_engines
    from eeg2img_deploy.engines.tensorrt_builder import BuildOptions, build_engine
    from eeg2img_deploy.errors import EngineError

    write_tiny_bundle(tmp_path / "bad", uint8_inside=True)
    with pytest.raises(EngineError, match=r"TensorRT would refuse this bundle .*encoder\.onnx: node to_uint8 \(Cast\)"):
        build_engines(tmp_path / "bad", tmp_path / "engines", backend="tensorrt", progress=False)
    assert not (tmp_path / "engines").exists()

    # without the check in front, TensorRT's (here: the fake's) parser is what refuses it
    profile = {"eeg": ShapeRange((1, 4, 8), (1, 4, 8), (4, 4, 8))}
    with pytest.raises(EngineError, match=r"could not parse .*node to_uint8 \(Cast\): uint8 intermediate"):
        build_engine(tmp_path / "bad" / "encoder.onnx", tmp_path / "e.plan", stage="encoder", profile=profile,
                     options=BuildOptions(progress=False))  # fmt: skip
    assert not (tmp_path / "e.plan").exists()
