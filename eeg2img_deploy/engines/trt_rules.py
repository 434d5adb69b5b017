"""TensorRT's ONNX parser rules as data, checked without TensorRT (``build-engines --check``).

TensorRT refuses some graphs that onnxruntime runs: operators it has no importer for, data types an
operator or an intermediate tensor cannot have, attributes it does not implement, inputs it needs as
build-time constants. This module writes those rules down and walks a graph against them, so the
suite (and a machine without TensorRT) finds such a graph before a GPU build does.

Where the rules come from (onnx-tensorrt, the parser TensorRT ships; our own code and wording): the
base rules are those of release 10.1: the operator support table (``docs/operators.md``: supported
operators and the data types of each), ``ModelImporter.cpp`` (uint8 only at network inputs and
outputs), ``importerUtils.cpp`` (``convertDtype``: the ONNX data types TensorRT maps; the element-wise,
unary and activation helpers' type checks), ``onnxOpCheckers.cpp`` and ``onnxOpImporters.cpp`` (the
attribute and constant-input checks). Where the importer source and the table disagree, the source
decides (noted at the row).

The rules depend on the TensorRT version (:data:`Version`, e.g. ``(10, 3)``): later parsers import more
operators and take computed axes. Each versioned rule below names the version it changed in (the
release's entry in onnx-tensorrt's ``docs/Changelog.md``) and the sources it was checked in: the
release/10.1-GA tag (before), and the parser of TensorRT 10.13.0 (its ``parsers/onnx`` submodule commit
346bdca: ``onnxOpImporters.cpp``), ``docs/operators.md`` of 10.14 (c727277), 10.15 (fa5aa9f) and 10.16
(6bde659), ``importerUtils.cpp`` of 10.15 and TensorRT's own ``include/NvInfer.h`` at v10.3.0 and v10.13.0
(after). The 10.3 parser's own sources were not in reach: 10.3 is 10.1 plus the Changelog's 10.2 and 10.3
entries. Versions after 10.16 (TensorRT 11) are checked with the newest rules. Every versioned rule only
loosens with newer versions, so the oldest version users run, 10.3 (JetPack 6), is the strictest.

Each finding is a :class:`Violation`; ``refused`` ones are what the real parser refuses (the fake
TensorRT's parser in the tests fails on exactly those). The others are what ``--check`` also reports:
values TensorRT narrows (double computed as float, int64 indices cast to int32) and input shapes the
build's optimization profile does not cover.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..manifest import ShapeRange

# ---- versions --------------------------------------------------------------------------------------
Version = tuple[int, int]  # (major, minor) of TensorRT, whose parser is onnx-tensorrt of the same release
OLDEST: Version = (10, 1)  # the oldest parser these rules were checked against
DEFAULT_VERSION: Version = (10, 3)  # JetPack 6's TensorRT, the oldest users run: the strictest rules


def parse_version(text: str) -> Version:
    """``"10.3"``, ``"10.13.0.35"`` -> ``(10, 3)``, ``(10, 13)``; ValueError for anything else or before 10.1."""
    m = re.fullmatch(r"(\d+)\.(\d+)(\.\d+)*", text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a TensorRT version (like 10.3 or 10.13.0)")
    version = (int(m[1]), int(m[2]))
    if version < OLDEST:
        raise ValueError(f"TensorRT {text}: the parser rules are written for TensorRT {version_text(OLDEST)} and later")
    return version


def version_text(version: Version) -> str:
    return f"{version[0]}.{version[1]}"

# ---- data types ------------------------------------------------------------------------------------
# ONNX TensorProto element type -> our name of the TensorRT type it maps to (convertDtype). DOUBLE is
# computed as FLOAT (narrowed, clamped to +-FLT_MAX). Every other ONNX type has no TensorRT type at all.
_ONNX_TYPES = {1: "FP32", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FP16", 11: "DOUBLE",
               16: "BF16", 17: "FP8", 22: "INT4"}  # fmt: skip
_ONNX_TYPE_NAMES = {0: "UNDEFINED", 4: "UINT16", 5: "INT16", 8: "STRING", 12: "UINT32", 13: "UINT64",
                    14: "COMPLEX64", 15: "COMPLEX128", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2", 20: "FLOAT8E5M2FNUZ",
                    21: "UINT4", 23: "FLOAT4E2M1"}  # fmt: skip

F = frozenset({"FP32", "FP16", "BF16"})
INT = frozenset({"INT32", "INT64"})
B = frozenset({"BOOL"})
FI, FIB = F | INT, F | INT | B

# ---- the operator table --------------------------------------------------------------------------
# op -> the data types its "T" operands may have (``None``: TensorRT has no importer for it).
OP_TYPES: dict[str, frozenset[str] | None] = {
    **dict.fromkeys(
        ("Abs", "Add", "ArgMax", "ArgMin", "DepthToSpace", "Div", "Equal", "Greater", "GreaterOrEqual", "IsNaN", "Less",
         "LessOrEqual", "Max", "Min", "Mod", "Mul", "Neg", "Pad", "Range", "ReduceL1", "ReduceL2", "ReduceLogSum",
         "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare",
         "Scatter", "ScatterElements", "ScatterND", "Shrink", "Sign", "SpaceToDepth", "Sub", "Sum", "TopK"),
        FI),  # fmt: skip
    **dict.fromkeys(
        ("Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "AveragePool", "BatchNormalization", "Ceil", "Celu",
         "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum", "Dropout", "Einsum", "Elu", "Erf", "Exp", "Floor", "Gemm",
         "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "GroupNormalization", "GRU", "HardSigmoid",
         "HardSwish", "Hardmax", "ImageScaler", "IsInf", "LayerNormalization", "LeakyRelu", "Log", "LogSoftmax",
         "LRN", "LSTM", "LpNormalization", "LpPool", "MatMul", "MaxPool", "MeanVarianceNormalization",
         "ParametricSoftplus", "Pow", "PRelu", "QuantizeLinear", "RandomNormal", "RandomNormalLike", "RandomUniform",
         "RandomUniformLike", "Reciprocal", "Resize", "RNN", "Round", "ScaledTanh", "Scan", "Selu", "Sigmoid", "Sin",
         "Sinh", "Softmax", "Softplus", "Softsign", "Sqrt", "Tan", "Tanh", "ThresholdedRelu", "Upsample"),
        F),  # fmt: skip
    **dict.fromkeys(
        ("Concat", "Constant", "ConstantOfShape", "Expand", "EyeLike", "Flatten", "Gather", "GatherElements",
         "GatherND", "Identity", "If", "Loop", "OneHot", "Reshape", "ReverseSequence", "Shape", "Size", "Slice",
         "Split", "Squeeze", "Tile", "Transpose", "Trilu", "Unsqueeze", "Where"),
        FIB),  # fmt: skip
    **dict.fromkeys(("And", "Not", "Or", "Xor"), B),
    **dict.fromkeys(("Cast", "CastLike"), FIB | {"UINT8"}),
    **dict.fromkeys(("DeformConv", "GridSample", "Mish", "NonMaxSuppression", "NonZero", "RoiAlign"),
                    frozenset({"FP32", "FP16"})),  # fmt: skip
    "DequantizeLinear": frozenset({"INT8", "FP8", "INT4"}),
    "Mean": FI | {"FP8"},
    # the table lists INT8/INT32/INT64 for Gelu and INT32/INT64 for Relu, but the activation helper both
    # import through refuses INT32 (and BOOL, UINT8)
    "Gelu": F | {"INT8", "INT64"},
    "Relu": F | {"INT64"},
    # the table lists float types only; the importer takes INT32/INT64 through its element-wise path
    "Clip": FI,
    # the table lists BF16; the importer accepts FP32 and FP16 only (native InstanceNormalization)
    "InstanceNormalization": frozenset({"FP32", "FP16"}),
    # operators the table marks unsupported (no importer)
    **dict.fromkeys(
        ("AffineGrid", "Bernoulli", "BitShift", "BitwiseAnd", "BitwiseNot", "BitwiseOr", "BitwiseXor",
         "Col2Im", "CenterCropPad", "Compress", "ConcatFromSequence", "ConvInteger", "DFT", "Det",
         "DynamicQuantizeLinear", "ImageDecoder", "MatMulInteger", "MaxRoiPool", "MaxUnpool", "MelWeightMatrix",
         "Multinomial", "NegativeLogLikelihoodLoss", "Optional", "OptionalGetElement", "OptionalHasElement",
         "QLinearConv", "QLinearMatMul", "RegexFullMatch", "SequenceAt", "SequenceConstruct", "SequenceEmpty",
         "SequenceErase", "SequenceInsert", "SequenceLength",
         "SequenceMap", "SoftmaxCrossEntropyLoss", "SplitToSequence", "StringConcat", "StringNormalizer",
         "StringSplit", "TfIdfVectorizer", "Unique"),
        None),  # fmt: skip
}

# Operators later parsers import: op -> (the first version that does, the data types of its "T" operands).
ADDED_OPERATORS: dict[str, tuple[Version, frozenset[str]]] = {
    # Changelog 10.4 (10.1's table: N); operators.md 10.15: FP32, FP16 (the window they make)
    **dict.fromkeys(("BlackmanWindow", "HammingWindow", "HannWindow"), ((10, 4), frozenset({"FP32", "FP16"}))),
    # Changelog 10.5 "real-valued STFT" (10.1's table: N); 10.13.0 onnxOpImporters.cpp: FP32 signals only
    "STFT": ((10, 5), frozenset({"FP32"})),
    # Changelog 10.14 (no importer in 10.13.0's onnxOpImporters.cpp); operators.md 10.14: these types
    "Attention": ((10, 14), F | {"INT8", "FP8"}),
    # Changelog 10.15 (not in operators.md 10.14; in 10.15's with these types)
    "RMSNormalization": ((10, 15), F),
    "RotaryEmbedding": ((10, 15), F),
    "TensorScatter": ((10, 15), F | {"INT32"}),
}

# Operand types later parsers widened: (op, input index) -> (since, the types it takes from then on).
WIDENED_TYPES: dict[tuple[str, int], tuple[Version, frozenset[str]]] = {
    # Pow: 10.1's elementwiseCheck refuses integer operands; Changelog 10.8 "integer-typed exponent", 10.12
    # "integer-typed base"; 10.13.0's Pow importer computes mixed types in float, 10.15's elementwiseCheck
    # refuses only BOOL for POW and operators.md 10.14 lists INT32, INT64
    ("Pow", 0): ((10, 12), FI),
    ("Pow", 1): ((10, 8), FI),
}


def operator_types(op: str, version: Version) -> frozenset[str] | None:
    """The data types ``op``'s "T" operands may have in TensorRT ``version``; None: no importer."""
    if op in ADDED_OPERATORS:
        since, types = ADDED_OPERATORS[op]
        return types if version >= since else None
    return OP_TYPES[op]


# Which operands carry the typed "T" (the rest are indices, shapes, axes, conditions). Default: input 0.
_ALL = "all"
_OUT = "out"
T_OPERANDS: dict[str, Any] = {
    **dict.fromkeys(("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mean", "Sum", "Mod", "Equal", "Greater",
                     "GreaterOrEqual", "Less", "LessOrEqual", "And", "Or", "Xor", "Concat", "MatMul", "Gemm",
                     "Einsum", "Range", "PRelu", "Clip", "Conv", "ConvTranspose", "LayerNormalization",
                     "InstanceNormalization", "BatchNormalization", "GroupNormalization"), _ALL),  # fmt: skip
    "Where": (1, 2),
    "Scatter": (0, 2), "ScatterElements": (0, 2), "ScatterND": (0, 2),
    "Pad": (0, 2),
    "OneHot": (2,),
    "Constant": _OUT, "ConstantOfShape": _OUT, "RandomNormal": _OUT, "RandomUniform": _OUT,
    "Cast": (0, _OUT), "CastLike": (0, 1),
    "DequantizeLinear": (0,),
    "If": (), "Loop": (), "Scan": (),  # their bodies are checked node by node
    "BlackmanWindow": _OUT, "HammingWindow": _OUT, "HannWindow": _OUT,
    "Attention": (0, 1, 2), "TensorScatter": (0, 1),
}

@dataclass(frozen=True)
class ConstantInput:
    """An operand the parser needs as an initializer or a Constant node's output."""

    what: str
    until: Version | None = None  # from this version on the parser takes a tensor; None: every version needs it
    then_foldable: bool = False  # from ``until`` on the builder still needs a value it can fold at build time


# op -> {input index: the rule}
CONSTANT_INPUTS: dict[str, dict[int, ConstantInput]] = {
    # 10.1 importer: "does not support dynamic axes"; Changelog 10.3 "tensor axes inputs for Slice"; 10.13.0's
    # importer gives computed axes to the slice layer as its input 5
    "Slice": {3: ConstantInput("axes", until=(10, 3))},
    # 10.1 importer: "axes input is supported only as an initializer"; Changelog 10.4 "tensor axes for Pad";
    # 10.13.0's importer: the slice layer's input 5
    "Pad": {3: ConstantInput("axes", until=(10, 4))},
    # 10.1 importers: an initializer (Squeeze) / values known when parsed (Unsqueeze); Changelog 10.7 "dynamic
    # axes support for Squeeze and Unsqueeze"; 10.13.0's importers pass the axes tensor on, and NvInfer.h
    # v10.13.0 wants it "resolvable to a constant" (I(Un)SqueezeLayer input 1)
    "Squeeze": {1: ConstantInput("axes", until=(10, 7), then_foldable=True)},
    "Unsqueeze": {1: ConstantInput("axes", until=(10, 7), then_foldable=True)},
    # 10.1 importer: "Axis input for CumSum must be an initializer"; Changelog 10.8 "dynamic axes ... CumSum";
    # 10.13.0's importer passes the tensor on, and NvInfer.h v10.13.0's addCumulative wants "a build-time constant"
    "CumSum": {1: ConstantInput("axis", until=(10, 8), then_foldable=True)},
    "Dropout": {2: ConstantInput("training_mode")},
    # 10.13.0 importer: "FrameStep must be an initializer", likewise the window and the frame length
    "STFT": {1: ConstantInput("frame_step"), 2: ConstantInput("window"), 3: ConstantInput("frame_length")},
    **{op: {1: ConstantInput("axes")} for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
                                                 "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum",
                                                 "ReduceSumSquare")},  # fmt: skip
}

# Gather-like operators whose int64 indices the parser casts to int32 unless the data is int64 too.
_INDEX_NARROWING = {"Gather": 1, "GatherElements": 1, "GatherND": 1}
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


# ---- findings --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Violation:
    """One rule a graph breaks: where (node or input), which rule, and what is wrong."""

    graph: str
    where: str
    rule: str
    message: str
    refused: bool = True  # the real parser refuses the graph (else: narrowed, or outside the profile)

    @property
    def blocking(self) -> bool:
        """The build cannot go on (refused by the parser, or outside the profile); narrowing only warns."""
        return self.rule != "narrowed"

    def line(self) -> str:
        return f"{self.graph}: {self.where}: {self.rule}: {self.message}"


@dataclass
class _Graph:
    """What the rules need to know about a (sub)graph: tensor types, shapes, constants, graph outputs."""

    version: Version
    types: dict[str, int]
    shapes: dict[str, list[Any] | None]
    constants: dict[str, Any]  # name -> TensorProto (initializers and Constant outputs)
    outputs: set[str]
    runtime: set[str] = field(default_factory=set)  # values known only at run time (from graph inputs, random)


def _type_name(elem: int) -> str:
    return _ONNX_TYPES.get(elem) or _ONNX_TYPE_NAMES.get(elem, f"type {elem}")


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _text(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


# ---- per-operator attribute rules (onnxOpCheckers.cpp / onnxOpImporters.cpp) ---------------------------
_RESIZE_COORDS = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}


def _resize(node: Any, a: dict[str, Any], g: _Graph) -> Iterator[str]:
    mode = _text(a.get("mode", "nearest"))
    if mode not in ("nearest", "linear", "cubic"):
        yield f"mode {mode!r} (TensorRT resizes nearest, linear or cubic)"
    coord = _text(a.get("coordinate_transformation_mode", "half_pixel"))
    if coord not in _RESIZE_COORDS:
        yield f"coordinate_transformation_mode {coord!r} (TensorRT has {', '.join(sorted(_RESIZE_COORDS))})"
    nearest = _text(a.get("nearest_mode", "round_prefer_floor"))
    if nearest not in ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil"):
        yield f"nearest_mode {nearest!r}"
    if coord == "tf_half_pixel_for_nn" and nearest != "round_prefer_floor":
        yield "tf_half_pixel_for_nn with a nearest_mode other than round_prefer_floor"
    if a.get("antialias", 0):
        yield "antialias=1 (TensorRT does not antialias)"
    if _text(a.get("keep_aspect_ratio_policy", "stretch")) != "stretch":
        yield "keep_aspect_ratio_policy other than stretch"


def _pooling(node: Any, a: dict[str, Any], g: _Graph) -> Iterator[str]:
    if any(d != 1 for d in a.get("dilations", [])):
        yield f"dilations {list(a['dilations'])} (TensorRT pools without dilation)"
    if node.op_type == "MaxPool" and len([o for o in node.output if o]) > 1:
        yield "the Indices output of MaxPool"
    if node.op_type == "LpPool" and a.get("p", 2) not in (1, 2):
        yield f"p={a['p']} (LpPool: L1 or L2 only)"


def _layer_norm(node: Any, a: dict[str, Any], g: _Graph) -> Iterator[str]:
    if any(o for o in node.output[1:]):
        yield "the Mean/InvStdDev outputs of LayerNormalization (TensorRT makes only Y)"


def _constant(node: Any, a: dict[str, Any], g: _Graph) -> Iterator[str]:
    for bad in ("sparse_value", "value_string", "value_strings"):
        if bad in a:
            yield f"the {bad} attribute of Constant"


def _squeeze(node: Any, a: dict[str, Any], g: _Graph) -> Iterator[str]:
    has_axes = (len(node.input) > 1 and node.input[1]) or "axes" in a
    shape = g.shapes.get(node.input[0])
    if not has_axes and shape is not None and any(not isinstance(d, int) for d in shape):
        yield "Squeeze without axes of a tensor with dynamic dimensions (export it with the axes)"


def _topk(node: Any, a: dict[str, Any], g: _Graph) -> Iterator[str]:
    if a.get("sorted", 1) != 1:
        yield "sorted=0 (TensorRT's TopK is always sorted)"
    k = g.constants.get(node.input[1]) if len(node.input) > 1 else None
    if k is not None and int(_values(k).max(initial=0)) >= 3840:
        yield f"K={int(_values(k).max())} (TensorRT's TopK takes K < 3840)"


def _lstm(node: Any, a: dict[str, Any], g: _Graph) -> Iterator[str]:
    if a.get("input_forget", 0):
        yield "input_forget=1 (coupled input/forget gates)"
    if a.get("layout", 0):
        yield "layout=1 (batch-first LSTM)"


def _no_training(node: Any, a: dict[str, Any], g: _Graph) -> Iterator[str]:
    if a.get("training_mode", 0):
        yield "training_mode=1"
    if node.op_type == "Dropout" and len(node.input) > 2 and node.input[2] in g.constants:
        if _values(g.constants[node.input[2]]).any():
            yield "Dropout in training mode"


def _scatter_nd(node: Any, a: dict[str, Any], g: _Graph) -> Iterator[str]:
    # 10.1 importer: any reduction attribute is refused; Changelog 10.9 "Fixed support for opset 18+ ScatterND";
    # 10.13.0's importer refuses only a reduction other than "none" (as operators.md 10.14 says)
    if g.version < (10, 9) and "reduction" in a:
        yield f"the reduction attribute of ScatterND (TensorRT {version_text(g.version)}; 10.9 takes reduction='none')"
    elif _text(a.get("reduction", "none")) != "none":
        yield f"reduction {_text(a['reduction'])!r} (TensorRT's ScatterND has none)"


def _einsum(node: Any, a: dict[str, Any], g: _Graph) -> Iterator[str]:
    # NvInfer.h v10.3.0: "TensorRT does not support ellipsis, diagonal operations or more than two inputs for
    # Einsum" (the 10.1 parser rewrites ellipses and splits more inputs itself, not diagonals); Changelog 10.12
    # "support for ellipses, diagonal, and broadcasting in Einsum"; the note is gone from NvInfer.h v10.13.0
    terms = _text(a.get("equation", "")).replace(" ", "").split("->")[0].split(",")
    if g.version < (10, 12) and any(len(t.replace("...", "")) != len(set(t.replace("...", ""))) for t in terms):
        yield f"a subscript repeated in one operand (a diagonal) needs TensorRT 10.12, not {version_text(g.version)}"


def _attention(node: Any, a: dict[str, Any], g: _Graph) -> Iterator[str]:
    # operators.md 10.14-10.16: no past_key/past_value/nonpad_kv_seqlen inputs, no present_key/present_value/
    # qk_matmul_output outputs, no qk_matmul_output_mode or softcap
    for i, name in ((4, "past_key"), (5, "past_value"), (6, "nonpad_kv_seqlen")):
        if len(node.input) > i and node.input[i]:
            yield f"the {name} input of Attention"
    for i, name in ((1, "present_key"), (2, "present_value"), (3, "qk_matmul_output")):
        if len(node.output) > i and node.output[i]:
            yield f"the {name} output of Attention"
    for name in ("qk_matmul_output_mode", "softcap"):
        if a.get(name):
            yield f"the {name} attribute of Attention"


def _cast(node: Any, a: dict[str, Any], g: _Graph) -> Iterator[str]:
    to = int(a.get("to", 1))
    if to not in _ONNX_TYPES:
        yield f"Cast to {_type_name(to)} (TensorRT has no such type)"


def _random(node: Any, a: dict[str, Any], g: _Graph) -> Iterator[str]:
    if "dtype" in a and int(a["dtype"]) not in (1, 10):
        yield f"dtype {_type_name(int(a['dtype']))} (random values are FP32 or FP16)"


def _upsample(node: Any, a: dict[str, Any], g: _Graph) -> Iterator[str]:
    if _text(a.get("mode", "nearest")) not in ("nearest", "linear", "bilinear"):
        yield f"mode {_text(a['mode'])!r}"


ATTRIBUTE_RULES: dict[str, Callable[[Any, dict[str, Any], _Graph], Iterator[str]]] = {
    "Resize": _resize,
    "AveragePool": _pooling,
    "MaxPool": _pooling,
    "LpPool": _pooling,
    "LayerNormalization": _layer_norm,
    "Constant": _constant,
    "Squeeze": _squeeze,
    "TopK": _topk,
    "LSTM": _lstm,
    "BatchNormalization": _no_training,
    "Dropout": _no_training,
    "ScatterND": _scatter_nd,
    "Einsum": _einsum,
    "Attention": _attention,
    "Cast": _cast,
    "RandomNormal": _random,
    "RandomUniform": _random,
    "RandomNormalLike": _random,
    "RandomUniformLike": _random,
    "Upsample": _upsample,
}


def _values(t: Any) -> Any:
    from onnx import numpy_helper

    return numpy_helper.to_array(t)


# ---- walking a graph ---------------------------------------------------------------------------------
def check_model(model: Any, graph_name: str, version: Version = DEFAULT_VERSION) -> list[Violation]:
    """Every rule of TensorRT ``version``'s parser that ``model`` (an ``onnx.ModelProto``, external data not
    needed) breaks, in node order."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # a graph onnx cannot infer: check what the graph itself declares
        inferred = model
    out: list[Violation] = []
    _check_graph(inferred.graph, graph_name, _Graph(version, {}, {}, {}, set()), out, top=True)
    return out


def check_onnx_file(
    path: str | Path, graph_name: str | None = None, version: Version = DEFAULT_VERSION
) -> list[Violation]:
    """:func:`check_model` of an ONNX file (its external weights are not read)."""
    import onnx

    return check_model(onnx.load(str(path), load_external_data=False), graph_name or Path(path).name, version)


def _check_graph(graph: Any, name: str, outer: _Graph, out: list[Violation], *, top: bool) -> None:
    # uint8 is legal only at the network's own outputs: a subgraph's outputs are not those
    g = _Graph(outer.version, dict(outer.types), dict(outer.shapes), dict(outer.constants),
               {o.name for o in graph.output} if top else outer.outputs, set(outer.runtime))  # fmt: skip
    for vi in [*graph.input, *graph.output, *graph.value_info]:
        t = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and t.elem_type:
            g.types[vi.name] = t.elem_type
            g.shapes[vi.name] = ([d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
                                 if t.HasField("shape") else None)  # fmt: skip
    for init in graph.initializer:
        g.types[init.name] = init.data_type
        g.shapes[init.name] = list(init.dims)
        g.constants[init.name] = init
    g.runtime |= {vi.name for vi in graph.input} - set(g.constants)  # a body's inputs change per iteration too
    for vi in graph.input if top else ():
        out.extend(_io_type(name, f"input {vi.name}", g.types.get(vi.name)))
    for vi in graph.output if top else ():
        out.extend(_io_type(name, f"output {vi.name}", g.types.get(vi.name)))
    for init in graph.initializer:
        out.extend(_io_type(name, f"initializer {init.name}", init.data_type))
    for index, node in enumerate(graph.node):
        out.extend(_check_node(node, index, name, g))
        if _known_at_run_time_only(node, g):
            g.runtime.update(o for o in node.output if o)
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    g.constants[node.output[0]] = a.t
                    g.types.setdefault(node.output[0], a.t.data_type)
        for a in node.attribute:  # If/Loop/Scan bodies see the enclosing graph's tensors
            for body in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                _check_graph(body, f"{name} [{node.name or node.op_type} {a.name}]", g, out, top=False)


def _known_at_run_time_only(node: Any, g: _Graph) -> bool:
    """Whether TensorRT cannot fold ``node``'s outputs at build time: they depend on a graph input's values
    (a Shape or Size only on its dynamic dimensions) or are random."""
    if node.op_type.startswith("Random"):
        return True
    if node.op_type in ("Shape", "Size"):
        shape = g.shapes.get(node.input[0])
        return shape is None or not all(isinstance(d, int) for d in shape)
    return any(i in g.runtime for i in node.input)


def _io_type(graph: str, where: str, elem: int | None) -> Iterator[Violation]:
    if elem is None:
        return
    t = _type_name(elem)
    if elem not in _ONNX_TYPES:
        yield Violation(graph, where, "data type", f"{t} has no TensorRT type")
    elif t == "DOUBLE":
        yield Violation(graph, where, "narrowed", "DOUBLE is computed as FP32 by TensorRT (values beyond +-FLT_MAX "
                                                  "clamped): export it as FP32", refused=False)  # fmt: skip


def _check_node(node: Any, index: int, graph: str, g: _Graph) -> Iterator[Violation]:
    op = node.op_type
    where = f"node {node.name or f'#{index}'} ({op})"
    if node.domain not in ("", "ai.onnx"):
        yield Violation(graph, where, "unsupported operator",
                        f"{node.domain}.{op} is not an ONNX operator TensorRT imports (it needs a TensorRT plugin)")
        return
    v = version_text(g.version)
    if op not in OP_TYPES and op not in ADDED_OPERATORS:
        yield Violation(graph, where, "unsupported operator", f"TensorRT's parser has no importer for {op}")
        return
    allowed = operator_types(op, g.version)
    if allowed is None:
        since = f" (TensorRT {version_text(ADDED_OPERATORS[op][0])} does)" if op in ADDED_OPERATORS else ""
        yield Violation(graph, where, "unsupported operator", f"TensorRT {v} does not support {op}{since}")
        return
    a = _attrs(node)
    for problem in ATTRIBUTE_RULES.get(op, lambda *_: iter(()))(node, a, g):
        yield Violation(graph, where, "unsupported attribute", problem)
    for i, rule in CONSTANT_INPUTS.get(op, {}).items():
        name = node.input[i] if i < len(node.input) else ""
        if not name or name in g.constants:
            continue
        if rule.until is None or g.version < rule.until:
            later = f" (a tensor from TensorRT {version_text(rule.until)} on)" if rule.until else ""
            yield Violation(graph, where, "constant input",
                            f"{rule.what} ({name}) is computed in the graph; TensorRT {v}'s parser needs it as an "
                            f"initializer{later}")  # fmt: skip
        elif rule.then_foldable and name in g.runtime:
            yield Violation(graph, where, "constant input",
                            f"{rule.what} ({name}) depends on the inputs' values or dynamic dimensions; TensorRT {v}'s "
                            "builder needs it foldable to a build-time constant", refused=False)  # fmt: skip
    yield from _operand_types(node, where, graph, g, allowed)
    for o in node.output:  # ModelImporter: UINT8 only as a network input or output
        if o and g.types.get(o) == 2 and o not in g.outputs:
            yield Violation(graph, where, "uint8 intermediate",
                            f"{o} is UINT8 inside the graph (TensorRT takes UINT8 only at network inputs and outputs): "
                            "make the uint8 Cast the graph's last node")
        elif o and o in g.types and g.types[o] not in _ONNX_TYPES:
            yield Violation(graph, where, "data type", f"{o} is {_type_name(g.types[o])}, which has no TensorRT type")
        elif o and g.types.get(o) == 11 and o not in g.outputs:
            yield from _io_type(graph, where, 11)
    if op in _INDEX_NARROWING and len(node.input) > _INDEX_NARROWING[op]:
        idx = node.input[_INDEX_NARROWING[op]]
        if g.types.get(idx) == 7 and g.types.get(node.input[0]) != 7 and idx in g.constants:
            v = _values(g.constants[idx])
            if v.size and (v.min() < _INT32_MIN or v.max() > _INT32_MAX):
                yield Violation(graph, where, "narrowed", f"INT64 indices {idx} beyond the INT32 range: TensorRT casts "
                                                          "them to INT32 (data that is not INT64)", refused=False)  # fmt: skip


def _operand_types(node: Any, where: str, graph: str, g: _Graph, allowed: frozenset[str]) -> Iterator[Violation]:
    which = T_OPERANDS.get(node.op_type, (0,))
    operands: list[tuple[str, str, frozenset[str]]] = []  # (tensor, role, the types it may have)
    positions: Iterable[Any] = range(len(node.input)) if which == _ALL else ([_OUT] if which == _OUT else which)
    for p in positions:
        if p == _OUT:
            operands += [(o, "output", allowed) for o in node.output[:1] if o]
        elif p < len(node.input) and node.input[p]:
            since, wider = WIDENED_TYPES.get((node.op_type, p), (None, allowed))
            operands.append((node.input[p], f"input {p}", wider if since and g.version >= since else allowed))
    for tensor, role, types in operands:
        elem = g.types.get(tensor)
        if elem is None:
            continue
        t = "FP32" if _type_name(elem) == "DOUBLE" else _type_name(elem)
        if t not in types:
            yield Violation(graph, where, "data type", f"{role} {tensor} is {t}; TensorRT {version_text(g.version)}'s "
                                                       f"{node.op_type} takes {', '.join(sorted(types))}")  # fmt: skip


# ---- shapes against the build's optimization profile ----------------------------------------------------
def check_profile(model: Any, graph_name: str, profile: dict[str, ShapeRange]) -> list[Violation]:
    """Each graph input's dimensions against the profile the build will give it (min/opt/max per input).

    A static dimension must equal the profile's at min, opt and max; a dynamic one needs a range with
    1 <= min <= opt <= max; every input needs a profile entry of its rank.
    """
    out = []
    inits = {i.name for i in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        where = f"input {vi.name}"
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in vi.type.tensor_type.shape.dim]
        p = profile.get(vi.name)
        if p is None:
            out.append(Violation(graph_name, where, "profile", f"has no shape range in the build's profile (dims {dims})",
                                 refused=False))  # fmt: skip
            continue
        lo, opt, hi = p.min, p.opt, p.max
        if not len(lo) == len(opt) == len(hi) == len(dims):
            out.append(Violation(graph_name, where, "profile", f"has rank {len(dims)} in the graph; the profile gives "
                                                               f"{lo}..{hi}", refused=False))  # fmt: skip
            continue
        for axis, (d, a, b, c) in enumerate(zip(dims, lo, opt, hi)):
            if isinstance(d, int) and not d == a == b == c:
                out.append(Violation(graph_name, where, "profile", f"axis {axis} is {d} in the graph but "
                                                                   f"{a}/{b}/{c} (min/opt/max) in the profile",
                                     refused=False))  # fmt: skip
            elif not isinstance(d, int) and not 1 <= a <= b <= c:
                out.append(Violation(graph_name, where, "profile", f"dynamic axis {axis} ({d}) has the range "
                                                                   f"{a}/{b}/{c}, not 1 <= min <= opt <= max",
                                     refused=False))  # fmt: skip
    return out
