"""The ``README.md`` card of a bundle or engine folder: what made it, the licences it inherits, how to run it.

Rendered from the folder's :class:`~.manifest.Manifest` alone (``export`` and ``build-engines`` write it
just before the manifest), so it says nothing the manifest does not. Stdlib only.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from .fileio import atomic_write_text
from .integrity import STAMP_NAME
from .manifest import MANIFEST_NAME, Backend, EncoderKind, Manifest, Stage

CARD_NAME = "README.md"


@dataclass(frozen=True)
class Upstream:
    what: str
    origin: str
    licence: str


PAPER = "trained with the paper's code, [dongyangli-del/EEG_Image_decode](https://github.com/dongyangli-del/EEG_Image_decode)"
PAPER_LICENCE = "the code is MIT; the checkpoint's terms are its authors': see where you got it"
# Each checked against the upstream's model card or LICENSE file; a source not listed here gets UNKNOWN.
UPSTREAMS = {
    "encoder": Upstream("ATM EEG encoder", PAPER, PAPER_LICENCE),
    "prior": Upstream("diffusion prior", PAPER, PAPER_LICENCE),
    "low_level": Upstream("low-level encoder", PAPER, PAPER_LICENCE),
    "projector": Upstream("PixelProjector (captions)", PAPER, PAPER_LICENCE),
    "sdxl": Upstream("SDXL-Turbo: UNet, VAE, text encoders, scheduler",
                     "[stabilityai/sdxl-turbo](https://huggingface.co/stabilityai/sdxl-turbo)",
                     "**non-commercial**: Stability AI Non-Commercial Research Community License (`sai-nc-community`); "
                     "commercial use needs a licence from Stability AI"),
    "ip_adapter": Upstream("IP-Adapter for SDXL (ViT-H)", "[h94/IP-Adapter](https://huggingface.co/h94/IP-Adapter)",
                           "Apache-2.0"),
    "taesd": Upstream("TAESDXL, the fast decoder (`--vae tiny`)",
                      "[madebyollin/taesdxl](https://huggingface.co/madebyollin/taesdxl)", "MIT"),
    "git": Upstream("GIT-large COCO captioner", "[microsoft/git-large-coco](https://huggingface.co/microsoft/git-large-coco)",
                    "MIT"),
}
BRAINFLORA = ("trained with BrainFLORA's code, [ncclab-sustech/BrainFLORA](https://github.com/ncclab-sustech/BrainFLORA) "
              "(checkpoints: [LidongYang/BrainFLORA](https://huggingface.co/datasets/LidongYang/BrainFLORA))")
BRAINFLORA_UPSTREAMS = {  # a BrainFLORA bundle's encoder and prior
    "encoder": Upstream("BrainFLORA UnifiedEncoder: EEG tower + MoE projection", BRAINFLORA,
                        "the code is MIT; the checkpoint's terms are its authors': see where you got it"),
    "prior": Upstream("BrainFLORA's diffusion prior (the paper's architecture)", BRAINFLORA,
                      "the code is MIT; the checkpoint's terms are its authors': see where you got it"),
}
CUSTOM_UPSTREAMS = {  # an --encoder-factory bundle's encoder
    "encoder": Upstream("your EEG encoder's weights (`--encoder-factory`)", "-", "yours"),
    "encoder_factory": Upstream("your EEG encoder's code (`--encoder-factory`)", "-", "yours"),
    "encoder_channels": Upstream("your EEG encoder's channel list (`--encoder-channels`)", "-", "yours"),
}
UNKNOWN = Upstream("", "-", "see the source's own licence")


def write_card(folder: str | Path, manifest: Manifest) -> Path:
    """Write ``folder/README.md`` atomically (left alone when it already says the same)."""
    path = Path(folder) / CARD_NAME
    text = render_card(folder, manifest)
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        atomic_write_text(path, text)
    return path


def render_card(folder: str | Path, manifest: Manifest) -> str:
    folder = Path(folder)
    engines = manifest.backend is not Backend.ONNX
    kind = f"{manifest.backend.value} engine folder" if engines else "export bundle"
    encoder = {EncoderKind.ATM: "the paper's ATM-S EEG encoder", EncoderKind.BRAINFLORA: "BrainFLORA's EEG encoder",
               EncoderKind.CUSTOM: f"your EEG encoder (`{manifest.bundle.encoder.factory}`)"}[manifest.bundle.encoder.kind]
    out = [f"# {folder.resolve().name}: an eeg2img-deploy {kind}", "",
           f"The EEG-to-image models of Li et al. (NeurIPS 2024) with {encoder}, " +
           ("built by `eeg2img-deploy build-engines`" if engines else "exported to ONNX by `eeg2img-deploy export`") +
           f" (toolkit {manifest.toolkit_version}) on {manifest.created}. This card is rendered from `{MANIFEST_NAME}`,"
           " the machine-readable contract beside it.", ""]
    out += _commands(folder, manifest) + _sources(manifest) + _made(manifest) + _artifacts(manifest)
    return "\n".join(out).rstrip() + "\n"


def _commands(folder: Path, manifest: Manifest) -> list[str]:
    f = shlex.quote(folder.as_posix())
    rows = manifest.bundle.num_subjects
    subject = 8 if rows is None or rows > 8 else rows - 1
    run = f"--eeg trials.npy --subject {subject} --out reconstructions"
    lines = ["## Run it", "", "```bash"]
    if manifest.backend is Backend.ONNX:
        lines += [f"eeg2img-deploy infer --bundle {f} {run}", f"eeg2img-deploy bench --bundle {f}",
                  "# engines for this machine (TensorRT on the GPU machine, or onnxruntime-optimized models):",
                  f"eeg2img-deploy build-engines --bundle {f} --backend tensorrt",
                  f"eeg2img-deploy build-engines --bundle {f} --backend onnxruntime --provider cpu"]
    else:
        engine = manifest.engine
        if manifest.backend is Backend.TENSORRT:
            how, build = "--backend tensorrt", f"--preset {engine.tensorrt.preset}" if engine and engine.tensorrt else ""
        else:
            ort = engine.onnxruntime if engine else None
            how = build = f"--provider {ort.provider if ort else 'cpu'}"
            how = f"--backend onnxruntime {how}"
        lines += [f"eeg2img-deploy infer --bundle {f} {how} {run}", f"eeg2img-deploy bench --bundle {f} {how}"]
        parent = manifest.parent
        if parent is not None and parent.path is not None:
            bundle = shlex.quote(Path(os.path.normpath(folder / parent.path)).as_posix())
            lines += ["# build again (another GPU, TensorRT or onnxruntime version) from the parent bundle:",
                      f"eeg2img-deploy build-engines --bundle {bundle} --out {f} --backend {manifest.backend.value} "
                      f"{build} --max-batch {manifest.bundle.max_batch}".replace("  ", " ")]
    lines += ["```", "", f"The first start checks every file's sha256 against `{MANIFEST_NAME}` and records it in "
              f"`{STAMP_NAME}`; later starts hash only files whose size or times changed. Add `--verify` to hash "
              "everything again.", ""]
    return lines


def _sources(manifest: Manifest) -> list[str]:
    out = ["## Sources and licences", "",
           "Made from these weights: this folder holds them, converted, so their licences apply to it. "
           "(The toolkit's `init-tiny` weights are random and carry none of them.)", "",
           "| source | file | sha256 | from | licence |", "|---|---|---|---|---|"]
    kind = manifest.bundle.encoder.kind
    upstreams = {**UPSTREAMS, **(BRAINFLORA_UPSTREAMS if kind is EncoderKind.BRAINFLORA else {}),
                 **(CUSTOM_UPSTREAMS if kind is EncoderKind.CUSTOM else {})}
    for key, src in manifest.sources.items():
        up = upstreams.get(key, UNKNOWN)
        out.append(f"| {up.what or key} | `{src.file_name or src.name or '-'}` | `{src.sha256}` | {up.origin} | {up.licence} |")
    return out + [""]


def _made(manifest: Manifest) -> list[str]:
    b, eeg = manifest.bundle, manifest.eeg
    fused = manifest.step_counts(Stage.PRIOR_SAMPLER)
    out = ["## How it was made", "", _encoder_line(manifest),
           f"- EEG input: {len(eeg.channels)} channels x {eeg.n_times} samples at {eeg.sfreq:g} Hz from "
           f"{eeg.tmin:g} s; whitening matrix {'shipped (applied by the runtime)' if eeg.whitening else 'not shipped'}",
           f"- image size {b.image_size} px, largest batch {b.max_batch}, SDXL-Turbo step counts "
           f"{', '.join(map(str, b.steps))}, IP-Adapter scale {b.ip_scale:g}",
           "- diffusion prior: stepwise graph for any step count" +
           (f"; fused DDPM graphs for {', '.join(map(str, fused))} steps" if fused else ""),
           f"- fp32-only stages: {', '.join(map(str, b.fp32_only_stages)) or 'none'}; ONNX opset {b.opset}"]
    if not b.recommended.is_empty():
        r = b.recommended
        given = [f"{n:g} {what}" for n, what in ((r.prior_steps, "prior steps"), (r.guidance, "guidance"),
                                                 (r.steps, "SDXL-Turbo steps")) if n is not None]
        out.append(f"- recommended by the encoder's authors ({r.source or '?'}): {', '.join(map(str, given))}; "
                   "`infer` takes them where the command line does not set them")
    if b.low_level is not None:
        out.append(f"- low-level path: latent convention `{b.low_level.latent_convention}`")
    if manifest.engine and manifest.engine.tensorrt:
        trt, e = manifest.engine.tensorrt, next((a.engine for a in manifest.artifacts if a.engine), None)
        gpu = f" on {e.gpu_name} (sm_{(e.compute_capability or '').replace('.', '')})" if e and e.gpu_name else ""
        out.append(f"- backend: TensorRT {e.tensorrt_version if e else '?'}{gpu}, preset `{trt.preset}`; the engines run "
                   "only on that TensorRT version and GPU architecture")
        tf32 = {a.label(): bool(a.engine.key.tensorrt.tf32) for a in manifest.artifacts if a.engine}
        out.append("- TF32 (`BuilderFlag.TF32`): off for " + (", ".join(k for k, on in tf32.items() if not on) or "none")
                   + " (fp32 engines compute in fp32); on for " + (", ".join(k for k, on in tf32.items() if on) or "none"))
    if manifest.engine and manifest.engine.onnxruntime:
        ort = manifest.engine.onnxruntime
        out.append(f"- backend: onnxruntime, optimized for `{ort.provider.execution_provider}` (graph optimization `{ort.graph_optimization_level}`)")
    if manifest.parent is not None:
        p = manifest.parent
        out.append(f"- parent bundle: `{p.bundle}` (at `{p.path or '?'}` from here), its `{MANIFEST_NAME}` sha256 "
                   f"`{p.manifest_sha256}`")
    out.append("- libraries: " + ", ".join(f"{k} {v}" for k, v in manifest.libraries.items()))
    return out + [""]


def _encoder_line(manifest: Manifest) -> str:
    b, enc = manifest.bundle, manifest.bundle.encoder
    ids = (f"subject table of {b.num_subjects} rows (ids 0..{b.num_subjects - 1})" if b.num_subjects is not None
           else "subject ids passed as they are" if enc.uses_subject_ids else "subject ids not used")
    if enc.kind is EncoderKind.BRAINFLORA:
        aside = manifest.sources["encoder"].found.get("left_aside", {}) if "encoder" in manifest.sources else {}
        towers = ", ".join(f"`{t}`" for t in aside) or "none"
        return (f"- encoder: BrainFLORA's UnifiedEncoder, EEG tower and MoE projection (towers left aside: {towers}); "
                f"{ids}")
    if enc.kind is EncoderKind.CUSTOM:
        code = f", source sha256 `{enc.factory_sha256}`" if enc.factory_sha256 else ""
        return f"- encoder: your model, `--encoder-factory {enc.factory}`{code}; {ids}"
    variant = b.encoder_variant
    return (f"- encoder: the paper's ATM-S, token slice `{variant.token_slice}` "
            f"({'[:, :63], the paper-era code' if variant.token_slice == 'paper' else '[:, 1:], the 2025 refactor'}), "
            f"positional embedding {'on' if variant.positional_embedding else 'off'}; {ids}")


def _artifacts(manifest: Manifest) -> list[str]:
    out = ["## Files", "", "| stage | precision | file | MB | sha256 |", "|---|---|---|---|---|"]
    for a in manifest.artifacts:
        stage = a.stage if a.steps is None else f"{a.stage} ({a.steps} steps)"
        out.append(f"| {stage} | {a.precision.value} | `{a.file}` | {a.size_bytes / 1e6:.1f} | `{a.sha256}` |")
        if a.data_file:
            out.append(f"| {stage} | {a.precision.value} | `{a.data_file}` (external data) | | `{a.data_sha256}` |")
    out.append(f"| constants | | `{manifest.constants_file}` | | `{manifest.constants_sha256}` |")
    return out
