"""The encoder stage for every kind: fp32 and fp16 graphs validated against the module, the inputs the graph
takes, and one-line errors for a module that does not export or whose graph fails in onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the export extra)")
pytest.importorskip("onnx")

from eeg2img_deploy.eeg.spec import EEGSpec
from eeg2img_deploy.errors import ExportError
from eeg2img_deploy.export.encoder import encoder_stage
from eeg2img_deploy.export.onnx_io import check_onnx, export_onnx, validate
from eeg2img_deploy.manifest import Precision
from eeg2img_deploy.models.encoders import LoadedEncoder, check_contract
from eeg2img_deploy.names import EncoderKind

SPEC = EEGSpec(channels=tuple(f"E{i}" for i in range(17)))


class WithIds(torch.nn.Module):
    def __init__(self, batch_in_python: bool = False, eig: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.temporal = torch.nn.Conv1d(17, 8, 25, stride=5)
        self.subject = torch.nn.Embedding(3, 8)
        self.head = torch.nn.Linear(8 * 46, 1024)
        self.batch_in_python, self.eig = batch_in_python, eig

    def forward(self, eeg, subject_ids):
        x = torch.relu(self.temporal(eeg)) + self.subject(subject_ids)[:, :, None]
        if self.eig:  # an op with no ONNX form
            x = x * torch.linalg.eigvalsh(eeg @ eeg.transpose(1, 2))[:, :8, None]
        # the batch read in Python while tracing becomes a constant: fails at any other batch
        return self.head(x.reshape(int(eeg.shape[0]), -1) if self.batch_in_python else x.flatten(1))


def loaded(module, kind=EncoderKind.CUSTOM, spec=SPEC, rows=3) -> LoadedEncoder:
    enc = LoadedEncoder(module.eval(), kind, spec, rows)
    enc.uses_subject_ids = check_contract(enc.module, spec, what="test").uses_subject_ids
    return enc


def export_and_validate(stage, tmp_path, precision):
    rng = np.random.default_rng(0)
    cases = []
    for batch in (1, 2):
        feeds = stage.make_inputs(batch, rng)
        with torch.no_grad():
            ref = stage.module(*[torch.from_numpy(feeds[t.name]) for t in stage.inputs])
        cases.append((feeds, (ref.numpy().astype(np.float64),)))
    if precision is Precision.FP16:
        stage.module.half()
    path = tmp_path / f"encoder.{precision}.onnx"
    try:
        export_onnx(stage, precision, path, stage.make_inputs(2, rng))
        check_onnx(path, stage, precision)
        return validate(path, stage, precision, cases)
    finally:
        stage.module.float()


@pytest.fixture(scope="module")
def brainflora(tiny_dir):
    from eeg2img_deploy.models.encoders import load_eeg_encoder
    from eeg2img_deploy.tiny_brainflora import CHECKPOINT

    return load_eeg_encoder(tiny_dir / "brainflora" / CHECKPOINT)


@pytest.mark.parametrize("precision", [Precision.FP32, Precision.FP16])
def test_every_kind_exports_within_tolerance(brainflora, tmp_path, precision):
    for enc, inputs in ((loaded(WithIds()), ["eeg", "subject_ids"]), (brainflora, ["eeg"])):
        stage = encoder_stage(enc)
        assert [t.name for t in stage.inputs] == inputs and stage.inputs[0].shape[1:] == enc.spec.shape
        report = export_and_validate(stage, tmp_path, precision)
        worst = max(report["max_rel_error"].values())
        print(f"\n{enc.kind} {precision}: max rel. error {worst:.2e} (tolerance {report['tolerance']:g})")
        assert report["tolerance"] == (1e-5 if precision is Precision.FP32 else 1e-2) and worst <= report["tolerance"]


def test_a_module_that_does_not_export_is_one_line(tmp_path):
    with pytest.raises(ExportError, match=r"encoder \(fp32\): the module does not export to ONNX opset 18 "
                                          r"\(UnsupportedOperatorError: .*linalg_eigvalsh") as e:
        export_and_validate(encoder_stage(loaded(WithIds(eig=True))), tmp_path, Precision.FP32)
    assert "\n" not in str(e.value)


def test_a_graph_that_fails_at_another_batch_is_one_line(tmp_path):
    with pytest.raises(ExportError, match=r"the exported graph fails in onnxruntime on eeg \(1, 17, 250\).*baked in") as e:
        export_and_validate(encoder_stage(loaded(WithIds(batch_in_python=True))), tmp_path, Precision.FP32)
    assert "\n" not in str(e.value)
