"""TensorRT's ONNX parser rules (engines/trt_rules.py): the toolkit's graphs pass them, graphs that break one fail.

Each counterfactual graph breaks one rule the real parser enforces (onnx-tensorrt 10.1: the operator table,
ModelImporter's uint8 rule, the importers' type/attribute/constant checks) and has a twin that keeps it, so
a rule that never fires, or fires on everything, fails here. Each versioned rule fires for the TensorRT
versions before the one that lifted it and for none from that one on.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from eeg2img_deploy.engines.build import check_for_tensorrt  # noqa: E402
from eeg2img_deploy.engines.trt_rules import check_model, check_profile, parse_version  # noqa: E402
from eeg2img_deploy.manifest import ShapeRange, read_manifest  # noqa: E402

F32, U8, I64 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT64
USERS = ((10, 3), (10, 13), (10, 15))  # JetPack 6, JetPack 7, the newest 10.x


def _model(nodes, inputs, outputs, inits=(), opset=18):
    vi = lambda n, t, s: helper.make_tensor_value_info(n, t, s)
    graph = helper.make_graph(nodes, "g", [vi(*i) for i in inputs], [vi(*o) for o in outputs], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _rules(model, version=(10, 3)) -> list[tuple[str, str, bool]]:
    return [(v.where, v.rule, v.refused) for v in check_model(model, "g.onnx", version)]


def test_every_graph_of_the_tiny_bundle_passes(tiny_bundle) -> None:
    """Every artifact of the bundle (fp32 and fp16, the fused prior per step count, low-level and caption stages),
    for every TensorRT users run."""
    manifest = read_manifest(tiny_bundle)
    stages = {a.stage for a in manifest.artifacts}
    assert {"prior_sampler", "low_level_encoder", "vae_encoder", "caption_prefill", "caption_decoder"} <= stages
    assert {a.precision.value for a in manifest.artifacts} == {"fp32", "fp16"}
    models = {a.file: onnx.load(str(tiny_bundle / a.file), load_external_data=False) for a in manifest.artifacts}
    found = [(version, v.line()) for version in USERS for f, m in models.items() for v in check_model(m, f, version)]
    assert found == []
    # and what a build uses, with each preset's profile (jetson-orin: static batch) for the TensorRT it runs
    for preset, precision, version in (("workstation", None, (10, 15)), ("workstation", "fp32", (10, 13)),
                                       ("jetson-orin", "fp16", (10, 3))):  # fmt: skip
        assert [v.line() for v in check_for_tensorrt(tiny_bundle, preset=preset, precision=precision,
                                                     version=version)] == []  # fmt: skip


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


# ---- rules that depend on the TensorRT version ---------------------------------------------------------------------
def _init(name, values, dtype=np.int64):
    return numpy_helper.from_array(np.array(values, dtype), name)


def _axes_through(op, x, consumer):
    """``consumer`` with its axes input computed by ``op`` nodes: from constants only, or from x's dynamic shape."""
    if op == "constants":
        return [helper.make_node("Identity", ["ax0"], ["ax"])] + consumer, [_init("ax0", [1])]
    return [helper.make_node("Shape", [x], ["s"]), helper.make_node("Slice", ["s", "a", "b"], ["d"]),
            helper.make_node("Sub", ["d", "d"], ["ax"])] + consumer, [_init("a", [0]), _init("b", [1])]  # fmt: skip


def _versioned_cases():
    """(what, graph, the finding, the first version without it); the twins that never fire are in the test."""
    x = ("x", F32, [2, 1, 3])
    unsq = [helper.make_node("Unsqueeze", ["x", "ax"], ["y"], name="n")]
    sq = [helper.make_node("Squeeze", ["x", "ax"], ["y"], name="n")]
    cases = []
    for op, nodes in (("Unsqueeze", unsq), ("Squeeze", sq)):
        const_nodes, const_inits = _axes_through("constants", "x", nodes)
        cases.append((f"{op} axes from constants", _model(const_nodes, [x], [("y", F32, None)], const_inits),
                       ("node n (" + op + ")", "constant input", True), (10, 7)))
    cumsum = _model([helper.make_node("Identity", ["ax0"], ["ax"]), helper.make_node("CumSum", ["x", "ax"], ["y"], name="n")],
                    [x], [("y", F32, [2, 1, 3])], [_init("ax0", 0)])  # fmt: skip
    cases.append(("CumSum axis from a constant", cumsum, ("node n (CumSum)", "constant input", True), (10, 8)))
    slice_ = _model([helper.make_node("Identity", ["ax0"], ["ax"]), helper.make_node("Slice", ["x", "st", "en", "ax"], ["y"], name="n")],
                    [x], [("y", F32, None)], [_init("ax0", [2]), _init("st", [0]), _init("en", [2])])  # fmt: skip
    cases.append(("Slice axes from a constant", slice_, ("node n (Slice)", "constant input", True), (10, 3)))
    pad = _model([helper.make_node("Identity", ["ax0"], ["ax"]), helper.make_node("Pad", ["x", "p", "", "ax"], ["y"], name="n")],
                 [x], [("y", F32, None)], [_init("ax0", [2]), _init("p", [1, 1])])  # fmt: skip
    cases.append(("Pad axes from a constant", pad, ("node n (Pad)", "constant input", True), (10, 4)))
    scatter = lambda **kw: _model([helper.make_node("ScatterND", ["x", "i", "u"], ["y"], name="n", **kw)], [x],
                                  [("y", F32, [2, 1, 3])], [_init("i", [[0]]), _init("u", np.ones((1, 1, 3)), np.float32)])  # fmt: skip
    cases.append(("ScatterND reduction='none'", scatter(reduction="none"), ("node n (ScatterND)", "unsupported attribute", True), (10, 9)))
    pow_ = lambda base, exp: _model([helper.make_node("Pow", ["b", "e"], ["y"], name="n")], [("b", base, [2]), ("e", exp, [2])],
                                    [("y", base, [2])])  # fmt: skip
    cases.append(("Pow of an int64 base", pow_(I64, I64), ("node n (Pow)", "data type", True), (10, 12)))
    cases.append(("Pow with an int64 exponent", pow_(F32, I64), ("node n (Pow)", "data type", True), (10, 8)))
    einsum = lambda eq, shape: _model([helper.make_node("Einsum", ["m"], ["y"], equation=eq, name="n")], [("m", F32, shape)],
                                      [("y", F32, None)])  # fmt: skip
    cases.append(("Einsum diagonal", einsum("ii->i", [3, 3]), ("node n (Einsum)", "unsupported attribute", True), (10, 12)))
    size = [_init("n0", 8)]
    for op, since in (("HannWindow", (10, 4)), ("BlackmanWindow", (10, 4)), ("HammingWindow", (10, 4))):
        g = _model([helper.make_node(op, ["n0"], ["y"], name="n")], [], [("y", F32, [8])], size, opset=17)
        cases.append((op, g, (f"node n ({op})", "unsupported operator", True), since))
    stft = _model([helper.make_node("STFT", ["sig", "step", "", "len"], ["y"], name="n")], [("sig", F32, [1, 64, 1])],
                  [("y", F32, None)], [_init("step", 8), _init("len", 16)], opset=17)  # fmt: skip
    cases.append(("STFT", stft, ("node n (STFT)", "unsupported operator", True), (10, 5)))
    q = ("q", F32, [1, 2, 4, 8])
    attention = _model([helper.make_node("Attention", ["q", "k", "v"], ["y"], name="n")], [q, ("k", F32, [1, 2, 4, 8]),
                       ("v", F32, [1, 2, 4, 8])], [("y", F32, [1, 2, 4, 8])], opset=23)  # fmt: skip
    cases.append(("Attention", attention, ("node n (Attention)", "unsupported operator", True), (10, 14)))
    rms = _model([helper.make_node("RMSNormalization", ["x", "sc"], ["y"], name="n")], [x], [("y", F32, [2, 1, 3])],
                 [_init("sc", np.ones(3), np.float32)], opset=23)  # fmt: skip
    cases.append(("RMSNormalization", rms, ("node n (RMSNormalization)", "unsupported operator", True), (10, 15)))
    return cases


@pytest.mark.parametrize("case", _versioned_cases(), ids=lambda c: c[0])
def test_each_versioned_rule_fires_before_its_version_and_not_from_it(case) -> None:
    what, model, finding, since = case
    before = (since[0], since[1] - 1)
    versions = sorted({(10, 1), before, since, *USERS, (11, 4)})
    fired = {v: finding in _rules(model, v) for v in versions}
    assert fired == {v: v < since for v in versions}, what
    assert [f for v in versions if v >= since for f in _rules(model, v)] == [], what  # nothing else fires either


def test_twins_of_the_versioned_rules() -> None:
    """What stays refused from every version on, and what every version takes."""
    x, xd = ("x", F32, [2, 1, 3]), ("x", F32, ["batch", 1, 3])
    # axes computed from a dynamic dimension: the parser refuses them before 10.7, the builder cannot fold them after
    nodes, inits = _axes_through("shape", "x", [helper.make_node("Unsqueeze", ["x", "ax"], ["y"], name="n")])
    dynamic = _model(nodes, [xd], [("y", F32, None)], inits)
    assert _rules(dynamic, (10, 3)) == [("node n (Unsqueeze)", "constant input", True)]
    for version in USERS[1:]:
        assert _rules(dynamic, version) == [("node n (Unsqueeze)", "constant input", False)]  # the builder's, not the parser's
    assert "builder needs it foldable" in check_model(dynamic, "g.onnx", (10, 13))[0].message
    # the same graph on a static shape folds: Shape of static dims is a build-time constant
    static = _model(nodes, [x], [("y", F32, None)], inits)
    assert [_rules(static, v) for v in USERS] == [[("node n (Unsqueeze)", "constant input", True)], [], []]
    # ScatterND reduction other than none: refused everywhere; Einsum without a diagonal: taken everywhere
    scatter_add = _model([helper.make_node("ScatterND", ["x", "i", "u"], ["y"], name="n", reduction="add")], [x],
                         [("y", F32, [2, 1, 3])], [_init("i", [[0]]), _init("u", np.ones((1, 1, 3)), np.float32)])  # fmt: skip
    assert [_rules(scatter_add, v) for v in USERS] == [[("node n (ScatterND)", "unsupported attribute", True)]] * 3
    matmul = _model([helper.make_node("Einsum", ["a", "b"], ["y"], equation="ij,jk->ik", name="n")],
                    [("a", F32, [2, 3]), ("b", F32, [3, 4])], [("y", F32, [2, 4])])  # fmt: skip
    assert [_rules(matmul, v) for v in USERS] == [[], [], []]
    # an Attention node with a KV cache input: supported from 10.14, but not with past_key
    cache = _model([helper.make_node("Attention", ["q", "k", "v", "", "pk", "pv"], ["y"], name="n")],
                   [(n, F32, [1, 2, 4, 8]) for n in ("q", "k", "v", "pk", "pv")], [("y", F32, None)], opset=23)  # fmt: skip
    assert _rules(cache, (10, 15)) == [("node n (Attention)", "unsupported attribute", True)] * 2


def test_versions_are_read_as_tensorrt_writes_them() -> None:
    assert [parse_version(t) for t in ("10.3", "10.3.0.26", " 10.13.3.9", "11.4")] == [(10, 3), (10, 3), (10, 13), (11, 4)]
    for bad in ("ten", "10", "10.x", "8.6.1", "10.0"):
        with pytest.raises(ValueError):
            parse_version(bad)


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
    assert code == 0 and "passes TensorRT 10.3's parser rules" in out, (out, err)  # no TensorRT: the default

    write_tiny_bundle(tmp_path / "bad", uint8_inside=True)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(monkeypatch, capsys, ["build-engines", "--bundle", tmp_path / "bad", "--check"])
    assert code == 2
    assert [line.split(": ")[:3] for line in out.splitlines()] == [
        ["encoder.onnx", "node to_uint8 (Cast)", "uint8 intermediate"]]
    assert err.strip() == "error: 1 finding(s) in 1 graph(s) for TensorRT 10.3, one per line above"
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
    with pytest.raises(EngineError, match=r"TensorRT 10\.3 would refuse this bundle .*encoder\.onnx: node to_uint8 \(Cast\)"):
        build_engines(tmp_path / "bad", tmp_path / "engines", backend="tensorrt", progress=False)
    assert not (tmp_path / "engines").exists()

    # without the check in front, TensorRT's (here: the fake's) parser is what refuses it
    profile = {"eeg": ShapeRange((1, 4, 8), (1, 4, 8), (4, 4, 8))}
    with pytest.raises(EngineError, match=r"could not parse .*node to_uint8 \(Cast\): uint8 intermediate"):
        build_engine(tmp_path / "bad" / "encoder.onnx", tmp_path / "e.plan", stage="encoder", profile=profile,
                     options=BuildOptions(progress=False))  # fmt: skip
    assert not (tmp_path / "e.plan").exists()


def test_check_names_the_tensorrt_it_checks_for(tmp_path, monkeypatch, capsys) -> None:
    """--tensorrt-version, else the preset's target, else the installed TensorRT; a bad value names the option."""
    from fakes import install_fake_gpu
    from fakes.onnx_bundle import write_tiny_bundle
    from support import run_main

    write_tiny_bundle(tmp_path / "b", computed_axes=True)  # refused by TensorRT before 10.7 only
    check = ["build-engines", "--bundle", tmp_path / "b", "--check"]
    install_fake_gpu(monkeypatch, version="10.13.3.9")
    code, out, err = run_main(monkeypatch, capsys, check)
    assert code == 0 and "passes TensorRT 10.13's parser rules" in out, (out, err)
    code, out, err = run_main(monkeypatch, capsys, [*check, "--preset", "jetson-orin"])  # JetPack 6: TensorRT 10.3
    assert code == 2 and "constant input" in out and "TensorRT 10.3's parser" in out, (out, err)
    code, out, err = run_main(monkeypatch, capsys, [*check, "--tensorrt-version", "10.3"])
    assert code == 2 and err.strip().endswith("for TensorRT 10.3, one per line above"), (out, err)
    code, out, err = run_main(monkeypatch, capsys, [*check, "--preset", "jetson-orin", "--tensorrt-version", "10.7"])
    assert code == 0 and "TensorRT 10.7's" in out, (out, err)

    code, out, err = run_main(monkeypatch, capsys, [*check, "--tensorrt-version", "8.6"])
    assert code == 2 and out == "" and "--tensorrt-version" in err and "10.1 and later" in err, err
    code, out, err = run_main(monkeypatch, capsys, ["build-engines", "--bundle", tmp_path / "b", "--tensorrt-version", "10.3"])
    assert code == 2 and "add --check" in err and not (tmp_path / "engines").exists(), err


def test_a_build_checks_for_the_installed_tensorrt(tmp_path, monkeypatch) -> None:
    """The same bundle: TensorRT 10.3 stops before the first engine, 10.13 builds it (its parser takes the axes)."""
    from fakes import install_fake_gpu
    from fakes.onnx_bundle import write_tiny_bundle

    from eeg2img_deploy.engines.build import build_engines
    from eeg2img_deploy.errors import EngineError

    write_tiny_bundle(tmp_path / "b", computed_axes=True)
    install_fake_gpu(monkeypatch, version="10.3.0")
    with pytest.raises(EngineError, match=r"TensorRT 10\.3 would refuse .*prior\.fp16\.onnx: node #2 \(Unsqueeze\): constant input"):
        build_engines(tmp_path / "b", tmp_path / "e3", backend="tensorrt", progress=False)
    assert not (tmp_path / "e3").exists()

    state = install_fake_gpu(monkeypatch, version="10.13.0")
    manifest = build_engines(tmp_path / "b", tmp_path / "e13", backend="tensorrt", progress=False)
    assert "prior" in {a.stage for a in manifest.artifacts} and state.violations == []


def test_a_build_without_onnx_stops_with_one_line(tmp_path, monkeypatch, capsys) -> None:
    """The TensorRT extras install onnx; an environment made by hand without it is told so, before any engine."""
    import sys

    from fakes import install_fake_gpu
    from fakes.onnx_bundle import write_tiny_bundle
    from support import run_main

    write_tiny_bundle(tmp_path / "b")
    install_fake_gpu(monkeypatch)
    monkeypatch.setitem(sys.modules, "onnx", None)
    code, out, err = run_main(monkeypatch, capsys, ["build-engines", "--bundle", tmp_path / "b", "--out", tmp_path / "e"])
    assert code == 2 and "onnx is not installed" in err and "pip install onnx" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "e").exists()
