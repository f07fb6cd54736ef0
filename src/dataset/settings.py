"""Strict YAML presets (``configs/datasets/*.yaml``) for :class:`PreprocessSettings`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from .errors import SettingsError
from .preprocess import PreprocessSettings

TUPLE_FIELDS = ("image_shape", "source_shape")


def settings_from_dict(values: dict, source: str = "settings") -> PreprocessSettings:
    """Build settings from a flat mapping; unknown or missing keys are errors."""
    names = {f.name for f in dataclasses.fields(PreprocessSettings)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise SettingsError(source, f"unknown key(s) {unknown}; known: {sorted(names)}")
    values = dict(values)
    for name in TUPLE_FIELDS:
        if values.get(name) is not None:
            shape = values[name]
            if not (isinstance(shape, list | tuple) and len(shape) == 2):
                raise SettingsError(source, f"{name} must be [height, width], got {shape!r}")
            values[name] = (int(shape[0]), int(shape[1]))
    try:
        return PreprocessSettings(**values)
    except TypeError as exc:
        raise SettingsError(source, str(exc)) from None


def load_preprocess_settings(path: Path, overrides: dict | None = None) -> PreprocessSettings:
    """Settings from a preset file; ``overrides`` (e.g. a checkpoint's image_shape) win and
    are checked like the file's keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"The dataset preset {path} does not exist; see "
                                "configs/datasets/ for re10k.yaml and dl3dv.yaml.")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise SettingsError(str(path), "expected a mapping of settings")
    return settings_from_dict({**values, **(overrides or {})}, str(path))
