"""Checkpoint presets: the architecture a checkpoint needs and the preprocessing it expects.

The one place that pairs ``src/model`` (architecture: :class:`DepthSplatConfig`) with
``src/dataset`` (preprocessing: :class:`PreprocessSettings`). A preset file,
``configs/checkpoints/<checkpoint stem>.yaml``, has two sections, each read strictly (unknown
keys and wrong types are errors naming the file, the section and the key)::

    checkpoint: depthsplat-gs-small-re10k-256x256-view2-cfeab6b1.pth   # optional, documents
    architecture:            # DepthSplatConfig fields
      vit_type: vits
      ...
    preprocess:              # PreprocessSettings fields, over an optional dataset preset
      dataset_preset: re10k  # configs/datasets/re10k.yaml
      source_shape: null     # this key wins over the dataset preset's

For a checkpoint file, settings come from (first that applies): an explicit preset; the
settings :func:`dsviewer.model.save_checkpoint` embedded (both sections, or the old flat dict); the
preset named after the file; else the architecture read off the tensor shapes with the default
dataset preset, and a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsviewer.configs import CONFIG_ROOT
from dsviewer.dataset.errors import SettingsError
from dsviewer.dataset.preprocess import PreprocessSettings
from dsviewer.dataset.settings import read_settings_file, settings_from_dict
from dsviewer.errors import InputError
from dsviewer.io.text_formats import MalformedTextError, parse_yaml
from dsviewer.model.checkpoint import DepthSplat, build_model, file_architecture, nonfinite_warning
from dsviewer.model.checkpoint_file import (
    CONFIG_ENTRY,
    CheckpointError,
    EmbeddedSettings,
    RawCheckpoint,
    read_checkpoint,
)
from dsviewer.model.config import ConfigError, DepthSplatConfig

PRESET_DIR = CONFIG_ROOT / "checkpoints"
DATASET_PRESET_DIR = CONFIG_ROOT / "datasets"
TOP_LEVEL_KEYS = ("checkpoint", "architecture", "preprocess")
DATASET_PRESET_KEY = "dataset_preset"
DEFAULT_DATASET_PRESET = "re10k"
CHECKPOINT_SUFFIXES = (".yaml", ".pth", ".ckpt", ".safetensors")

# Files saved before the split embed one flat dict; its run settings, under their old names,
# with the defaults the old config had for keys it left out.
LEGACY_NAMES = {
    "image_shape": "image_shape", "near": "near", "far": "far", "shim_patch": "patch_multiple",
    "num_context_views": "num_context_views", "original_image_shape": "source_shape",
}  # fmt: skip
LEGACY_DEFAULTS = {
    "dataset": "re10k", "image_shape": [256, 256], "original_image_shape": None, "near": 0.5,
    "far": 100.0, "num_context_views": 2, "shim_patch": 16,
}  # fmt: skip


class PresetError(InputError):
    """A preset file (or an embedded preprocess section) that cannot be used; says why."""


@dataclass(frozen=True)
class CheckpointSettings:
    """What one checkpoint needs: its architecture and the preprocessing of its input views."""

    architecture: DepthSplatConfig
    preprocess: PreprocessSettings
    source: str
    """Where both came from, e.g. ``preset configs/checkpoints/<name>.yaml``."""
    checkpoint: str | None = None
    """The released checkpoint file a preset describes, when it says."""


@dataclass
class LoadedCheckpoint:
    """A model ready to run, the settings it came with, and what the user should know."""

    model: DepthSplat
    settings: CheckpointSettings
    warnings: list[str] = field(default_factory=list)


# --- preset files -------------------------------------------------------------------------------


def preset_path(name: str) -> Path:
    """``configs/checkpoints/<stem>.yaml`` for a preset name or a checkpoint file name."""
    stem = Path(name).name
    for suffix in CHECKPOINT_SUFFIXES:
        stem = stem.removesuffix(suffix)
    return PRESET_DIR / f"{stem}.yaml"


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name_or_path: str | Path) -> CheckpointSettings:
    """A preset by name (with or without the checkpoint suffix) or a path to a YAML file.

    Raises:
        PresetError: no such preset, not YAML, or a section that does not validate.
    """
    path = Path(name_or_path)
    if not path.is_file():
        path = preset_path(str(name_or_path))
    if not path.is_file():
        raise PresetError(
            f"No preset {str(name_or_path)!r}: it is neither a YAML file nor a preset in "
            f"{PRESET_DIR}. Available presets: {', '.join(available_presets()) or 'none'}."
        )
    try:
        data = parse_yaml(path.read_bytes())
    except MalformedTextError as error:
        raise PresetError(f"{path}: not valid YAML ({error}).") from None
    return settings_from_sections(data, str(path), origin=f"preset {path}")


def settings_from_sections(data: Any, source: str, origin: str) -> CheckpointSettings:
    """Both sections of a preset mapping, each validated strictly."""
    if not isinstance(data, dict):
        raise PresetError(f"{source}: expected a mapping with the sections 'architecture' and "
                          f"'preprocess', got {type(data).__name__}.")
    unknown = sorted(str(k) for k in set(data) - set(TOP_LEVEL_KEYS))
    missing = [k for k in ("architecture", "preprocess") if k not in data]
    if unknown or missing:
        found = f"unknown key(s) {unknown}" if unknown else f"missing section(s) {missing}"
        raise PresetError(
            f"{source}: {found}. A preset has exactly the sections 'architecture' "
            "(DepthSplatConfig fields) and 'preprocess' (PreprocessSettings fields, optionally "
            f"'{DATASET_PRESET_KEY}'), plus an optional 'checkpoint' file name."
        )
    checkpoint = data.get("checkpoint")
    if checkpoint is not None and not isinstance(checkpoint, str):
        raise PresetError(f"{source}: 'checkpoint' must be a file name, got {checkpoint!r}.")
    try:
        architecture = DepthSplatConfig.from_dict(data["architecture"],
                                                  source=f"{source} [architecture]")
    except ConfigError as error:
        raise PresetError(str(error)) from None
    preprocess = preprocess_from_section(data["preprocess"], f"{source} [preprocess]")
    return CheckpointSettings(architecture, preprocess, origin, checkpoint)


def preprocess_from_section(section: Any, source: str) -> PreprocessSettings:
    """A ``preprocess`` section: PreprocessSettings fields over an optional dataset preset."""
    if not isinstance(section, dict):
        raise PresetError(f"{source}: expected a mapping of preprocessing settings, got "
                          f"{type(section).__name__}.")
    values = dict(section)
    name = values.pop(DATASET_PRESET_KEY, None)
    try:
        if name is not None:
            base = DATASET_PRESET_DIR / f"{name}.yaml"
            if not isinstance(name, str) or "/" in name or not base.is_file():
                known = sorted(p.stem for p in DATASET_PRESET_DIR.glob("*.yaml"))
                raise PresetError(f"{source}: {DATASET_PRESET_KEY} {name!r} names no file in "
                                  f"{DATASET_PRESET_DIR}; known: {known}.")
            values = {**read_settings_file(base), **values}
            source = f"{source} over {base}"
        return settings_from_dict(values, source)
    except SettingsError as error:
        raise PresetError(str(error)) from None


def preprocess_from_legacy(run: dict[str, Any], source: str) -> PreprocessSettings:
    """Preprocessing from the run settings of an old flat embedded config."""
    run = {**LEGACY_DEFAULTS, **run}
    dataset = run["dataset"]
    if not isinstance(dataset, str):
        raise PresetError(f"{source}: 'dataset' must be a string, got {dataset!r}.")
    values = {new: run[old] for old, new in LEGACY_NAMES.items()}
    # The old field named the data (re10k, dl3dv, synthetic, ...); the loader kind follows it.
    values["dataset"] = "dl3dv" if dataset.startswith("dl3dv") else "re10k"
    try:
        return settings_from_dict(values, f"{source} (old flat form)")
    except SettingsError as error:
        raise PresetError(str(error)) from None


# --- checkpoints --------------------------------------------------------------------------------


def _default_settings(raw: RawCheckpoint, path: Path) -> tuple[CheckpointSettings, str]:
    """Settings when the file brings no preprocessing and no preset is named after it."""
    base = DATASET_PRESET_DIR / f"{DEFAULT_DATASET_PRESET}.yaml"
    preprocess = preprocess_from_section({DATASET_PRESET_KEY: DEFAULT_DATASET_PRESET}, str(base))
    architecture, origin = file_architecture(raw, path)  # embedded, else read off the shapes
    warning = (
        f"{path.name} carries no preprocessing settings and no preset is named after it: "
        f"{origin} ({architecture.architecture}), preprocessing from {base.name} "
        f"({preprocess.image_shape[0]}x{preprocess.image_shape[1]}, near {preprocess.near:g}, "
        f"far {preprocess.far:g}). If it is a renamed released checkpoint, pass its preset "
        "(--config configs/checkpoints/<name>.yaml)."
    )
    return CheckpointSettings(architecture, preprocess, origin), warning


def _embedded_preprocess(embedded: EmbeddedSettings, source: str) -> PreprocessSettings:
    try:
        if embedded.preprocess is not None:
            return preprocess_from_section(embedded.preprocess, f"{source} [preprocess]")
        return preprocess_from_legacy(embedded.legacy_run or {}, source)
    except PresetError as error:  # the file's content: a checkpoint problem for the caller
        raise CheckpointError(
            f"{error} The file's embedded preprocessing cannot be used; pass a preset "
            "(--config configs/checkpoints/<name>.yaml) or save the model again."
        ) from error


def resolve_settings(raw: RawCheckpoint, path: Path, preset: str | Path | None = None
                     ) -> tuple[CheckpointSettings, list[str]]:
    """The settings of a read checkpoint (see the module docstring for the order) and warnings."""
    if preset is not None:
        return load_preset(preset), []
    named = preset_path(path.name)
    embedded = raw.embedded
    if embedded is not None:
        source = f"{path} [{CONFIG_ENTRY}]"
        origin = "settings embedded in the file"
        if embedded.preprocess is not None or embedded.legacy_run is not None:
            preprocess = _embedded_preprocess(embedded, source)
        elif named.is_file():
            preprocess = load_preset(named).preprocess
            origin = f"architecture embedded in the file, preprocessing from preset {named}"
        else:
            settings, warning = _default_settings(raw, path)
            return settings, [warning]
        checkpoint = (embedded.legacy_run or {}).get("checkpoint")
        return CheckpointSettings(embedded.architecture, preprocess, origin,
                                  checkpoint if isinstance(checkpoint, str) else None), []
    if named.is_file():
        return load_preset(named), []
    settings, warning = _default_settings(raw, path)
    return settings, [warning]


def checkpoint_settings(path: str | Path, preset: str | Path | None = None) -> CheckpointSettings:
    """(architecture, preprocessing) for a checkpoint file, without building the model.

    Raises:
        CheckpointError: the file cannot be read; PresetError: its settings are invalid.
    """
    path = Path(path)
    return resolve_settings(read_checkpoint(path), path, preset)[0]


def load_checkpoint(
    path: str | Path, *, device: str = "cpu", preset: str | Path | None = None
) -> LoadedCheckpoint:
    """The model of a checkpoint file on ``device`` (eval mode), its settings and warnings.

    Warnings (one sentence each) say what the user should know but that does not stop the
    load: weights holding NaN or inf, settings guessed for want of a preset.

    Raises:
        CheckpointError: the file is missing, unreadable or does not fit its architecture.
        PresetError: the preset (or the file's embedded preprocess section) is invalid.
    """
    path = Path(path)
    raw = read_checkpoint(path)
    settings, warnings = resolve_settings(raw, path, preset)
    model = build_model(raw, settings.architecture, path, settings.source)
    warning = nonfinite_warning(model, path)
    if warning:
        warnings.append(warning)
    return LoadedCheckpoint(model.to(device), settings, warnings)
