"""Read DepthSplat checkpoints safely, recognise their architecture, explain what does not fit.

Accepted files:
* released GS checkpoints: ``encoder.*`` keys, as a plain dict or under a ``state_dict`` entry
  (Lightning);
* released depth checkpoints: a dict whose ``model`` entry holds the depth predictor's keys
  without any prefix (``pretrained.blocks.0...``);
* our own files from :func:`save_checkpoint` (``.pth`` with a ``dsviewer_config`` entry, or
  ``.safetensors`` with the config in the metadata).

Pickled files are always read with ``torch.load(weights_only=True)``: no code runs on load.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch import Tensor, nn

from src.io.atomic import atomic_write

from .config import ConfigError, DepthSplatConfig, config_path, load_config
from .encoder.encoder_depthsplat import EncoderDepthSplat, EncoderOutput

CONFIG_ENTRY = "dsviewer_config"
PREFIX = "encoder."
DEPTH_PREFIX = "encoder.depth_predictor."
VIT_WIDTHS = {384: "vits", 768: "vitb", 1024: "vitl"}


class CheckpointError(ValueError):
    """A file that cannot be loaded as a DepthSplat model; the message says why and what to do."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not name a file."""


class DepthSplat(nn.Module):
    """The model as the released checkpoints store it: everything lives under ``encoder``."""

    def __init__(self, config: DepthSplatConfig):
        super().__init__()
        self.config = config
        self.encoder = EncoderDepthSplat(config)

    def forward(
        self, context: dict[str, Tensor], visualization_dump: dict[str, Tensor] | None = None
    ) -> EncoderOutput:
        return self.encoder(context, global_step=0, visualization_dump=visualization_dump)


@dataclass
class RawCheckpoint:
    """A file's tensors with full model keys (``encoder.`` prefix) and any embedded config."""

    state_dict: dict[str, Tensor]
    config: DepthSplatConfig | None
    layout: str  # how the file stored them, for messages


# --- reading ------------------------------------------------------------------------------------


def read_checkpoint(path: str | Path) -> RawCheckpoint:
    """Tensors of a checkpoint file, keys normalized to ``encoder.``-prefixed model keys."""
    path = Path(path)
    if not path.is_file():
        what = "a directory" if path.is_dir() else "not there"
        raise CheckpointNotFoundError(
            f"Checkpoint {str(path)!r} is {what}. Pass the path of a DepthSplat checkpoint file "
            "(.pth, .ckpt or .safetensors), e.g. "
            "depthsplat-gs-base-re10k-256x256-view2-ca7b6795.pth."
        )
    if path.suffix == ".safetensors":
        tensors, config = _read_safetensors(path)
        return _normalize(tensors, config, "safetensors", path)
    obj = _torch_load(path)
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a state dict. A DepthSplat checkpoint "
            "is a dict of tensors (optionally under 'state_dict' or 'model')."
        )
    config = None
    if CONFIG_ENTRY in obj:
        config = DepthSplatConfig.from_dict(obj[CONFIG_ENTRY], source=f"{path} [{CONFIG_ENTRY}]")
    if isinstance(obj.get("state_dict"), dict):
        return _normalize(obj["state_dict"], config, "Lightning 'state_dict' entry", path)
    if isinstance(obj.get("model"), dict):
        # Depth checkpoints: the depth predictor's own keys, loaded into encoder.depth_predictor.
        tensors = {f"{DEPTH_PREFIX}{k}": v for k, v in obj["model"].items()}
        return _normalize(tensors, config, "depth checkpoint 'model' entry", path)
    return _normalize(obj, config, "plain state dict", path)


def _torch_load(path: Path) -> object:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as error:  # unreadable: permissions, a device, ...
        raise CheckpointError(f"{path} cannot be read ({error.strerror or error}).") from None
    is_zip = head.startswith(b"PK")
    is_pickle = head[:1] == b"\x80"
    if not (is_zip or is_pickle):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (it is neither a torch zip archive nor a pickle; "
            f"first bytes {head!r}). Check that the download finished and that you passed the "
            "checkpoint rather than another file."
        )
    try:
        # mmap: tensors are paged in while copied into the model, not read up front.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path} contains Python objects other than tensors and plain containers, so it was "
            f"not unpickled (torch.load weights_only=True refused: {_first_line(error)}). Save "
            "only the state dict, or convert the file with save_checkpoint."
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path} looks like a PyTorch checkpoint but cannot be read; it is probably truncated "
            f"or corrupt ({_first_line(error)}). Download or copy it again (compare the hash in "
            "its file name with the file's sha256)."
        ) from error


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], DepthSplatConfig | None]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path} is not a readable safetensors file; it is probably truncated or corrupt "
            f"({_first_line(error)}). Write it again with save_checkpoint."
        ) from error
    config = None
    if CONFIG_ENTRY in metadata:
        try:
            data = json.loads(metadata[CONFIG_ENTRY])
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{path}: metadata '{CONFIG_ENTRY}' is not JSON.") from error
        config = DepthSplatConfig.from_dict(data, source=f"{path} metadata [{CONFIG_ENTRY}]")
    return tensors, config


def _normalize(
    entries: dict, config: DepthSplatConfig | None, layout: str, path: Path
) -> RawCheckpoint:
    not_tensors = [k for k, v in entries.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"{path} ({layout}) has entries that are not tensors, e.g. {not_tensors[:5]}; it is not "
            "a DepthSplat state dict."
        )
    bad_keys = [k for k in entries if not isinstance(k, str)]
    if bad_keys:
        raise CheckpointError(f"{path} ({layout}) has non-string keys, e.g. {bad_keys[:3]}.")
    if "pretrained.patch_embed.proj.weight" in entries:
        # The depth predictor's own state dict saved as a plain file (no 'model' entry).
        return RawCheckpoint({DEPTH_PREFIX + k: v for k, v in entries.items()}, config, layout)
    state = {}
    for key, value in entries.items():
        if key.startswith(("depth_predictor.", "feature_upsampler.", "gaussian_")):
            key = PREFIX + key  # saved from the encoder itself
        state[key] = value
    return RawCheckpoint(state, config, layout)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# --- recognising the architecture ---------------------------------------------------------------


def infer_config(state_dict: dict[str, Tensor]) -> DepthSplatConfig:
    """Architecture fields read off the tensor shapes (other fields keep their defaults).

    * ViT width (``pretrained.patch_embed.proj.weight``): 384 / 768 / 1024 -> vits / vitb / vitl;
    * a ``depth_head.1`` -> 2 cost-volume scales;
    * no ``gaussian_head`` -> depth-only;
    * ``upsampler.concat_projects.0.weight`` input channels: only the projected ViT level plus
      the layer-1 CNN features (64) when the lowest feature resolution is 1/8; more when 1/4;
    * ``gaussian_head.2.weight`` rows = 10 + 3 (sh_degree + 1)^2.
    """
    patch = state_dict.get(DEPTH_PREFIX + "pretrained.patch_embed.proj.weight")
    concat = state_dict.get(DEPTH_PREFIX + "upsampler.concat_projects.0.weight")
    if patch is None or concat is None:
        raise CheckpointError("the tensors that identify a DepthSplat depth predictor are missing")
    width = int(patch.shape[0])
    if width not in VIT_WIDTHS:
        raise CheckpointError(
            f"ViT width {width} is none of DepthSplat's (384, 768, 1024) and the file has no "
            f"embedded '{CONFIG_ENTRY}'; pass config= to load_model."
        )
    num_scales = 2 if any(k.startswith(DEPTH_PREFIX + "depth_head.1.") for k in state_dict) else 1
    cnn_layer1_channels = 64
    lowest = 8 if concat.shape[1] == concat.shape[0] + cnn_layer1_channels else 4
    changes: dict = {
        "vit_type": VIT_WIDTHS[width],
        "num_scales": num_scales,
        "lowest_feature_resolution": lowest,
        "upsample_factor": lowest // 2 ** (num_scales - 1),
    }
    head = state_dict.get(PREFIX + "gaussian_head.2.weight")
    if head is None:
        changes["depth_only"] = True
    else:
        d_sh = (int(head.shape[0]) - 10) // 3
        changes["sh_degree"] = round(d_sh**0.5) - 1
        regressor = state_dict.get(PREFIX + "gaussian_regressor.0.weight")
        if regressor is not None:
            changes["gaussian_regressor_channels"] = int(regressor.shape[0])
    return DepthSplatConfig(**changes)


@cache
def _architecture_keys(architecture_config: DepthSplatConfig) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of a model, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = DepthSplat(architecture_config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


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
            gs_keys = set(_architecture_keys(config))
            depth_keys = {k for k in gs_keys if k.startswith(DEPTH_PREFIX)}
            for kind, reference in (("gs", gs_keys), ("depth", depth_keys)):
                score = len(keys & reference) / max(len(keys | reference), 1)
                if score > best_score:
                    size = config.architecture.split("_")[1]
                    names = " or ".join(f"{kind}_{size}_{variant}" for variant in variants)
                    best, best_score = names, score
    return best, best_score


def _mismatch_report(state_dict: dict[str, Tensor], expected: dict[str, tuple[int, ...]]) -> str:
    """'' when ``state_dict`` has exactly the expected keys and shapes, else what differs."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {expected[k]}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != expected[k]
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s), e.g. {missing[:5]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:5]}")
    if wrong_shape:
        parts.append(f"{len(wrong_shape)} shape mismatch(es), e.g. {wrong_shape[:3]}")
    return "; ".join(parts)


_INIT_FUNCTIONS = (
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
    "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_",
)  # fmt: skip


@contextlib.contextmanager
def _skipped_weight_init() -> Iterator[None]:
    """Build modules without running ``torch.nn.init`` (the weights are loaded right after).

    Random init is most of the build time (about 20 s for the ViT-L model on 2 cores, 0.3 s
    without). Only safe when every parameter is then overwritten by a strict load; computed
    non-persistent buffers do not use ``torch.nn.init`` and are unaffected.
    """
    saved = {name: getattr(torch.nn.init, name) for name in _INIT_FUNCTIONS}
    try:
        for name in _INIT_FUNCTIONS:
            setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)


# --- public API ---------------------------------------------------------------------------------


def resolve_config(
    raw: RawCheckpoint, path: Path, config: DepthSplatConfig | str | Path | None
) -> DepthSplatConfig:
    """Which configuration builds the model: the argument, else the file's embedded config, else
    the preset named after the file, else the architecture inferred from the shapes."""
    if isinstance(config, DepthSplatConfig):
        return config
    if config is not None:
        return load_config(config)
    if raw.config is not None:
        return raw.config
    preset = config_path(path.name)
    if preset.is_file():
        return load_config(preset)
    if not any(k.startswith(DEPTH_PREFIX) for k in raw.state_dict):
        name, share = closest_architecture(set(raw.state_dict))
        raise CheckpointError(
            f"{path} ({raw.layout}, {len(raw.state_dict)} tensors) is not a DepthSplat checkpoint: "
            f"none of its keys belongs to a depth predictor (closest architecture: {name}, "
            f"{share:.0%} key overlap; first keys: {list(raw.state_dict)[:5]}). Pass a released "
            "DepthSplat checkpoint or a file written by save_checkpoint."
        )
    try:
        return infer_config(raw.state_dict).replace(checkpoint=path.name)
    except CheckpointError as error:
        name, share = closest_architecture(set(raw.state_dict))
        raise CheckpointError(
            f"{path} ({raw.layout}) is not a DepthSplat checkpoint: {error} (closest "
            f"architecture: {name}, {share:.0%} key overlap)."
        ) from error


def load_model(
    path: str | Path,
    device: torch.device | str = "cpu",
    config: DepthSplatConfig | str | Path | None = None,
) -> DepthSplat:
    """Build the model a checkpoint file describes and load its weights strictly (eval mode).

    Args:
        path: ``.pth`` / ``.ckpt`` / ``.safetensors`` file.
        device: where the model goes.
        config: a :class:`DepthSplatConfig`, a preset name or a YAML path; by default the file's
            embedded config, else the preset named after the file, else inferred from shapes.

    Raises:
        CheckpointError: (a ``ValueError``) the file is missing, unreadable or does not fit.
    """
    path = Path(path)
    try:
        raw = read_checkpoint(path)
        resolved = resolve_config(raw, path, config)
    except ConfigError as error:  # a bad embedded config or preset: report it as a load error
        raise CheckpointError(str(error)) from error
    with _skipped_weight_init():
        model = DepthSplat(resolved)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    report = _mismatch_report(raw.state_dict, expected)
    if report:
        name, share = closest_architecture(set(raw.state_dict))
        raise CheckpointError(
            f"{path} ({raw.layout}) does not fit the {resolved.architecture} architecture "
            f"({'given' if config is not None else 'selected'} config): {report}. Closest "
            f"architecture by key names: {name} ({share:.0%} overlap). Pass the matching config "
            "(configs/checkpoints/*.yaml) or check that the file is a DepthSplat checkpoint."
        )
    model.load_state_dict(raw.state_dict, strict=True)
    return model.to(device).eval()


def save_checkpoint(model: DepthSplat, path: str | Path) -> Path:
    """Write the weights and the config atomically (``.safetensors`` or a torch file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    config_dict = model.config.to_dict()
    with atomic_write(path) as handle:
        if path.suffix == ".safetensors":
            from safetensors.torch import save

            handle.write(save(state, metadata={CONFIG_ENTRY: json.dumps(config_dict)}))
        else:
            torch.save({"state_dict": state, CONFIG_ENTRY: config_dict}, handle)
    return path
