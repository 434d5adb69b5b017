"""The ensemble of a ``triton-repo`` repository: ``encoder -> prior_sampler -> unet -> decoder``, no host loop.

Written where the folder has a fused prior graph (``prior_sampler``, the whole DDPM sampler in one graph)
and SDXL-Turbo's 1-step tables: then the chain is four graph calls in Triton's ensemble scheduler, plus
two Python steps that are not loops (``glue_model.py``): drawing the runtime's ``(seed, sample_index)``
noise, and Stage II's single Euler-ancestral update. One ensemble per fused step count,
``eeg2img_fused_<N>``, with ``serve``'s four required inputs (eeg, subject_id, seed, sample_index) and
the images ``infer --prior-steps N`` gives (1 UNet step, the bundle's guidance and IP scale).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.options import RunOptions
from ..errors import ManifestError
from ..manifest import Artifact, Manifest, Stage
from .pbtxt import Enum
from .repo_files import python_model

FUSED_PRIOR = Stage.PRIOR_SAMPLER
GLUE = "glue_model.py"
MODEL_PREFIX = "eeg2img_glue"


def _io(cfg: dict, kind: str, name: str, rename: str | None = None) -> dict:
    """The entry for tensor ``name`` in a stage config's inputs or outputs, as another model declares it."""
    entry = next(e for e in cfg[kind] if e["name"] == name)
    return {**{k: v for k, v in entry.items() if k != "reshape"}, "name": rename or name}


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> dict:
    return {"model_name": model, "model_version": -1,
            "input_map": [{"key": k, "value": v} for k, v in inputs.items()],
            "output_map": [{"key": k, "value": v} for k, v in outputs.items()]}


def _glue(name: str, role: str, max_batch: int, inputs: list[dict], outputs: list[dict]) -> dict:
    return {"name": name, "backend": "python", "max_batch_size": max_batch, "input": inputs, "output": outputs,
            "instance_group": [{"count": 1, "kind": Enum("KIND_CPU")}],
            "parameters": [{"key": "role", "value": {"string_value": role}}]}


def write_ensembles(root: Path, bundle: Path, manifest: Manifest, chosen: dict[str, Artifact], decoder: str,
                    configs: dict[str, dict]) -> dict[str, dict]:
    """Write the glue models and one ensemble per fused step count under ``root``; return their configs."""
    fused = {name: a for name, a in chosen.items() if a.stage == FUSED_PRIOR}
    dec_out = chosen[decoder].outputs[0]
    takes_ids = any(t.name == "subject_ids" for t in chosen["encoder"].inputs)
    if not fused or 1 not in manifest.bundle.steps or dec_out.dtype != "uint8" or not takes_ids:
        # no fused prior, no 1-step tables, a float-output decoder, or an encoder graph without the subject-id
        # input (BrainFLORA: the ensemble's subject_id would feed nothing): the BLS model covers it
        return {}
    unet, enc = configs["unet"], configs["encoder"]
    max_batch = min(configs[n]["max_batch_size"] for n in ("encoder", "unet", decoder, *fused))
    seed_rows = [{"name": n, "data_type": Enum("TYPE_INT64"), "dims": [1]} for n in ("seed", "sample_index")]
    side = manifest.bundle.image_size // 8
    channels = manifest.bundle.latent_channels
    latents = {"name": "latents", "data_type": Enum("TYPE_FP32"), "dims": [channels, side, side]}
    unet_inputs = [t.name for t in chosen["unet"].inputs if t.name != "image_embeds"]
    out: dict[str, dict] = {}
    step = f"{MODEL_PREFIX}_step"
    out[step] = _glue(step, "step", max_batch, [latents, _io(unet, "output", "noise_pred"), *seed_rows],
                      [{**_io(configs[decoder], "input", "latents"), "name": "denoised"}])
    for name, a in fused.items():
        n = a.steps
        inputs_model = f"{MODEL_PREFIX}_inputs_{n}"
        prior_cfg = configs[name]
        out[inputs_model] = _glue(inputs_model, "inputs", max_batch, seed_rows, [
            _io(prior_cfg, "input", "noise", "prior_noise"), _io(prior_cfg, "input", "guidance"), latents,
            *(_io(unet, "input", t) for t in unet_inputs)])
        ensemble = f"eeg2img_fused_{n}"
        out[ensemble] = {
            "name": ensemble, "platform": "ensemble", "max_batch_size": max_batch,
            "input": [_io(enc, "input", "eeg"), _io(enc, "input", "subject_ids", "subject_id"), *seed_rows],
            "output": [{**_io(configs[decoder], "output", dec_out.name), "name": "image"},
                       _io(prior_cfg, "output", "image_embeds"), _io(enc, "output", "eeg_embeds")],
            "ensemble_scheduling": {"step": [
                _step(inputs_model, {"seed": "seed", "sample_index": "sample_index"},
                      {"prior_noise": "prior_noise", "guidance": "guidance", "latents": "latents",
                       **{t: t for t in unet_inputs}}),
                _step("encoder", {"eeg": "eeg", "subject_ids": "subject_id"}, {"eeg_embeds": "eeg_embeds"}),
                _step(name, {"cond": "eeg_embeds", "noise": "prior_noise", "guidance": "guidance"},
                      {"image_embeds": "image_embeds"}),
                _step("unet", {**{t: t for t in unet_inputs}, "image_embeds": "image_embeds"},
                      {"noise_pred": "noise_pred"}),
                _step(step, {"latents": "latents", "noise_pred": "noise_pred", "seed": "seed",
                             "sample_index": "sample_index"}, {"denoised": "denoised"}),
                _step(decoder, {"latents": "denoised"}, {dec_out.name: "image"}),
            ]},
        }
    for name in (m for m in out if out[m].get("platform") == "ensemble"):
        check_types(name, out[name], {**configs, **out}, bundle)
    for name in (m for m in out if out[m].get("platform") == "ensemble"):
        (root / name / "1").mkdir(parents=True)  # an ensemble needs a version folder, empty
    run = RunOptions().resolve(manifest.bundle)  # infer's defaults for this bundle: guidance, IP scale
    for name in [step, *(m for m in out if m.startswith(f"{MODEL_PREFIX}_inputs_"))]:
        version = python_model(root / name, GLUE, bundle, manifest)
        n = int(name.rsplit("_", 1)[1]) if name != step else max(a.steps or 0 for a in fused.values())
        (version / "glue.json").write_text(json.dumps({
            "prior_steps": n, "unet_steps": 1, "guidance": run.guidance, "ip_scale": run.ip_scale,
            "latent_shape": latents["dims"],
            "unet_dtypes": {t.name: t.dtype for t in chosen["unet"].inputs},
            "decoder_dtype": chosen[decoder].inputs[0].dtype,
        }, indent=2) + "\n")
    return out


def check_types(name: str, ensemble: dict, configs: dict[str, dict], folder: Path) -> None:
    """Refuse, as Triton's loader does, a step input fed a tensor of another type (the walk of its ensemble
    checks): only a folder exported before every graph edge was float32 has one (an fp16 stage's float16 I/O)."""
    known = {i["name"]: i["data_type"] for i in ensemble["input"]}
    for step in ensemble["ensemble_scheduling"]["step"]:
        model = configs[step["model_name"]]
        for m in step["input_map"]:
            want = next(i["data_type"] for i in model["input"] if i["name"] == m["key"])
            if known[m["value"]] != want:
                raise ManifestError(
                    f"{folder}: ensemble {name} would feed {m['value']} ({known[m['value']]}) to "
                    f"{step['model_name']}'s {m['key']} ({want}), which Triton refuses: the folder was exported "
                    "before every graph edge was float32; export it again (`eeg2img-deploy export`, then "
                    "`build-engines` for an engine folder)")
        for m in step["output_map"]:
            known[m["value"]] = next(o["data_type"] for o in model["output"] if o["name"] == m["key"])
