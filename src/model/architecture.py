"""Tensor shapes and architectures: recognise one from the other, and explain what does not fit.

Everything here works on shapes alone (``{key: shape}`` and :class:`DepthSplatConfig`), so a
file is checked before any module with its sizes is built.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from functools import cache

import torch
from torch import Tensor

from .checkpoint_file import CONFIG_ENTRY, DEPTH_PREFIX, PREFIX, CheckpointError
from .config import ConfigError, DepthSplatConfig
from .depthsplat import DepthSplat
from .encoder.encoder_depthsplat import FEATURE_UPSAMPLER_CHANNELS, vit_config
from .encoder.unimatch.mv_unimatch import DPT_WIDTHS

VIT_WIDTHS = {384: "vits", 768: "vitb", 1024: "vitl"}
CNN_LAYER1_CHANNELS = 64  # of the released CNN, for telling 1/4 from 1/8 features apart

Shapes = Mapping[str, tuple[int, ...]]

_INIT_FUNCTIONS = (
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
    "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_",
)  # fmt: skip


@contextlib.contextmanager
def skipped_weight_init() -> Iterator[None]:
    """Build modules without running ``torch.nn.init`` (the weights are loaded right after).

    Random init is most of the build time (about 20 s for the ViT-L model on 2 cores, 0.3 s
    without; 2 s even on the meta device). Only safe when every parameter is then overwritten
    by a strict load; computed non-persistent buffers do not use ``torch.nn.init``.
    """
    saved = {name: getattr(torch.nn.init, name) for name in _INIT_FUNCTIONS}
    try:
        for name in _INIT_FUNCTIONS:
            setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)


def shapes_of(state_dict: Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def infer_config(shapes: Shapes) -> DepthSplatConfig:
    """Architecture fields read off released tensor shapes (other fields keep their defaults).

    * ViT width (``pretrained.patch_embed.proj.weight``): 384 / 768 / 1024 -> vits / vitb / vitl;
    * a ``depth_head.1`` -> 2 cost-volume scales;
    * no ``gaussian_head`` -> depth-only;
    * ``upsampler.concat_projects.0.weight`` input channels: only the projected ViT level plus
      the layer-1 CNN features (64) when the lowest feature resolution is 1/8; more when 1/4;
    * ``gaussian_head.2.weight`` rows = 10 + 3 (sh_degree + 1)^2.
    """
    patch = shapes.get(DEPTH_PREFIX + "pretrained.patch_embed.proj.weight")
    concat = shapes.get(DEPTH_PREFIX + "upsampler.concat_projects.0.weight")
    if patch is None or concat is None or len(patch) != 4 or len(concat) != 4:
        raise CheckpointError("the tensors that identify a DepthSplat depth predictor are missing")
    width = int(patch[0])
    if width not in VIT_WIDTHS:
        raise CheckpointError(
            f"ViT width {width} is none of DepthSplat's (384, 768, 1024) and the file has no "
            f"embedded '{CONFIG_ENTRY}'; pass config= to load_model."
        )
    num_scales = 2 if any(k.startswith(DEPTH_PREFIX + "depth_head.1.") for k in shapes) else 1
    lowest = 8 if concat[1] == concat[0] + CNN_LAYER1_CHANNELS else 4
    changes: dict = {
        "vit_type": VIT_WIDTHS[width],
        "num_scales": num_scales,
        "lowest_feature_resolution": lowest,
        "upsample_factor": lowest // 2 ** (num_scales - 1),
    }
    head = shapes.get(PREFIX + "gaussian_head.2.weight")
    if head is None:
        changes["depth_only"] = True
    else:
        d_sh = (int(head[0]) - 10) // 3
        changes["sh_degree"] = round(max(d_sh, 1) ** 0.5) - 1
        regressor = shapes.get(PREFIX + "gaussian_regressor.0.weight")
        if regressor is not None:
            changes["gaussian_regressor_channels"] = int(regressor[0])
    try:
        return DepthSplatConfig(**changes)
    except ConfigError as error:
        raise CheckpointError(f"its shapes give no valid architecture ({error})") from None


def _implied_widths(config: DepthSplatConfig) -> list[tuple[str, int, str]]:
    """(setting, value, key whose dim 0 equals it) for the widths a config sets."""
    vit = vit_config(config)
    cnn = config.cnn_stage_channels
    dpt_features, dpt_out = DPT_WIDTHS[config.vit_type]
    dpt_features = config.dpt_features or dpt_features
    dpt_out = config.dpt_out_channels or dpt_out
    p = DEPTH_PREFIX
    rows = [
        ("vit_embed_dim", vit.embed_dim, p + "pretrained.patch_embed.proj.weight"),
        ("cnn_stage_channels[0]", cnn[0], p + "backbone.conv1.weight"),
        ("cnn_stage_channels[1]", cnn[1], p + "backbone.layer2.0.conv1.weight"),
        ("cnn_stage_channels[2]", cnn[2], p + "backbone.layer3.0.conv1.weight"),
        ("feature_channels", config.feature_channels, p + "backbone.conv2.weight"),
        ("unet_channels", config.unet_channels, p + "regressor.0.0.weight"),
        ("dpt_features", dpt_features, p + "upsampler.scratch.layer1_rn.weight"),
    ]
    rows += [(f"dpt_out_channels[{i}]", w, p + f"upsampler.projects.{i}.weight")
             for i, w in enumerate(dpt_out)]  # fmt: skip
    if not config.depth_only:
        upsampler = config.feature_upsampler_channels or FEATURE_UPSAMPLER_CHANNELS[
            config.vit_type]
        rows += [
            ("feature_upsampler_channels", upsampler,
             PREFIX + "feature_upsampler.scratch.layer1_rn.weight"),
            ("gaussian_regressor_channels", config.gaussian_regressor_channels,
             PREFIX + "gaussian_regressor.0.weight"),
            ("sh_degree", 10 + 3 * (config.sh_degree + 1) ** 2, PREFIX + "gaussian_head.2.weight"),
        ]  # fmt: skip
    return rows


def _count(shapes: Shapes, prefix: str, suffix: str) -> int:
    """How many consecutive ``prefix{i}suffix`` keys exist from i = 0."""
    i = 0
    while f"{prefix}{i}{suffix}" in shapes:
        i += 1
    return i


def implied_shape_problems(config: DepthSplatConfig, shapes: Shapes) -> list[str]:
    """Where the file's tensors contradict a width, depth or count that ``config`` sets.

    Checked from the shapes alone, without building anything: a config that claims a huge
    width for a small file is refused here. Keys the file lacks are left to the full report.
    """
    problems = []
    for setting, value, key in _implied_widths(config):
        shape = shapes.get(key)
        if shape is not None and (len(shape) == 0 or shape[0] != value):
            problems.append(f"{setting}={value} but {key} has shape {shape}")
    p = DEPTH_PREFIX
    counts = [
        ("vit_depth", vit_config(config).depth, p + "pretrained.blocks.", ".norm1.weight"),
        ("num_transformer_layers", config.num_transformer_layers, p + "transformer.layers.",
         ".self_attn.q_proj.weight"),
    ]  # fmt: skip
    for setting, value, prefix, suffix in counts:
        found = _count(shapes, prefix, suffix)
        if found and found != value:
            problems.append(f"{setting}={value} but the file has {found} ({prefix}N{suffix})")
    has_second_scale = any(k.startswith(p + "depth_head.1.") for k in shapes)
    if any(k.startswith(p + "depth_head.0.") for k in shapes) and (
        has_second_scale != (config.num_scales == 2)
    ):
        problems.append(f"num_scales={config.num_scales} but the file has "
                        f"{2 if has_second_scale else 1} depth head(s)")
    has_head = PREFIX + "gaussian_head.2.weight" in shapes
    if has_head and config.depth_only:
        problems.append("depth_only=true but the file has a Gaussian head")
    return problems


@cache
def expected_shapes(config: DepthSplatConfig) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the model ``config`` builds, on the meta device (no memory).

    Raises:
        ConfigError: widths that the layers cannot be built with (e.g. a GroupNorm that does
            not divide them).
    """
    try:
        with torch.device("meta"), skipped_weight_init():  # init on meta still costs seconds
            model = DepthSplat(config)
    except (ValueError, RuntimeError, AssertionError) as error:
        raise ConfigError(f"its layers cannot be built with these widths ({error})") from None
    return shapes_of(model.state_dict())


def mismatch_report(shapes: Shapes, expected: Shapes) -> str:
    """'' when ``shapes`` has exactly the expected keys and shapes, else what differs."""
    missing = [k for k in expected if k not in shapes]
    unexpected = [k for k in shapes if k not in expected]
    wrong_shape = [
        f"{k}: file {shapes[k]} vs model {expected[k]}"
        for k in expected
        if k in shapes and shapes[k] != expected[k]
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s), e.g. {missing[:5]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:5]}")
    if wrong_shape:
        parts.append(f"{len(wrong_shape)} shape mismatch(es), e.g. {wrong_shape[:3]}")
    return "; ".join(parts)


def closest_architecture(keys: set[str]) -> tuple[str, float]:
    """The released architecture family sharing the most key names with ``keys``, and the share.

    Key names depend only on the ViT size, the number of scales and depth-only vs GS (the
    upsample/lowest variants differ in six shapes only), so six meta-device builds cover all.
    """
    best, best_score = "none", 0.0
    for vit in ("vits", "vitb", "vitl"):
        for scales, variants in ((1, ("u4l4", "u8l8")), (2, ("u2l4", "u4l8"))):
            config = DepthSplatConfig(
                vit_type=vit, num_scales=scales, upsample_factor=4 // scales,
                lowest_feature_resolution=4,
            )  # fmt: skip
            gs_keys = set(expected_shapes(config))
            depth_keys = {k for k in gs_keys if k.startswith(DEPTH_PREFIX)}
            for kind, reference in (("gs", gs_keys), ("depth", depth_keys)):
                score = len(keys & reference) / max(len(keys | reference), 1)
                if score > best_score:
                    size = config.architecture.split("_")[1]
                    names = " or ".join(f"{kind}_{size}_{variant}" for variant in variants)
                    best, best_score = names, score
    return best, best_score
