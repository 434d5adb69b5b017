"""The options of one run: every knob with its default and its range written once, checked once.

:class:`RunOptions` has the shape of nanoGPT's ``GPTConfig``: one frozen dataclass, passed whole by the CLI,
``Pipeline``, ``ReferencePipeline``, ``stream``, ``serve`` (one per group of request rows), the client and
``bench``. Each field's :func:`knob` holds its default, its range and its ``--help`` line; the CLI makes
its options from them (``cli_options.run_options``), so a value out of range fails while the command
line is parsed, before anything loads, and the library refuses the same values in the same words.

A field left at None takes the bundle's value when a pipeline runs it (:meth:`RunOptions.resolve`): ``ip_scale``,
the bundle's IP-Adapter scale, and the knobs made with ``knob(..., from_bundle=True)`` (``steps``, ``prior_steps``,
``guidance``): the bundle's recommended run settings (its encoder's authors', e.g. BrainFLORA's 10 prior steps
at guidance 2 with 4 SDXL-Turbo steps), else the knob's own default, the paper's.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..errors import OptionError, SettingsError

MAX_PRIOR_STEPS = 1000  # the prior's DDPM schedule has 1000 steps


@dataclass(frozen=True)
class Range:
    """Finite numbers from ``lo`` to ``hi`` (None: unbounded); ``integer``: whole numbers; ``step``: multiples of it."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo itself excluded, as in (0, 1]
    integer: bool = False
    step: int = 1

    def __str__(self) -> str:
        """As click shows its ranges: ``1<=x<=1000``, ``0<x<=1``, ``x>=0``; empty for any finite number."""
        if self.lo is not None and self.hi is not None:
            text = f"{self.lo:g}{'<' if self.lo_open else '<='}x<={self.hi:g}"
        elif self.lo is not None:
            text = f"x{'>' if self.lo_open else '>='}{self.lo:g}"
        else:
            text = "" if self.hi is None else f"x<={self.hi:g}"
        return f"{text}, multiple of {self.step}" if self.step > 1 else text

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (None: nothing)."""
        if isinstance(value, bool) or not isinstance(value, numbers.Integral if self.integer else numbers.Real):
            return f"{value!r} is not {'an integer' if self.integer else 'a number'}"
        x = float(value)
        if not math.isfinite(x):
            return f"{value!r} is not a finite number"
        low = self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo)
        if low or (self.hi is not None and x > self.hi) or (self.step > 1 and x % self.step):
            return f"{x:g} is not in the range {self}"
        return None


@dataclass(frozen=True)
class OneOf:
    values: tuple[Any, ...]

    def __str__(self) -> str:
        return "|".join(map(str, self.values))

    def problem(self, value: Any) -> str | None:
        return None if value in self.values else f"{value!r} is not one of {', '.join(map(str, self.values))}"


Rule = Range | OneOf
IMAGE_SIZE = Range(64, integer=True, step=64)  # --image-size: the UNet halves the latents three times


def knob(default: Any, rule: Rule | None = None, help: str = "", *, from_bundle: bool = False) -> Any:
    """A :class:`RunOptions` field: its default, the rule it is checked against and its ``--help`` line.
    ``from_bundle``: the field is left at None and a run takes the bundle's recommended value, else ``default``."""
    if from_bundle:
        return field(default=None, metadata={"rule": rule, "help": help, "fallback": default})
    return field(default=default, metadata={"rule": rule, "help": help})


class Resolved(NamedTuple):
    """The knobs a run takes from the bundle when they are left at None (:meth:`RunOptions.resolve`), as set."""

    steps: int
    prior_steps: int
    guidance: float
    ip_scale: float


@dataclass(frozen=True)
class RunOptions:
    """Every knob of one run; the defaults are the paper's."""

    seed: int = knob(0, Range(0, integer=True), "Seed: trial i draws all its noise from (seed, i).")
    steps: int | None = knob(1, OneOf((1, 4)), "SDXL-Turbo steps (the paper: 4).", from_bundle=True)
    prior_steps: int | None = knob(50, Range(1, MAX_PRIOR_STEPS, integer=True), "Prior steps (the paper's DDPM: 50).",
                                   from_bundle=True)
    guidance: float | None = knob(5.0, Range(), "The prior's classifier-free guidance (the paper: 5).", from_bundle=True)
    prior_sampler: str = knob("ddpm", OneOf(("ddpm", "ddim", "dpmpp")),
                              "ddpm is the paper's; see the README for the fast samplers' measured fidelity.")
    prior_graph: str | None = knob(None, OneOf(("fused", "stepwise")),
                                   "fused: the whole DDPM sampler in one graph; stepwise: one prior call per step "
                                   "(any sampler and step count) [default: fused where the bundle has it].")
    ip_scale: float | None = knob(None, Range(), "IP-Adapter scale [default: the bundle's, 1.0].")
    shared_subject_token: bool = knob(False, None, "Give subject ids past the encoder's table the learned shared "
                                      "subject token, as the paper does (sub-10 is id 10, past the paper-era 10-row "
                                      "tables), instead of refusing them.")
    low_level: bool = knob(False, None, "Start Stage II from the low-level encoder's image (img2img).")
    strength: float = knob(0.5, Range(0, 1, lo_open=True), "Low-level img2img strength: the last "
                           "int(steps * strength) steps run (the paper's demo: 0.5).")
    low_level_mode: str = knob("image", OneOf(("image", "latent")),
                               "image: the paper's decode/CLIP-normalise/encode round trip; latent: skip it (faster).")
    caption: bool = knob(False, None, "Caption each trial with GIT (the paper's semantic level): captions.txt.")
    prompt: str | None = knob(None, None, "Text prompt for Stage II, for every trial [default: the empty prompt].")
    prompt_from_caption: bool = knob(False, None, "Use each trial's caption as its Stage II prompt.")
    caption_prior_steps: int = knob(4, Range(1, MAX_PRIOR_STEPS, integer=True),
                                    "Prior steps of the caption's own prior sample (the paper's caption notebook: 4).")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value, rule = getattr(self, f.name), f.metadata["rule"]
            if rule is not None and value is not None and (problem := rule.problem(value)) is not None:
                raise OptionError(f"{option_name(f.name)}: {problem}")
        if self.guidance is not None and self.guidance < 0:
            from ..checks import warn_once  # numpy: not at the top, the CLI imports this module

            warn_once(f"--guidance {self.guidance:g} is negative: it inverts the EEG condition (the prior moves away "
                      "from it; 0 ignores it, 1 uses it alone, the paper uses 5)")
        if self.prompt is not None and self.prompt_from_caption:
            raise OptionError("--prompt and --prompt-from-caption exclude each other: give one")
        if self.prior_graph == "fused" and self.prior_sampler != "ddpm":
            raise OptionError(f"the fused prior graph runs DDPM only: use --prior-graph stepwise with --prior-sampler "
                              f"{self.prior_sampler}")
        if self.low_level and self.steps is not None:  # unresolved: checked again once the bundle's value is in
            img2img_cut(self.steps, self.strength)  # a strength that runs no step fails here

    def replace(self, **changes: Any) -> RunOptions:
        return dataclasses.replace(self, **changes) if changes else self

    @classmethod
    def make(cls, options: RunOptions | None = None, **changes: Any) -> RunOptions:
        """``options`` (default: the defaults) with ``changes``, as a library call's keywords give them."""
        return (options or cls()).replace(**changes)

    def resolve(self, bundle: Any) -> RunOptions:
        """The fields left at None that ``bundle`` (a :class:`~..manifest.BundleSettings`) sets, from it: its
        recommended run settings and its IP-Adapter scale."""
        return self.with_defaults(bundle.recommended, ip_scale=float(bundle.ip_scale))

    def with_defaults(self, recommended: Any = None, **values: Any) -> RunOptions:
        """The ``from_bundle`` fields left at None from ``recommended`` (a :class:`~..manifest.RecommendedRun`, or
        None), else their defaults; other None fields from ``values``."""
        changes = {k: v for k, v in values.items() if getattr(self, k) is None}
        for name, f in RUN_FIELDS.items():
            if "fallback" in f.metadata and getattr(self, name) is None:
                value = getattr(recommended, name, None)
                changes[name] = f.metadata["fallback"] if value is None else value
        return self.replace(**changes)

    def resolved(self) -> Resolved:
        """The fields :meth:`resolve` fills in; options not resolved against a bundle yet are refused."""
        if self.steps is None or self.prior_steps is None or self.guidance is None or self.ip_scale is None:
            raise SettingsError("these run options are not resolved against a bundle: RunOptions.resolve(bundle) first")
        return Resolved(self.steps, self.prior_steps, self.guidance, self.ip_scale)

    @property
    def needs_caption(self) -> bool:
        return self.caption or self.prompt_from_caption

    @property
    def needs_text(self) -> bool:
        return self.prompt is not None or self.prompt_from_caption

    def record(self) -> dict[str, Any]:
        """The options as result.json and bench reports record them (the low-level ones as one entry)."""
        d = dataclasses.asdict(self)
        strength, mode = d.pop("strength"), d.pop("low_level_mode")
        d["low_level"] = {"strength": strength, "mode": mode} if self.low_level else None
        return d


RUN_FIELDS = {f.name: f for f in dataclasses.fields(RunOptions)}


def fallback(name: str) -> Any:
    """The default a ``from_bundle`` field takes when no bundle recommends one (the paper's)."""
    return RUN_FIELDS[name].metadata["fallback"]


def option_name(field_name: str) -> str:
    """The CLI option of a field: ``prior_steps`` -> ``--prior-steps``."""
    return "--" + field_name.replace("_", "-")


def check_low_level_size(latent_side: int, image_size: int) -> None:
    """The encoder's output size is fixed by its layers (the paper's: 64x64 latents, 512x512 images)."""
    if latent_side * 8 != image_size:
        raise SettingsError(
            f"the low-level encoder makes {latent_side}x{latent_side} latents ({latent_side * 8}x{latent_side * 8} "
            f"images), not {image_size // 8}x{image_size // 8}: use --image-size {latent_side * 8}"
        )


def img2img_cut(steps: int, strength: float) -> int:
    """Index of the first step img2img runs, as the paper computes it (``custom_pipeline_low_level.py``).

    ``init_timestep = min(int(steps * strength), steps)``; the last ``init_timestep`` steps run. ``int``
    truncates, so 4 steps at strength 0.6 run 2 steps, not 3; a pair that runs none is refused.
    """
    if not 0.0 < strength <= 1.0:
        raise SettingsError(f"--strength must be in (0, 1], got {strength}")
    run = min(int(steps * strength), steps)
    if run == 0:
        raise SettingsError(
            f"--strength {strength} with --steps {steps} leaves no denoising step (int({steps} * {strength}) = 0): "
            f"raise --strength to at least {1 / steps:g} or use more --steps"
        )
    return steps - run
