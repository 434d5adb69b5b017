"""Known-harmless notes of torch, diffusers and transformers, dropped around the call that prints them.

A normal run shows only what a user can act on. Each note below is a library talking about its own
internals or about a choice this toolkit made on purpose. ``quiet(...)`` drops the notes it is given
only for the block it wraps (the call that triggers them), matched by logger or warning category and
by the message's text, so every other warning of these libraries, and all of ours, still shows.
With ``bars=True`` it also hides the libraries' loading and saving progress bars unless ``-v`` is on.
``tests/test_quiet.py`` checks that none of these notes reaches a run's stderr and that others do.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class LogNote:
    """A library's log record: dropped when it comes from ``logger`` and its message contains ``text``."""

    logger: str
    text: str


@dataclass(frozen=True)
class WarningNote:
    """A Python warning: ignored when it is a ``category`` and its message starts with ``text``."""

    category: str  # a builtin warning class's name, or "TracerWarning" (torch.jit's)
    text: str


# diffusers' SDXL pipeline imports transformers' image processors; without torchvision they fall back to
# their PIL versions (those the paper used) and say so once per process. Nothing here uses torchvision.
TORCHVISION_FALLBACK = LogNote("transformers.utils.import_utils", "requires torchvision (not installed); falling back to")
# The IP-Adapter's CLIP image encoder is left out on purpose: the diffusion prior's embedding replaces it.
NO_IMAGE_ENCODER = LogNote("diffusers.loaders.ip_adapter", "image_encoder is not loaded since `image_encoder_folder=None`")
# load_ip_adapter casts the UNet to its own dtype with ``to()``; the list of modules kept in fp32 is empty
# (a non-empty list still shows).
NOTHING_KEPT_IN_FP32 = LogNote("diffusers.models.modeling_utils", "that should be kept in float32: [].")
# eval loads the vision half of a full CLIP folder (openai/clip-vit-large-patch14): its text weights are
# "UNEXPECTED" by design; eval checks the loading info itself and refuses a folder with a missing key.
CLIP_VISION_FROM_FULL = LogNote("transformers.modeling_utils", "CLIPVisionModelWithProjection LOAD REPORT")
# The torch.export-based ONNX exporter cannot register torchvision's ops without torchvision.
ONNX_TORCHVISION_OPS = LogNote("torch.onnx._internal.exporter._registration", "torchvision is not installed. Skipping")

# torch.onnx.export, as export/onnx_io.py calls it. Every graph is then validated against PyTorch in
# onnxruntime, which is what would catch a trace gone wrong.
ONNX_EXPORT = (
    # the TorchScript exporter: chosen on purpose for graphs that fit in memory (10-15x faster)
    WarningNote("DeprecationWarning", "You are using the legacy TorchScript-based ONNX export"),
    WarningNote("DeprecationWarning", "The feature will be removed. Please remove usage of this function"),
    WarningNote("TracerWarning", "Converting a tensor to a Python"),  # shape arithmetic in diffusers/transformers
    WarningNote("UserWarning", "Constant folding - Only steps=1 can be constant folded"),
    WarningNote("UserWarning", "Exporting aten::index operator of advanced indexing"),
    # the torch.export-based exporter (graphs over 1 GiB): dynamic_axes are converted, as intended
    WarningNote("UserWarning", "# 'dynamic_axes' is not recommended when dynamo=True"),
    WarningNote("DeprecationWarning", "from_dynamic_axes_to_dynamic_shapes is deprecated"),
    WarningNote("FutureWarning", "`isinstance(treespec, LeafSpec)` is deprecated"),
    ONNX_TORCHVISION_OPS,
)


class _Drop(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def _category(name: str) -> type[Warning]:
    if name == "TracerWarning":
        import torch

        return torch.jit.TracerWarning
    return getattr(builtins, name)


@contextlib.contextmanager
def _hub_progress_bars(show: bool) -> Iterator[None]:
    """diffusers' and transformers' tqdm bars on or off for the block, as they were afterwards."""
    switches = []
    with contextlib.suppress(ImportError):
        from diffusers.utils import logging as diffusers_logging

        switches.append((diffusers_logging.is_progress_bar_enabled, diffusers_logging.enable_progress_bar,
                         diffusers_logging.disable_progress_bar))
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as transformers_logging

        switches.append((transformers_logging.is_progress_bar_enabled, transformers_logging.enable_progress_bar,
                         transformers_logging.disable_progress_bar))
    was = [enabled() for enabled, _, _ in switches]
    for _, enable, disable in switches:
        enable() if show else disable()
    try:
        yield
    finally:
        for on, (_, enable, disable) in zip(was, switches):
            enable() if on else disable()


@contextlib.contextmanager
def quiet(*notes: LogNote | WarningNote, bars: bool = False) -> Iterator[None]:
    """Drop ``notes`` for the block; with ``bars``, the libraries' progress bars too unless ``-v``."""
    drops = [(logging.getLogger(n.logger), _Drop(n.text)) for n in notes if isinstance(n, LogNote)]
    for logger, drop in drops:
        logger.addFilter(drop)
    try:
        with warnings.catch_warnings(), contextlib.ExitStack() as stack:
            for n in notes:
                if isinstance(n, WarningNote):
                    warnings.filterwarnings("ignore", message=re.escape(n.text), category=_category(n.category))
            if bars:
                stack.enter_context(_hub_progress_bars(logging.getLogger("eeg2img_deploy").isEnabledFor(logging.INFO)))
            yield
    finally:
        for logger, drop in drops:
            logger.removeFilter(drop)
