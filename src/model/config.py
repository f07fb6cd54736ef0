"""The one configuration of a DepthSplat model: architecture plus the preprocessing it expects.

Presets live in ``configs/checkpoints/<checkpoint stem>.yaml`` as flat YAML that maps one-to-one
to :class:`DepthSplatConfig`; unknown keys are an error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "checkpoints"

VIT_SIZES = {"vits": "small", "vitb": "base", "vitl": "large"}


class ConfigError(ValueError):
    """A configuration file or dict that does not describe a DepthSplat model."""


@dataclass(frozen=True)
class DepthSplatConfig:
    """Everything that changes the model's tensors, plus the evaluation preprocessing."""

    # --- architecture (changes the state dict) ---
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

    # --- preprocessing the checkpoint was evaluated with ---
    checkpoint: str | None = None
    """The released checkpoint file this preset describes."""
    dataset: str = "re10k"
    image_shape: tuple[int, int] = (256, 256)
    """(H, W) the model sees."""
    original_image_shape: tuple[int, int] | None = None
    """(H, W) images are first resized to, before the centre crop; None = rescale directly."""
    near: float = 0.5
    far: float = 100.0
    num_context_views: int = 2
    shim_patch: int = 16
    """Images are centre-cropped to multiples of this before the encoder."""

    def __post_init__(self) -> None:
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
        if not 0 < self.near < self.far:
            problems.append(f"need 0 < near < far, got near={self.near}, far={self.far}")
        vit_fields = (self.vit_embed_dim, self.vit_depth, self.vit_num_heads, self.vit_tapped_layers)
        if any(f is not None for f in vit_fields) and any(f is None for f in vit_fields):
            problems.append(
                "vit_embed_dim, vit_depth, vit_num_heads and vit_tapped_layers go together: set "
                "all four or none"
            )
        if self.vit_tapped_layers is not None and len(self.vit_tapped_layers) != 4:
            problems.append(f"vit_tapped_layers needs 4 block indices, got {self.vit_tapped_layers}")
        if self.dpt_out_channels is not None and len(self.dpt_out_channels) != 4:
            problems.append(f"dpt_out_channels needs 4 widths, got {self.dpt_out_channels}")
        if len(self.cnn_stage_channels) != 3:
            problems.append(f"cnn_stage_channels needs 3 widths, got {self.cnn_stage_channels}")
        if problems:
            raise ConfigError("Invalid DepthSplat configuration: " + "; ".join(problems) + ".")

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
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> DepthSplatConfig:
        """Strict construction: unknown keys and wrongly typed values raise :class:`ConfigError`."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}.")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"{source}: unknown setting(s) {unknown}. Valid settings are: "
                f"{', '.join(fields)}. Check the spelling or remove them."
            )
        kwargs = {name: _coerce(name, value, source) for name, value in data.items()}
        return cls(**kwargs)


_PAIR_FIELDS = {"image_shape", "original_image_shape"}
_INT_TUPLE_FIELDS = {"vit_tapped_layers", "cnn_stage_channels", "dpt_out_channels"}
_OPTIONAL_FIELDS = {
    "original_image_shape", "checkpoint", "vit_embed_dim", "vit_depth", "vit_num_heads",
    "vit_tapped_layers", "dpt_features", "dpt_out_channels", "feature_upsampler_channels",
}
_FLOAT_FIELDS = {"gaussian_scale_min", "gaussian_scale_max", "near", "far"}
_BOOL_FIELDS = {"depth_only"}
_STR_FIELDS = {"vit_type", "dataset", "checkpoint"}


def _coerce(name: str, value: Any, source: str) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{source}: setting {name!r} must be {expected}, got {value!r}.")

    if value is None:
        if name in _OPTIONAL_FIELDS:
            return None
        raise bad("set (not null)")
    if name in _PAIR_FIELDS:
        if not (isinstance(value, (list, tuple)) and len(value) == 2):
            raise bad("a pair [H, W]")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            raise bad("a pair of positive integers [H, W]")
        return (int(value[0]), int(value[1]))
    if name in _INT_TUPLE_FIELDS:
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
        ):
            raise bad("a list of non-negative integers")
        return tuple(int(v) for v in value)
    if name in _FLOAT_FIELDS:
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
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad("an integer")
    return value


def config_path(name: str) -> Path:
    """``configs/checkpoints/<name>.yaml`` for a preset name or checkpoint file name."""
    stem = Path(name).name
    for suffix in (".yaml", ".pth", ".ckpt", ".safetensors"):
        stem = stem.removesuffix(suffix)
    return CONFIG_DIR / f"{stem}.yaml"


def available_presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_config(name_or_path: str | Path) -> DepthSplatConfig:
    """A preset by name (``depthsplat-gs-base-re10k-256x256-view2-ca7b6795``, with or without
    the checkpoint suffix) or a path to a YAML file."""
    path = Path(name_or_path)
    if not path.is_file():
        path = config_path(str(name_or_path))
    if not path.is_file():
        raise ConfigError(
            f"No configuration {str(name_or_path)!r}: it is neither a YAML file nor a preset in "
            f"{CONFIG_DIR}. Available presets: {', '.join(available_presets()) or 'none'}."
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error}).") from error
    return DepthSplatConfig.from_dict(data or {}, source=str(path))
