"""Options shared by the commands, one vocabulary for all of them (click and stdlib only at the top).

- ``--backend onnxruntime|tensorrt``: what runs the graphs;
- ``--provider cpu|cuda|tensorrt``: onnxruntime's execution provider;
- ``--torch-device``: a torch device (``reference``, the ``bench`` baseline).

A new command that runs the pipeline takes :func:`runtime_options` and gets one ``runtime``
argument, a :class:`RuntimeOptions`, whose :meth:`~RuntimeOptions.open` opens the bundle.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import numpy as np

from .names import RUNTIME_BACKENDS, Decoder, Precision, Provider

RUNTIME_OPTION_NAMES = ("backend", "provider", "precision", "allow_cpu_fallback", "threads", "vae", "verify")


class FiniteFloat(click.ParamType):
    """A float that is not NaN or infinite (``float("nan")`` parses, and would run to black images)."""

    name = "float"

    def __init__(self, min: float | None = None) -> None:
        self.min = min

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            x = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(x):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.min is not None and x < self.min:
            self.fail(f"{value} is below {self.min}", param, ctx)
        return x


FINITE = FiniteFloat()
POSITIVE_INT = click.IntRange(min=1)
NON_NEGATIVE_INT = click.IntRange(min=0)


def _choice(enum) -> click.Choice:
    return click.Choice([m.value for m in enum])


@dataclass(frozen=True)
class RuntimeOptions:
    """What ``--backend/--provider/--precision/--allow-cpu-fallback/--threads/--vae/--verify`` asked for."""

    backend: str = "onnxruntime"
    provider: str = "cpu"
    precision: str | None = None
    allow_cpu_fallback: bool = False
    threads: int | None = None
    vae: str = "full"
    verify: bool = False  # hash every file again instead of trusting the folder's record (integrity.py)

    def open(self, bundle: str | Path, **extra: Any):
        """``Pipeline.from_bundle`` with these options (``extra``: its other arguments, e.g. ``low_level``)."""
        from .runtime.pipeline import Pipeline

        return Pipeline.from_bundle(bundle, **asdict(self), **extra)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def option_group(*options):
    """One decorator applying several click options; ``--help`` lists them in the order given."""

    def apply(f):
        for opt in reversed(options):
            f = opt(f)
        return f

    return apply


def runtime_options(f):
    """Add the runtime options to a command; it receives them as one ``runtime: RuntimeOptions`` argument."""

    @functools.wraps(f)
    def wrapper(*args, **kw):
        runtime = RuntimeOptions(**{k: kw.pop(k) for k in RUNTIME_OPTION_NAMES})
        return f(*args, runtime=runtime, **kw)

    opts = [
        click.option("--backend", type=click.Choice([b.value for b in RUNTIME_BACKENDS]), default="onnxruntime",
                     show_default=True, help="What runs the graphs (tensorrt needs an engine folder from build-engines)."),
        click.option("--provider", type=_choice(Provider), default="cpu", show_default=True,
                     help="onnxruntime's execution provider (--backend onnxruntime)."),
        click.option("--precision", type=_choice(Precision), default=None,
                     help="Default: fp32 on the CPU, fp16 on a GPU."),
        click.option("--allow-cpu-fallback", is_flag=True, help="Warn instead of failing when a GPU provider is missing."),
        click.option("--threads", type=POSITIVE_INT, default=None, help="onnxruntime CPU threads per session [default: all cores]."),
        click.option("--vae", type=_choice(Decoder), default="full", show_default=True,
                     help="Latent decoder: SDXL's VAE (full) or TAESDXL (tiny)."),
        verify_option(),
    ]
    return option_group(*opts)(wrapper)


def verify_option():
    return click.option("--verify", is_flag=True, help="Hash every file against the manifest again (by default a file "
                        "whose sha256 matched once is trusted while its size and times stay the same).")


def sampling_options(f):
    """--seed, --steps, --prior-steps, --guidance: what ``reference`` and ``infer`` share."""
    opts = [
        click.option("--seed", default=0, type=NON_NEGATIVE_INT, show_default=True),
        click.option("--steps", type=click.Choice(["1", "4"]), default="1", show_default=True,
                     help="SDXL-Turbo steps (paper: 4)."),
        click.option("--prior-steps", default=50, type=POSITIVE_INT, show_default=True),
        click.option("--guidance", default=5.0, type=FINITE, show_default=True, help="Prior classifier-free guidance."),
    ]
    return option_group(*opts)(f)


def image_size_option(help: str):
    return click.option("--image-size", default=512, type=POSITIVE_INT, show_default=True, callback=_multiple_of_64,
                        help=help)


def _multiple_of_64(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value % 64:
        raise click.BadParameter(f"{value} is not a multiple of 64 (the UNet halves the latents three times)")
    return value


def torch_device_option(help: str = "torch device: cpu, cuda, cuda:1."):
    return click.option("--torch-device", default="cpu", show_default=True, help=help)


# ---- weights and EEG ------------------------------------------------------------------------------------
def weights_options(f):
    """--weights DIR plus per-component overrides, for real installs."""
    opts = [
        click.option("--weights", type=click.Path(file_okay=False, path_type=Path), help="Weights folder (see README)."),
        click.option("--encoder", type=click.Path(path_type=Path), help="ATM encoder checkpoint (.pth/.pt/.safetensors)."),
        click.option("--prior", type=click.Path(path_type=Path), help="Diffusion prior checkpoint."),
        click.option("--sdxl", type=click.Path(file_okay=False, path_type=Path), help="SDXL-Turbo diffusers folder."),
        click.option("--ip-adapter", type=click.Path(path_type=Path), help="IP-Adapter folder or file (h94 layout)."),
        click.option("--taesd", type=click.Path(file_okay=False, path_type=Path), help="TAESDXL folder (fast VAE)."),
        click.option("--low-level", is_flag=False, flag_value="", default=None, metavar="[PATH]",
                     help="Low-level encoder checkpoint [default: weights/low-level/]; `reference --low-level` runs its path."),
        click.option("--latent-convention", type=click.Choice(["unscaled", "scaled"]), default="unscaled", show_default=True,
                     help="What the low-level encoder regresses: unscaled VAE latents (the paper) or scaled ones."),
        click.option("--token-slice", type=click.Choice(["paper", "refactor"]), default="paper", show_default=True,
                     help="Encoder token slice: paper-era [:, :63] or the 2025 refactor's [:, 1:]."),
        click.option("--positional-embedding/--no-positional-embedding", default=False, show_default=True,
                     help="Add the positional embedding (repository fix of December 2025)."),
    ]
    return option_group(*opts)(f)


def resolve_layout(kw: dict):
    from .weights import resolve_weights

    low_level = kw.pop("low_level")
    return resolve_weights(
        kw.pop("weights"), encoder=kw.pop("encoder"), prior=kw.pop("prior"), sdxl=kw.pop("sdxl"),
        ip_adapter=kw.pop("ip_adapter"), taesd=kw.pop("taesd"), low_level=low_level or None,
        git=kw.pop("git", None), projector=kw.pop("projector", None),
    )


def encoder_variant(kw: dict):
    """The ``--token-slice``/``--positional-embedding`` choice, as the manifest records it."""
    from .manifest import EncoderVariantInfo

    return EncoderVariantInfo(token_slice=kw.pop("token_slice"), positional_embedding=kw.pop("positional_embedding"))


def eeg_options(f):
    opts = [
        click.option("--eeg", "eeg_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
                     help="EEG trials: .npy (63,250)/(N,63,250), .npz, THINGS-EEG2 file, or raw (.fif/.edf/.bdf/.vhdr)."),
        click.option("--subject", required=True, type=int, help="Subject id (sub-08 -> 8)."),
        click.option("--trials", default=None, help="Which trials, as a Python slice: '0', '0:4', '::10'."),
        click.option("--trusted-pickle", is_flag=True, help="Allow THINGS-EEG2 preprocessed files (pickles): trusted files only."),
        click.option("--whitening", type=click.Path(dir_okay=False, path_type=Path),
                     help="(63,63) whitening matrix .npy, for bundles that ship none."),
        click.option("--events", "events_path", type=click.Path(dir_okay=False, path_type=Path),
                     help="Raw recordings: stimulus events (n,3) .npy or mne events file, when no stim channel/annotations."),
        click.option("--event-id", default=None, help="Raw recordings: which events, as JSON: 3, [1, 2] or {\"stim\": 1}."),
        click.option("--rename-channels", type=click.Path(dir_okay=False, path_type=Path),
                     help="Raw recordings: JSON {\"name in file\": \"encoder channel name\"}."),
        click.option("--allow-resample", is_flag=True, help="Raw recordings: upsample rates below 250 Hz instead of refusing."),
    ]
    return option_group(*opts)(f)


shared_subject_token_option = click.option(
    "--shared-subject-token", is_flag=True,
    help="Give subject ids past the encoder's table the learned shared subject token, as the paper does "
         "(sub-10 is id 10, past the paper-era 10-row tables), instead of refusing them.")


def low_level_options(f):
    """--strength and --low-level-mode of the low-level path (reference, infer, bench)."""
    opts = [
        click.option("--strength", default=0.5, show_default=True, type=FiniteFloat(min=0.0),
                     help="Low-level img2img strength: the last int(steps * strength) steps run (paper demo: 0.5)."),
        click.option("--low-level-mode", type=click.Choice(["image", "latent"]), default="image", show_default=True,
                     help="image: the paper's decode/CLIP-normalise/encode round trip; latent: skip it (faster)."),
    ]
    return option_group(*opts)(f)


def parse_event_id(text: str | None):
    """``--event-id`` JSON: a code, a list of codes or {description: code}."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise click.BadParameter(f"--event-id {text!r} is not JSON: give 3, [1, 2] or '{{\"stim\": 1}}'") from None
    ok = (isinstance(value, int) or (isinstance(value, list) and all(isinstance(v, int) for v in value))
          or (isinstance(value, dict) and all(isinstance(v, int) for v in value.values())))
    if not ok or isinstance(value, bool):
        raise click.BadParameter(f"--event-id {text!r}: expected an integer code, a list of codes or an object of codes")
    return value




def low_level_settings(enabled: bool, strength: float, mode: str, steps: int):
    """The low-level options, checked before anything is loaded (a strength that runs no step fails here)."""
    if not enabled:
        return None
    from .core.options import LowLevelOptions
    from .core.schedulers import img2img_cut

    options = LowLevelOptions(strength=strength, mode=mode)
    img2img_cut(steps, strength)
    return options


def read_eeg(kw: dict) -> tuple[np.ndarray, np.ndarray]:
    """The EEG options' trials and subject ids (the --whitening option stays in kw: the runtime applies it)."""
    from .eeg.readers import load_eeg
    from .eeg.spec import validate_subject_ids

    trials = load_eeg(kw.pop("eeg_path"), trusted_pickle=kw.pop("trusted_pickle"), events=kw.pop("events_path", None),
                      event_id=parse_event_id(kw.pop("event_id", None)), allow_resample=kw.pop("allow_resample", False),
                      rename_channels=kw.pop("rename_channels", None))
    data = trials.data[parse_slice(kw.pop("trials"), len(trials))]
    return data, validate_subject_ids(kw.pop("subject"), len(data))




def whiten_if_asked(eeg: np.ndarray, kw: dict) -> np.ndarray:
    """--whitening for commands without a bundle (reference, client): the runtime's one implementation."""
    path = kw.pop("whitening", None)
    if not path:
        return eeg
    from .eeg.whitening import apply_whitening

    return apply_whitening(eeg, path)



def parse_slice(text: str | None, n: int) -> slice:
    if text is None:
        return slice(None)
    try:
        parts = [int(p) if p.strip() else None for p in text.split(":")]
    except ValueError:
        raise click.BadParameter(f"--trials {text!r} is not a slice like '0', '0:4' or '::10'") from None
    if len(parts) == 1:
        i = parts[0]
        if i is None or not -n <= i < n:
            raise click.BadParameter(f"--trials {text} is out of range for {n} trials")
        return slice(i, i + 1 if i != -1 else None)
    sl = slice(*parts)
    if not range(n)[sl]:
        raise click.BadParameter(f"--trials {text} selects no trial of {n}")
    return sl


# ---- logging: results on stdout, logs on stderr ------------------------------------------------------
def setup_logging(verbose: int) -> None:
    """Warnings by default, progress notes (INFO) with -v, DEBUG with -vv; always to stderr, so stdout
    holds only results and an error is the one line on stderr."""
    from rich.console import Console
    from rich.logging import RichHandler

    level = logging.WARNING - 10 * min(verbose, 2)
    handler = RichHandler(console=Console(stderr=True), show_path=False)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)


def _more_verbose(ctx: click.Context, param: click.Parameter, value: int) -> None:
    if value:  # -v after the subcommand adds to -v before it
        root = ctx.find_root()
        root.meta["eeg2img_deploy.verbose"] = root.meta.get("eeg2img_deploy.verbose", 0) + value
        setup_logging(root.meta["eeg2img_deploy.verbose"])


def verbose_option() -> click.Option:
    return click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_more_verbose,
                        help="Log progress to stderr (-vv: debug); also before the command.")
