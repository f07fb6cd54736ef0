"""The architecture of a DepthSplat model (plus one inference knob), and nothing else.

What a checkpoint expects of its input views (image shape, near/far, view count) is
preprocessing: :class:`dsviewer.dataset.PreprocessSettings`. The presets that pair the two for each
released checkpoint (``configs/checkpoints/*.yaml``) are read by ``src/backends/presets.py``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from dsviewer.errors import InputError

VIT_SIZES = {"vits": "small", "vitb": "base", "vitl": "large"}

# The largest value any released DepthSplat uses (ViT-L and its heads; 6 Transformer layers,
# 128-wide CNN, cost-volume UNet and features). A custom model may be at most twice as wide or
# deep: a file cannot ask for an absurd allocation before its tensors are even looked at.
RELEASED_MAXIMUM = {
    "vit_embed_dim": 1024,
    "vit_depth": 24,
    "vit_num_heads": 16,
    "feature_channels": 128,
    "num_transformer_layers": 6,
    "cnn_stage_channels": 128,
    "unet_channels": 128,
    "dpt_features": 64,
    "dpt_out_channels": 1024,
    "feature_upsampler_channels": 128,
    "gaussian_regressor_channels": 64,
}
CUSTOM_SIZE_FACTOR = 2


class ConfigError(InputError):
    """A configuration file or dict that does not describe a DepthSplat model."""


@dataclass(frozen=True)
class DepthSplatConfig:
    """Everything that changes the model's tensors, plus how views are matched."""

    vit_type: str = "vits"
    """DINOv2 size of the monocular branch: ``vits``, ``vitb`` or ``vitl``."""
    num_scales: int = 1
    """Cost-volume scales: 1, or 2 for the coarse-to-fine base/large models."""
    upsample_factor: int = 4
    """Ratio of the image size to the finest cost-volume resolution."""
    lowest_feature_resolution: int = 4
    """Ratio of the image size to the coarsest CNN feature resolution (4 or 8)."""
    depth_only: bool = False
    """Only the depth predictor (the depth checkpoints): no Gaussian head, no Gaussians."""
    gaussian_scale_min: float = 1e-10
    gaussian_scale_max: float = 3.0
    sh_degree: int = 2
    gaussian_regressor_channels: int = 64

    # --- widths of reduced models (our own small trainings); the defaults are the released ones ---
    vit_embed_dim: int | None = None
    """ViT width; None = the ``vit_type`` preset (with depth, heads and tapped blocks below)."""
    vit_depth: int | None = None
    vit_num_heads: int | None = None
    vit_tapped_layers: tuple[int, ...] | None = None
    """The four ViT blocks whose outputs feed the DPT heads."""
    feature_channels: int = 128
    """CNN output and multi-view Transformer width."""
    num_transformer_layers: int = 6
    cnn_stage_channels: tuple[int, ...] = (64, 96, 128)
    unet_channels: int = 128
    dpt_features: int | None = None
    """Width of the depth DPT upsampler; None = released value for ``vit_type``."""
    dpt_out_channels: tuple[int, ...] | None = None
    feature_upsampler_channels: int | None = None
    """Width of the Gaussian-feature DPT head; None = released value (64 / 96 / 128)."""

    # --- inference behaviour (no tensors) ---
    local_mv_match: int = 2
    """With more than 3 views, each view is matched against its this-many nearest cameras."""

    def __post_init__(self) -> None:
        problems = self._structure_problems() + self._size_problems()
        if problems:
            raise ConfigError("Invalid DepthSplat configuration: " + "; ".join(problems) + ".")

    def _structure_problems(self) -> list[str]:
        problems = []
        if self.vit_type not in VIT_SIZES:
            problems.append(f"vit_type must be one of {sorted(VIT_SIZES)}, got {self.vit_type!r}")
        if self.num_scales not in (1, 2):
            problems.append(f"num_scales must be 1 or 2, got {self.num_scales}")
        if self.lowest_feature_resolution not in (4, 8):
            problems.append(
                f"lowest_feature_resolution must be 4 or 8, got {self.lowest_feature_resolution}"
            )
        if self.upsample_factor * 2 ** (self.num_scales - 1) != self.lowest_feature_resolution:
            problems.append(
                "upsample_factor * 2^(num_scales-1) must equal lowest_feature_resolution, got "
                f"{self.upsample_factor}, {self.num_scales}, {self.lowest_feature_resolution}"
            )
        if not 0 <= self.sh_degree <= 2:
            problems.append(f"sh_degree must be 0, 1 or 2, got {self.sh_degree}")
        if not (math.isfinite(self.gaussian_scale_max) and
                0 < self.gaussian_scale_min < self.gaussian_scale_max):  # fmt: skip
            problems.append(
                "need 0 < gaussian_scale_min < gaussian_scale_max (finite), got "
                f"{self.gaussian_scale_min}, {self.gaussian_scale_max}"
            )
        if self.local_mv_match < 1:
            problems.append(f"local_mv_match must be at least 1, got {self.local_mv_match}")
        vit = (self.vit_embed_dim, self.vit_depth, self.vit_num_heads, self.vit_tapped_layers)
        if any(f is not None for f in vit) and any(f is None for f in vit):
            problems.append(
                "vit_embed_dim, vit_depth, vit_num_heads and vit_tapped_layers go together: set "
                "all four or none"
            )
        if self.vit_tapped_layers is not None:
            if len(self.vit_tapped_layers) != 4:
                problems.append(f"vit_tapped_layers needs 4 block indices, got "
                                f"{self.vit_tapped_layers}")
            elif self.vit_depth is not None and max(self.vit_tapped_layers) >= self.vit_depth:
                problems.append(f"vit_tapped_layers {self.vit_tapped_layers} must all be below "
                                f"vit_depth {self.vit_depth}")
        if (self.vit_embed_dim and self.vit_num_heads
                and self.vit_embed_dim % self.vit_num_heads):  # fmt: skip
            problems.append(f"vit_embed_dim {self.vit_embed_dim} must be a multiple of "
                            f"vit_num_heads {self.vit_num_heads}")
        if self.dpt_out_channels is not None and len(self.dpt_out_channels) != 4:
            problems.append(f"dpt_out_channels needs 4 widths, got {self.dpt_out_channels}")
        if len(self.cnn_stage_channels) != 3:
            problems.append(f"cnn_stage_channels needs 3 widths, got {self.cnn_stage_channels}")
        return problems

    def _size_problems(self) -> list[str]:
        """Widths and counts outside [1, CUSTOM_SIZE_FACTOR x the released maximum]."""
        problems = []
        for name, released in RELEASED_MAXIMUM.items():
            value = getattr(self, name)
            values = value if isinstance(value, tuple) else (value,)
            bound = CUSTOM_SIZE_FACTOR * released
            for v in values:
                if v is not None and not 1 <= v <= bound:
                    problems.append(
                        f"{name}={v} is outside [1, {bound}] (the largest released DepthSplat "
                        f"uses {released}; custom models may be at most {CUSTOM_SIZE_FACTOR}x "
                        "that)"
                    )
                    break
        return problems

    @property
    def architecture(self) -> str:
        """Architecture id as in the reference manifests, e.g. ``gs_base_u4l8``."""
        kind = "depth" if self.depth_only else "gs"
        size = VIT_SIZES[self.vit_type] if self.is_released_width else "custom"
        return f"{kind}_{size}_u{self.upsample_factor}l{self.lowest_feature_resolution}"

    @property
    def is_released_width(self) -> bool:
        """True when every width is that of the released ``vit_type`` models."""
        default = DepthSplatConfig()
        return (
            self.vit_embed_dim is None
            and self.dpt_features is None
            and self.dpt_out_channels is None
            and self.feature_upsampler_channels is None
            and self.feature_channels == default.feature_channels
            and self.num_transformer_layers == default.num_transformer_layers
            and self.cnn_stage_channels == default.cnn_stage_channels
            and self.unet_channels == default.unet_channels
        )

    @property
    def min_image_multiple(self) -> int:
        """H and W must be multiples of this for the encoder (UNet levels and window splits)."""
        return 4 * self.lowest_feature_resolution

    def replace(self, **changes: Any) -> DepthSplatConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-friendly dict (tuples become lists)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> DepthSplatConfig:
        """Strict construction: unknown keys and wrongly typed values raise :class:`ConfigError`.

        ``source`` names the file (and section) in messages.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping of architecture settings, got "
                              f"{type(data).__name__}.")
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(str(k) for k in set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"{source}: unknown architecture setting(s) {unknown}. Valid settings are: "
                f"{', '.join(fields)}. Check the spelling or remove them."
            )
        kwargs = {name: _coerce(name, value, source) for name, value in data.items()}
        try:
            return cls(**kwargs)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None


ARCHITECTURE_FIELDS = frozenset(f.name for f in dataclasses.fields(DepthSplatConfig))
_INT_TUPLE_FIELDS = {"vit_tapped_layers", "cnn_stage_channels", "dpt_out_channels"}
_OPTIONAL_FIELDS = {
    "vit_embed_dim", "vit_depth", "vit_num_heads", "vit_tapped_layers", "dpt_features",
    "dpt_out_channels", "feature_upsampler_channels",
}  # fmt: skip
_FLOAT_FIELDS = {"gaussian_scale_min", "gaussian_scale_max"}
_BOOL_FIELDS = {"depth_only"}
_STR_FIELDS = {"vit_type"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _coerce(name: str, value: Any, source: str) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{source}: setting {name!r} must be {expected}, got {value!r}.")

    if value is None:
        if name in _OPTIONAL_FIELDS:
            return None
        raise bad("set (not null)")
    if name in _INT_TUPLE_FIELDS:
        if not isinstance(value, (list, tuple)) or not all(_is_int(v) and v >= 0 for v in value):
            raise bad("a list of non-negative integers")
        return tuple(int(v) for v in value)
    if name in _FLOAT_FIELDS:
        if isinstance(value, str) and _is_number_text(value):
            raise bad("a number (YAML reads 1e-10 as text: write 1.0e-10)")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if name in _STR_FIELDS:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if not _is_int(value):
        raise bad("an integer")
    return value
