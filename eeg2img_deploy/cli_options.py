"""Options shared by the commands, one vocabulary for all of them (click and stdlib only at the top).

- ``--backend onnxruntime|tensorrt``: what runs the graphs;
- ``--provider cpu|cuda|tensorrt``: onnxruntime's execution provider;
- ``--torch-device``: a torch device (``reference``, the ``bench`` baseline).

A new command that runs the pipeline takes :func:`runtime_options` and gets one ``runtime``
argument, a :class:`RuntimeOptions`, whose :meth:`~RuntimeOptions.open` opens the bundle, and
:func:`run_options` (fields of :class:`~.core.options.RunOptions`, their defaults, ranges and help
written once there) and gets one ``run`` argument. Every number's range is checked while the command
line is parsed and shown in ``--help``.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import numpy as np

from .core.options import IMAGE_SIZE, RUN_FIELDS, OneOf, Range, Rule, RunOptions, option_name
from .errors import Eeg2ImgError
from .names import RUNTIME_BACKENDS, Decoder, Precision, Provider

RUNTIME_OPTION_NAMES = ("backend", "provider", "precision", "allow_cpu_fallback", "threads", "vae", "verify")


class Ranged(click.ParamType):
    """A number or choice checked by a :mod:`.core.options` rule (the library's own check, so the same words)."""

    def __init__(self, rule: Rule, kind: type = float) -> None:
        self.rule, self.kind = rule, kind
        self.name = "choice" if isinstance(rule, OneOf) else kind.__name__

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return f"[{self.rule}]" if isinstance(self.rule, OneOf) else {int: "INTEGER", float: "FLOAT"}[self.kind]

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(self.rule, OneOf):
            found = [v for v in self.rule.values if str(v) == str(value)]
            if not found:
                self.fail(f"{value!r} is not one of {self.rule}", param, ctx)
            return found[0]
        try:
            x = value if isinstance(value, self.kind) else self.kind(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not {'an integer' if self.kind is int else 'a number'}", param, ctx)
        if (problem := self.rule.problem(x)) is not None:
            self.fail(problem, param, ctx)
        return x


class _Option(click.Option):
    """An option whose ``--help`` line shows its range (a :class:`Ranged` type's rule), as click's IntRange does."""

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        if isinstance(self.show_default, str):  # click would write "(from the bundle, else 50)"
            extra["default"] = self.show_default
        if isinstance(self.type, Ranged) and isinstance(self.type.rule, Range) and str(self.type.rule):
            extra["range"] = str(self.type.rule)
        return extra


def number(*decls: str, rule: Range, kind: type = float, **kw: Any):
    """A numeric option with its range checked and shown in ``--help``."""
    return click.option(*decls, cls=_Option, type=Ranged(rule, kind), **kw)


def run_options(*names: str, defaults_from: str = "from the bundle, else {fallback:g}",
                helps: dict[str, str] | None = None):
    """Add the :class:`RunOptions` fields ``names`` as options (default, range and help from the field, or from
    ``helps`` where one command means it differently); the command receives them as one ``run: RunOptions``,
    built and checked before the command body runs. ``defaults_from``: how ``--help`` names where the
    ``from_bundle`` fields' defaults come from (``{fallback}``: the field's own default, taken where nothing is
    recommended)."""

    def decorate(f):
        @functools.wraps(f)
        def wrapper(*args, **kw):
            try:  # the ranges are click's types; what is left are the rules across options
                run = RunOptions(**{n: kw.pop(n) for n in names})
            except Eeg2ImgError as e:
                raise click.UsageError(str(e)) from None
            return f(*args, run=run, **kw)

        return option_group(*(_run_option(n, defaults_from, (helps or {}).get(n)) for n in names))(wrapper)

    return decorate


def _run_option(name: str, defaults_from: str, help: str | None = None):
    f = RUN_FIELDS[name]
    rule, help = f.metadata["rule"], help or f.metadata["help"]
    if f.default is False:
        return click.option(option_name(name), is_flag=True, help=help)
    kind = {"int": int, "float": float, "str": str}[str(f.type).split(" |")[0]]
    shown: bool | str = f.default is not None
    if "fallback" in f.metadata:  # None: the bundle's recommended value (BrainFLORA's), else the paper's
        shown = defaults_from.format(fallback=f.metadata["fallback"])
    return click.option(option_name(name), cls=_Option, type=Ranged(rule, kind) if rule else kind, default=f.default,
                        show_default=shown, help=help)


class OutputPath(click.Path):
    """An output folder (or file) that must be writable: refused when parsed, before any work, never after it."""

    def __init__(self, *, folder: bool = True) -> None:
        super().__init__(file_okay=not folder, dir_okay=folder, path_type=Path)
        self.folder = folder

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        from .fileio import unwritable_reason

        path = super().convert(value, param, ctx)
        assert isinstance(path, Path)  # path_type=Path
        if (why := unwritable_reason(path, folder=self.folder)) is not None:
            self.fail(why, param, ctx)
        return path


OUT_FOLDER = OutputPath()
# A file the command reads: checked while the command line is parsed, so that client, which reads its EEG only
# once the server has said what its model takes, does not wait --wait seconds for a server first.
INPUT_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
OUT_FILE = OutputPath(folder=False)
POSITIVE_INT = click.IntRange(min=1)
NON_NEGATIVE_INT = click.IntRange(min=0)
SAMPLING = ("seed", "steps", "prior_steps", "guidance", "prior_sampler", "prior_graph", "ip_scale")
LOW_LEVEL = ("strength", "low_level_mode")
SEMANTIC = ("caption", "prompt", "prompt_from_caption", "caption_prior_steps")


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

    def check_bundle(self, bundle: str | Path, subjects, shared_subject_token: bool):
        """What a command can check of ``bundle`` before its engines open (seconds): the subject ids against the
        encoder's table (as ``Pipeline`` checks them). Returns the bundle's EEG spec, the input the engines take."""
        from .manifest import read_manifest
        from .runtime.opening import check_subjects

        manifest = read_manifest(bundle)
        check_subjects(subjects, manifest.bundle, shared_subject_token)
        return manifest.eeg.spec()

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


def image_size_option(help: str):
    return number("--image-size", rule=IMAGE_SIZE, kind=int, default=512, show_default=True, help=help)


class TorchDevice(click.ParamType):
    """A torch device's name (``cpu``, ``cuda``, ``cuda:N``, ``mps``), checked while the command line is parsed: torch
    failed minutes later, deep in a model load, with a traceback. Whether this machine has it is checked where torch
    loads (``models.load.check_torch_device``), before any weights."""

    name = "device"
    SYNTAX = re.compile(r"(cpu|cuda|mps)(:\d+)?")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if not isinstance(value, str) or not self.SYNTAX.fullmatch(value):
            self.fail(f"{value!r} is not a torch device: cpu, cuda, cuda:1 or mps", param, ctx)
        return value


def torch_device_option(help: str = "torch device: cpu, cuda, cuda:1."):
    return click.option("--torch-device", type=TorchDevice(), default="cpu", show_default=True, help=help)


# ---- weights and EEG ------------------------------------------------------------------------------------
WEIGHT_OPTIONS = {
    "weights": click.option("--weights", type=click.Path(file_okay=False, path_type=Path),
                            help="Weights folder (see README)."),
    "encoder": click.option("--encoder", type=click.Path(path_type=Path),
                            help="EEG encoder checkpoint (.pth/.pt/.safetensors): ATM-S or BrainFLORA, told apart by its "
                                 "keys, or your model's weights (--encoder-factory)."),
    "encoder_factory": click.option(
        "--encoder-factory", metavar="MODULE:CALLABLE",
        help="Your own encoder: CALLABLE() returns a torch module, forward(eeg (B, C, T), subject_ids (B,)) -> (B, 1024); "
             "MODULE is importable or a .py file (README, 'Other encoders')."),
    "encoder_channels": click.option(
        "--encoder-channels", type=click.Path(dir_okay=False, path_type=Path),
        help="--encoder-factory: its EEG channels, one name a line (.txt) or JSON [default: the paper's 63]."),
    "prior": click.option("--prior", type=click.Path(path_type=Path), help="Diffusion prior checkpoint."),
}
ENCODER_WEIGHTS = ("weights", "encoder", "encoder_factory", "encoder_channels", "prior")  # bench's torch baseline


def weights_options(f):
    """--weights DIR plus per-component overrides, for real installs."""
    opts = [
        *WEIGHT_OPTIONS.values(),
        click.option("--sdxl", type=click.Path(file_okay=False, path_type=Path), help="SDXL-Turbo diffusers folder."),
        click.option("--ip-adapter", type=click.Path(path_type=Path), help="IP-Adapter folder or file (h94 layout)."),
        click.option("--taesd", type=click.Path(file_okay=False, path_type=Path), help="TAESDXL folder (fast VAE)."),
        click.option("--low-level-encoder", type=click.Path(path_type=Path),
                     help="Low-level encoder checkpoint [default: weights/low-level/, where present]."),
        click.option("--latent-convention", type=click.Choice(["unscaled", "scaled"]), default="unscaled", show_default=True,
                     help="What the low-level encoder regresses: unscaled VAE latents (the paper) or scaled ones."),
        click.option("--token-slice", type=click.Choice(["paper", "refactor"]), default="paper", show_default=True,
                     help="Encoder token slice: paper-era [:, :63] or the 2025 refactor's [:, 1:]."),
        click.option("--positional-embedding/--no-positional-embedding", default=False, show_default=True,
                     help="Add the positional embedding (repository fix of December 2025)."),
    ]
    return option_group(*opts)(f)


def resolve_layout(kw: dict):
    """The weights layout from the options of :func:`weights_options` (or of those a command has, such as bench's
    :data:`ENCODER_WEIGHTS`: the others are found in ``--weights``)."""
    from .weights import resolve_weights

    names = ("weights", "encoder", "prior", "sdxl", "ip_adapter", "taesd", "low_level_encoder", "git", "projector",
             "encoder_factory", "encoder_channels")
    given = {n: kw.pop(n, None) for n in names}
    given["low_level"] = given.pop("low_level_encoder")
    return resolve_weights(given.pop("weights"), **given)


def encoder_variant(kw: dict):
    """The ``--token-slice``/``--positional-embedding`` choice, as the manifest records it."""
    from .manifest import EncoderVariant

    return EncoderVariant(token_slice=kw.pop("token_slice"), positional_embedding=kw.pop("positional_embedding"))


WHITENING_HELP = {
    "bundle": "(63,63) whitening matrix .npy, for bundles that ship none.",
    "weights": "(63,63) whitening matrix .npy, applied to the trials before the encoder.",
    "client": "(63,63) whitening matrix .npy, applied to the trials before they are sent (the server applies "
              "only the one its bundle ships).",
}


def eeg_options(f=None, *, required: bool = True, whitening: str = "bundle"):
    """--eeg, --subject and the reading options; ``required=False`` for a command that needs them in one mode only
    (``eval --retrieval``), which then checks them itself; ``whitening`` says who applies --whitening
    (``WHITENING_HELP``)."""
    if f is None:
        return functools.partial(eeg_options, required=required, whitening=whitening)
    opts = [
        click.option("--eeg", "eeg_path", required=required, type=INPUT_FILE,
                     help="EEG trials: .npy (63,250)/(N,63,250), .npz, THINGS-EEG2 file, or raw (.fif/.edf/.bdf/.vhdr/.xdf)."),
        click.option("--subject", required=required, type=int, help="Subject id (sub-08 -> 8)."),
        click.option("--trials", default=None, help="Which trials, as a Python slice: '0', '0:4', '::10'."),
        click.option("--trusted-pickle", is_flag=True, help="Allow THINGS-EEG2 preprocessed files (pickles): trusted files only."),
        click.option("--whitening", type=INPUT_FILE, help=WHITENING_HELP[whitening]),
        # not INPUT_FILE: the old spelling (--events NAME of an .xdf's marker stream) gets a line naming --event-stream
        click.option("--events", "events_path", type=click.Path(dir_okay=False, path_type=Path),
                     help="Raw recordings (.fif/.edf/.bdf/.vhdr): a file of stimulus events, (n,3) .npy or mne events "
                          "file, when the recording has no stim channel or annotations."),
        click.option("--event-stream", default=None, metavar="NAME",
                     help=".xdf: the marker stream, by name or type [default: the one of type Markers]."),
        click.option("--source", default=None,
                     help=".xdf: the EEG stream, by name or type [default: the one of type EEG]."),
        click.option("--stream-unit", type=click.Choice(["uV", "mV", "V"], case_sensitive=False), default=None,
                     help=".xdf: the EEG's unit where the file declares none (or a wrong one) [default: the declared unit]."),
        click.option("--event-id", default=None, help="Raw recordings: which events, as JSON: 3, [1, 2] or {\"stim\": 1}."),
        click.option("--rename-channels", type=INPUT_FILE,
                     help="Raw recordings: JSON {\"name in file\": \"encoder channel name\"}."),
        click.option("--allow-resample", is_flag=True, help="Raw recordings: upsample rates below 250 Hz instead of refusing."),
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




def bundle_spec(bundle: Path):
    """The :class:`~.eeg.spec.EEGSpec` a bundle's (or engine folder's) encoder reads: its manifest's ``eeg`` section."""
    from .manifest import read_manifest

    return read_manifest(bundle).eeg.spec()


def read_eeg(kw: dict, spec=None) -> tuple[np.ndarray, np.ndarray]:
    """The EEG options' trials and subject ids (the --whitening option stays in kw: the runtime applies it).
    ``spec``: the encoder's :class:`~.eeg.spec.EEGSpec` (default: the paper's 63 channels x 250 samples)."""
    from .eeg.readers import load_eeg
    from .eeg.spec import DEFAULT_SPEC, validate_subject_ids

    trials = load_eeg(kw.pop("eeg_path"), spec=spec or DEFAULT_SPEC, trusted_pickle=kw.pop("trusted_pickle"),
                      events=kw.pop("events_path", None), event_stream=kw.pop("event_stream", None),
                      event_id=parse_event_id(kw.pop("event_id", None)), allow_resample=kw.pop("allow_resample", False),
                      rename_channels=kw.pop("rename_channels", None), source=kw.pop("source", None),
                      stream_unit=kw.pop("stream_unit", None))
    data = trials.data[parse_slice(kw.pop("trials"), len(trials))]
    return data, validate_subject_ids(kw.pop("subject"), len(data))




def whiten_if_asked(eeg: np.ndarray, kw: dict, spec=None) -> np.ndarray:
    """--whitening for commands without a bundle (reference, client): the runtime's one implementation."""
    path = kw.pop("whitening", None)
    if not path:
        return eeg
    from .eeg.spec import DEFAULT_SPEC
    from .eeg.whitening import apply_whitening

    return apply_whitening(eeg, path, spec or DEFAULT_SPEC)



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
    from .terminal import log_handler

    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, handlers=[log_handler()], force=True)


def _more_verbose(ctx: click.Context, param: click.Parameter, value: int) -> None:
    if value:  # -v after the subcommand adds to -v before it
        root = ctx.find_root()
        root.meta["eeg2img_deploy.verbose"] = root.meta.get("eeg2img_deploy.verbose", 0) + value
        setup_logging(root.meta["eeg2img_deploy.verbose"])


def verbose_option() -> click.Option:
    return click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_more_verbose,
                        help="Log progress to stderr (-vv: debug); also before the command.")
