"""The ``eeg2img`` model of a ``triton-repo`` repository (Triton's Python backend; copied there as ``model.py``).

It runs the runtime's :class:`~eeg2img_deploy.runtime.pipeline.Pipeline` (validation, the prior's
sampler loop, Stage II's scheduler, the per-(seed, sample index) noise) with every graph executed by
the repository's stage models through BLS requests, and answers each request on its own: a bad one gets
its error, the rest of the batch its images. Needs ``eeg2img_deploy`` installed in the server's Python.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend

# Triton's Python stub runs an isolated interpreter that ignores PYTHONPATH: honour it (a source checkout)
sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

from eeg2img_deploy.manifest import Artifact, ServedModels, read_manifest  # noqa: E402
from eeg2img_deploy.runtime.backend import ArtifactSpecs, StageSession  # noqa: E402
from eeg2img_deploy.runtime.pipeline import Pipeline  # noqa: E402
from eeg2img_deploy.serve.requests import cut_padding, model_inputs, model_outputs, pad_to_static, run_requests  # noqa: E402
from eeg2img_deploy.serve.triton_repo import static_batch  # noqa: E402


class BlsStage(ArtifactSpecs):
    """A runtime stage session whose ``run`` is an inference request to the stage model of the same name."""

    def __init__(self, artifact: Artifact, model_name: str, static_axes=None):
        self.artifact = artifact
        self.model_name = model_name
        self._outputs = [t.name for t in artifact.outputs]  # all of them (a stage has one)
        self._static_axes = static_axes  # a static engine's axes: every call padded to their size

    def run(self, feeds: dict[str, Any], *, keep_on_device: tuple[str, ...] = ()) -> dict[str, Any]:
        real = padded = 1
        if self._static_axes is not None:
            feeds, real, padded = pad_to_static(feeds, self.artifact.inputs, self._static_axes)
        kw = {}
        if hasattr(pb_utils, "PreferredMemory"):  # answers in host memory: the samplers are numpy
            kw["preferred_memory"] = pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0)
        request = pb_utils.InferenceRequest(
            model_name=self.model_name, requested_output_names=self._outputs,
            inputs=[pb_utils.Tensor(t.name, _wire(feeds[t.name], t)) for t in self.artifact.inputs], **kw)
        response = request.exec()
        if response.has_error():
            raise pb_utils.TritonModelException(f"{self.model_name}: {response.error().message()}")
        outputs = {t.name: pb_utils.get_output_tensor_by_name(response, t.name).as_numpy().reshape(
            len(feeds[self.artifact.inputs[0].name]), *t.shape[1:]) for t in self.artifact.outputs}
        return cut_padding(outputs, self.artifact.outputs, real, padded)  # without the padding rows

    def close(self) -> None:
        pass


def _wire(arr, spec):
    """A per-sample scalar (B,) travels as (B, 1): the stage's config declares dims [1] reshaped to []."""
    arr = np.ascontiguousarray(arr)
    return arr.reshape(-1, 1) if len(spec.shape) == 1 else arr


class TritonPythonModel:
    def initialize(self, args):
        from safetensors.numpy import load_file

        folder = Path(args["model_repository"]) / args["model_version"]
        manifest = read_manifest(folder)
        chosen = ServedModels.read(folder)
        static = manifest.bundle.axes if static_batch(manifest) is not None else None
        sessions: dict[str, StageSession] = {  # session -> model
            key: BlsStage(manifest.artifact(m.stage, m.precision, m.steps), m.model, static)
            for key, m in chosen.models.items()}
        constants = load_file(str(folder / manifest.constants_file))
        self.pipe = Pipeline(manifest, constants, sessions, folder=folder, vae=chosen.vae)
        self.inputs = [p.name for p in model_inputs(self.pipe.eeg_spec.shape)]
        self.outputs = [p.name for p in model_outputs(self.pipe.image_size)]

    def execute(self, requests):
        feeds = []
        for request in requests:
            tensors = {name: pb_utils.get_input_tensor_by_name(request, name) for name in self.inputs}
            feeds.append({name: t.as_numpy() for name, t in tensors.items() if t is not None})
        responses = []
        for result in run_requests(self.pipe, feeds):
            if isinstance(result, Exception):
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(result))))
            else:
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, result[name]) for name in self.outputs]))
        return responses
