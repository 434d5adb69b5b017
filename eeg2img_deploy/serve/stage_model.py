"""One stage of a ``triton-repo --stage-backend python`` repository: its ONNX graph run by onnxruntime.

For servers built without the onnxruntime backend (PyTriton's bundled ``tritonserver`` is one). Copied
into each stage's version folder as ``model.py``; ``stage.json`` names the graph and its I/O.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend

# Triton's Python stub runs an isolated interpreter that ignores PYTHONPATH: honour it (a source checkout)
sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

from eeg2img_deploy.manifest import Artifact  # noqa: E402
from eeg2img_deploy.runtime.ort_backend import OrtStage  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        folder = Path(args["model_repository"]) / args["model_version"]
        spec = json.loads((folder / "stage.json").read_text())
        self.stage = OrtStage(folder / spec["file"], Artifact.from_dict(spec["artifact"]), threads=1)

    def execute(self, requests):
        # Triton's dynamic batcher hands over several requests: run them as one call, split the rows back
        names = [t.name for t in self.stage.inputs]
        feeds = [{n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in names} for r in requests]
        sizes = [len(f[names[0]]) for f in feeds]
        out = self.stage.run({n: np.concatenate([f[n] for f in feeds]) for n in names})
        responses, start = [], 0
        for size in sizes:
            tensors = [pb_utils.Tensor(n, np.ascontiguousarray(v[start:start + size])) for n, v in out.items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    def finalize(self):
        self.stage.close()
