"""Turning a stage into a checked ONNX file: trace, check, infer shapes, validate in onnxruntime.

Two exporters, chosen by size. The TorchScript exporter (``dynamo=False``) is 10-15x faster on small
graphs but needs more than 20 GB for the full-size fp32 SDXL UNet; the torch.export-based exporter
stays within 14 GB there and writes external data in one file. Opset 18 everywhere: the newer default
makes onnxruntime's AveragePool several times slower, and TensorRT 10.3 (JetPack 6) parses opset 18.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import ExportError
from ..manifest import Precision, TensorSpec
from ..quiet import ONNX_EXPORT, quiet
from .spec import StageExport

log = logging.getLogger(__name__)

OPSET = 18
EDGES = "float32"  # every float tensor at a graph's inputs and outputs, fp16 graphs included (spec.py)
LARGE_MODEL_BYTES = 1 << 30  # above this, use the memory-safe exporter and external data


def model_bytes(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _dynamic_axes(specs: tuple[TensorSpec, ...]) -> dict[str, dict[int, str]]:
    return {t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)} for t in specs}


@contextlib.contextmanager
def _single_output_rewrites():
    """Leave onnxscript's multi-output rewrite rules (``SlicesSplit``) out of the exporter's optimizer.

    onnxscript (0.7) matches a pattern with several output nodes by listing every node of the graph
    for every node it tries: quadratic in the graph's size. On the full-size SDXL UNet (18k nodes)
    that one rule took about 600 of the 770 s export; the other rules take 10 s. Merging two Slices
    into a Split is all it would have done. Without the private list it touches, nothing changes.
    """
    try:
        from onnxscript import rewriter

        rules = rewriter._DEFAULT_REWRITE_RULES
        kept = tuple(r for r in rules if getattr(getattr(r, "_target_pattern", None), "has_single_output_node", True))
    except (ImportError, AttributeError, TypeError):
        yield
        return
    rewriter._DEFAULT_REWRITE_RULES = kept
    try:
        yield
    finally:
        rewriter._DEFAULT_REWRITE_RULES = rules


def export_onnx(stage: StageExport, precision: Precision, path: Path, example: dict[str, np.ndarray]) -> float:
    """Trace ``stage.module`` (already in ``precision``) to ``path``; returns seconds taken."""
    import torch

    inputs = stage.input_specs(precision)
    outputs = stage.output_specs(precision)
    args = tuple(torch.from_numpy(stage.feeds_for(example, precision)[t.name]) for t in inputs)
    module = stage.traced_module(precision)
    names_in = [t.name for t in inputs]
    names_out = [t.name for t in outputs]
    axes = _dynamic_axes(inputs + outputs)
    large = model_bytes(stage.module) > LARGE_MODEL_BYTES
    t0 = time.perf_counter()
    try:
        _trace(module, args, path, names_in, names_out, axes, large)
    except Exception as e:  # an op without an ONNX form, a forward that cannot be traced: one line, no traceback
        raise ExportError(f"{stage.name} ({precision.value}): the module does not export to ONNX opset {OPSET} "
                          f"({_first_line(e)})") from e
    return time.perf_counter() - t0


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _trace(module, args, path: Path, names_in, names_out, axes, large: bool) -> None:
    import torch

    with torch.no_grad(), quiet(*ONNX_EXPORT):
        if large:
            with _single_output_rewrites():
                program = torch.onnx.export(
                    module, args, input_names=names_in, output_names=names_out,
                    dynamic_axes=axes, opset_version=OPSET, dynamo=True, optimize=True,
                    verbose=None if log.isEnabledFor(logging.DEBUG) else False,  # its step list: -vv only
                )
            if program is None:  # torch returns None only for dynamo=False
                raise ExportError("torch.onnx.export(dynamo=True) returned no program")  # the caller names the stage
            program.save(str(path), external_data=True)  # one file, path.name + ".data", beside the graph
        else:
            with _native_stdout_to_debug_log():
                torch.onnx.export(
                    module, args, str(path), input_names=names_in, output_names=names_out,
                    dynamic_axes=axes, opset_version=OPSET, dynamo=False,
                )


@contextlib.contextmanager
def _native_stdout_to_debug_log():
    """The TorchScript exporter writes its whole IR graph to the process's stdout (from C++, so no Python
    redirect sees it) when an export fails; the failure itself becomes one ExportError line. Sent to -vv."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            if text := sink.read().decode(errors="replace").strip():
                log.debug("torch.onnx.export wrote to stdout: %s", text[:4000])


def check_onnx(path: Path, stage: StageExport, precision: Precision) -> None:
    """onnx's checker and shape inference, and the graph's I/O against the export spec."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # the checker raises several types
        raise ExportError(f"{stage.name} ({precision.value}): the exported ONNX fails onnx's checker: {e}") from e
    elem = {
        onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.INT64: "int64",
        onnx.TensorProto.UINT8: "uint8",
    }
    got = {i.name: elem.get(i.type.tensor_type.elem_type, "?") for i in list(model.graph.input) + list(model.graph.output)}
    for t in stage.input_specs(precision) + stage.output_specs(precision):
        if got.get(t.name) != t.dtype:
            raise ExportError(
                f"{stage.name} ({precision.value}): graph I/O {t.name!r} is {got.get(t.name, 'missing')}, expected {t.dtype}"
            )


def ort_session(path: Path, providers: list[str] | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # fatal only: a failing run raises, and export turns that into one ExportError line
    return ort.InferenceSession(str(path), opts, providers=providers or ["CPUExecutionProvider"])


def relative_error(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got - ref| / max |ref|. Integer outputs (uint8 images) forgive one quantization level first:
    an fp32 difference of 1e-7 rounds a value sitting on a .5 boundary to the neighbouring integer."""
    diff = np.abs(got.astype(np.float64) - ref).max()
    if np.issubdtype(got.dtype, np.integer):
        diff = max(diff - 1.0, 0.0)
    return float(diff / max(np.abs(ref).max(), 1e-12))


def validate(path: Path, stage: StageExport, precision: Precision, cases: list[tuple[dict, tuple[np.ndarray, ...]]]) -> dict:
    """Run the ONNX file in onnxruntime on each (fp32 feeds, torch fp32 outputs) case; fail above tolerance.

    Every output is compared; the error of a case is its worst output's.
    """
    sess = ort_session(path)
    out_names = [t.name for t in stage.outputs]
    errors = {}
    for feeds, refs in cases:
        try:
            got = sess.run(out_names, stage.feeds_for(feeds, precision))
        except Exception as e:  # e.g. a size traced as a constant (a reshape to the example's batch)
            shapes = ", ".join(f"{k} {v.shape}" for k, v in feeds.items())
            raise ExportError(f"{stage.name} ({precision.value}): the exported graph fails in onnxruntime on {shapes} "
                              f"({_first_line(e)}); a size computed in Python while tracing is baked in") from e
        for name, g, ref in zip(out_names, got, refs):
            if g.shape != ref.shape:
                raise ExportError(f"{stage.name} ({precision.value}): onnxruntime output {name} {g.shape}, torch {ref.shape}")
        rows = refs[0].shape[stage.outputs[0].shape.index(stage.batch_axis)]  # the batch axis need not lead (KV caches)
        batch = rows if stage.batch_axis == "batch" else rows // 2
        errors[f"batch{batch}"] = max(relative_error(g, ref) for g, ref in zip(got, refs))
    worst = max(errors.values())
    tol = stage.tolerance[precision]
    metric = "max|ort - torch_fp32| / max|torch_fp32|"
    if np.dtype(stage.outputs[0].dtype).kind in "iu":
        metric = "max(max|ort - torch_fp32| - 1, 0) / max|torch_fp32| (one rounding level forgiven)"
    result = {"max_rel_error": errors, "tolerance": tol, "metric": metric}
    if not np.isfinite(worst) or worst > tol:
        raise ExportError(
            f"{stage.name} ({precision.value}) failed validation: relative error {worst:.3g} > tolerance {tol:g} "
            f"({errors}); the ONNX graph does not reproduce PyTorch"
        )
    return result
