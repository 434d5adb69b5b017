"""Build presets: what shapes an engine accepts and how hard the builder tries, per kind of machine.

``workstation`` (a desktop or server GPU): dynamic batch 1..max_batch, optimized for batch 1, builder
optimization level 3 (TensorRT's default), no workspace cap, no weight streaming.

``jetson-orin`` (JetPack 6.1/6.2: CUDA 12.6, TensorRT 10.3; TensorRT 11 does not support JetPack 6):
a static batch of 1 (one kernel choice per layer, no profile switching, and CUDA graphs can be
replayed; the caption decoder's cache length stays dynamic), builder optimization level 2 (the builder
runs on a small ARM CPU; level 3+ costs much longer builds for little gain on this GPU), the tactic
workspace capped, and weight streaming allowed for the UNet when its weights do not fit beside
everything else.

Jetson memory plan
------------------
A Jetson has one DRAM shared by the OS, the CPU and the GPU; ``cudaMemGetInfo`` reports what the
whole system has free. What one 512x512 image needs, in fp16:

====================  =======  ==========================================================================
part                   size    note
====================  =======  ==========================================================================
SDXL UNet weights      5.1 GB  2.567 B parameters; the only large part
VAE decoder            0.1 GB  (TAESDXL decoder: ~5 MB, the cheap alternative)
EEG encoder + prior    <0.1 GB ATM ~3.1 M, prior ~9.7 M parameters
text encoders          0 GB    not loaded: the empty-prompt embeddings are precomputed constants
activations + context  ~1 GB   UNet at batch 1 plus the CUDA/TensorRT context; more while building
OS + desktop           1-2 GB  less when headless
====================  =======  ==========================================================================

* AGX Orin 64 GB / 32 GB: everything fits with room to spare; build on the device with the preset as is
  (workspace capped at 4 GB so a build never pushes the OS into swap).
* Orin NX 16 GB: fits at run time (~7-8 GB in use), but building the UNet engine is tight because the
  builder holds the parsed weights, the plan being written and the tactic workspace at once: run
  headless, keep the 2 GB workspace cap (``--workspace-gb 2``) and build one stage at a time.
* Orin Nano 8 GB: the fp16 UNet alone (5.1 GB) plus the OS and context leaves nothing for
  activations. Weight streaming keeps only part of the weights resident in the GPU's working set, but
  on a Jetson "host" and "device" memory are the same DRAM, so it does *not* lower the total; it only
  helps on discrete GPUs with little VRAM. On an Orin Nano use the TAESD decoder and expect the UNet
  to need swap or a smaller model; ``weight_streaming="auto"`` enables it only where the weights
  exceed the free device memory, where a discrete GPU does benefit.

None of these figures were measured on a Jetson by this project; they follow from the parameter
counts and NVIDIA's published JetPack 6 component versions (see the README's performance notes).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from ..errors import EngineError
from ..manifest import AxisRange

GB = 1 << 30
UNET_FP16_WEIGHT_BYTES = int(5.14e9)  # SDXL UNet, 2.567 B parameters in fp16


@dataclass(frozen=True)
class BuildPreset:
    name: str
    max_batch: int  # images per call; the prior's cond+uncond axis ("batch2") scales with it
    opt_batch: int  # the batch size the builder tunes kernels for
    static_shapes: bool  # batch min = opt = max = max_batch (other axes keep their range): CUDA graphs replay
    builder_optimization_level: int  # 0..5; 3 is TensorRT's default, higher = longer builds
    workspace_gb: float | None  # cap on the tactic workspace pool; None = TensorRT's default (all memory)
    weight_streaming: Literal["off", "auto", "on"] = "off"  # "auto": only where weights exceed free memory
    weight_streaming_budget_gb: float | None = None  # resident weights at run time; None = TensorRT chooses
    cuda_graphs: bool = False  # replay a captured CUDA graph when shapes repeat (runtime setting)
    tensorrt: str | None = None  # the TensorRT the target ships (JetPack 6: 10.3), whose rules --check applies

    def __post_init__(self) -> None:
        if not 1 <= self.opt_batch <= self.max_batch:
            raise EngineError(
                f"preset {self.name!r}: opt_batch {self.opt_batch} must be within 1..max_batch {self.max_batch}"
            )
        if not 0 <= self.builder_optimization_level <= 5:
            raise EngineError(
                f"preset {self.name!r}: builder optimization level {self.builder_optimization_level} is not in 0..5"
            )
        if self.workspace_gb is not None and self.workspace_gb <= 0:
            raise EngineError(f"preset {self.name!r}: workspace_gb must be positive, got {self.workspace_gb}")

    def with_overrides(
        self, *, max_batch: int | None = None, opt_level: int | None = None, workspace_gb: float | None = None
    ) -> BuildPreset:
        """The preset with the command line's overrides; a static preset stays static at the new size."""
        changes: dict = {}
        if max_batch is not None:
            changes["max_batch"] = max_batch
            changes["opt_batch"] = max_batch if self.static_shapes else min(self.opt_batch, max_batch)
        if opt_level is not None:
            changes["builder_optimization_level"] = opt_level
        if workspace_gb is not None:
            changes["workspace_gb"] = workspace_gb
        return dataclasses.replace(self, **changes)

    @property
    def workspace_bytes(self) -> int | None:
        return None if self.workspace_gb is None else int(self.workspace_gb * GB)

    def wants_weight_streaming(self, weight_bytes: int, free_device_bytes: int | None) -> bool:
        if self.weight_streaming == "on":
            return True
        if self.weight_streaming == "off" or free_device_bytes is None:
            return False
        # leave a quarter of free memory for activations, the workspace and the other stages
        return weight_bytes > 0.75 * free_device_bytes


PRESETS: dict[str, BuildPreset] = {
    p.name: p
    for p in (
        BuildPreset(
            name="workstation",
            max_batch=4,
            opt_batch=1,
            static_shapes=False,
            builder_optimization_level=3,
            workspace_gb=None,
        ),
        BuildPreset(
            name="jetson-orin",
            max_batch=1,
            opt_batch=1,
            static_shapes=True,
            builder_optimization_level=2,
            workspace_gb=2.0,
            weight_streaming="auto",
            cuda_graphs=True,
            tensorrt="10.3",
        ),
    )
}


def get_preset(name: str) -> BuildPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise EngineError(f"unknown build preset {name!r}: choose one of {', '.join(PRESETS)}") from None


def profile_axes(preset: BuildPreset, bundle_axes: dict[str, AxisRange]) -> dict[str, AxisRange]:
    """Min/opt/max for every dynamic axis, from the preset's batch and the bundle's ``settings['axes']``.

    Axes that are a fixed multiple of "batch" in the bundle (the prior's cond+uncond "batch2" = 2x)
    keep that multiple; any other axis keeps the bundle's range, in static presets too: a static preset
    fixes the batch, while the caption decoder's cache length ("past") grows by one per generated token.
    """
    if "batch" not in bundle_axes:
        raise EngineError(f"the bundle's settings['axes'] has no 'batch' axis (it has {sorted(bundle_axes)})")
    batch = bundle_axes["batch"]
    if preset.max_batch > batch.max:
        raise EngineError(
            f"max batch {preset.max_batch} exceeds the bundle's {batch.max} (validated at export): "
            f"export again with `eeg2img-deploy export --max-batch {preset.max_batch}` or pass --max-batch {batch.max}"
        )
    built = AxisRange(preset.max_batch if preset.static_shapes else 1, preset.opt_batch, preset.max_batch)
    out = {}
    for name, r in bundle_axes.items():
        k = r.max // batch.max
        out[name] = built.scaled(k) if k and r == batch.scaled(k) else r
    return out
