from __future__ import annotations

import pytest

from eeg2img_deploy.engines import presets
from eeg2img_deploy.engines.presets import get_preset, profile_axes
from eeg2img_deploy.errors import EngineError
from eeg2img_deploy.manifest import AxisRange as R

AXES = {"batch": R(1, 1, 4), "batch2": R(2, 2, 8)}


def test_workstation_is_dynamic_and_batch2_scales() -> None:
    axes = profile_axes(get_preset("workstation"), AXES)
    assert axes == AXES
    axes = profile_axes(get_preset("workstation").with_overrides(max_batch=2), AXES)
    assert axes["batch2"] == R(2, 2, 4)


def test_jetson_is_static_batch_one_with_a_workspace_cap() -> None:
    p = get_preset("jetson-orin")
    assert p.static_shapes and p.builder_optimization_level < get_preset("workstation").builder_optimization_level
    assert p.workspace_bytes is not None and p.cuda_graphs
    assert profile_axes(p, AXES) == {"batch": R(1, 1, 1), "batch2": R(2, 2, 2)}


def test_static_presets_keep_the_cache_axis_dynamic() -> None:
    """jetson-orin used to fix every non-batch axis at its opt: the caption decoder's cache ("past", 257 visual
    tokens + the text so far) at 269, while its first step needs 257 and each step one more."""
    past = R(257, 269, 289)
    for name in ("jetson-orin", "workstation"):
        axes = profile_axes(get_preset(name).with_overrides(max_batch=2), {**AXES, "past": past})
        assert axes["past"] == past, name
    assert profile_axes(get_preset("jetson-orin").with_overrides(max_batch=2), {**AXES, "past": past})["batch2"] == R(4, 4, 4)


def test_weight_streaming_auto_only_when_the_weights_do_not_fit() -> None:
    p = get_preset("jetson-orin")
    assert p.wants_weight_streaming(presets.UNET_FP16_WEIGHT_BYTES, free_device_bytes=4 << 30)
    assert not p.wants_weight_streaming(presets.UNET_FP16_WEIGHT_BYTES, free_device_bytes=40 << 30)
    assert not get_preset("workstation").wants_weight_streaming(presets.UNET_FP16_WEIGHT_BYTES, 1 << 30)


def test_errors_name_the_fix() -> None:
    with pytest.raises(EngineError, match="choose one of workstation, jetson-orin"):
        get_preset("laptop")
    with pytest.raises(EngineError, match="--max-batch 8"):
        profile_axes(get_preset("workstation").with_overrides(max_batch=8), AXES)
    with pytest.raises(EngineError, match="0..5"):
        get_preset("workstation").with_overrides(opt_level=7)
