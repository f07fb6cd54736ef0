"""Strict mappings and YAML presets (``configs/datasets/*.yaml``) for :class:`PreprocessSettings`.

Every key must be a field of :class:`PreprocessSettings` with a value of the right type; the
errors name the file (or section) and the key.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from dsviewer.io.text_formats import MalformedTextError, parse_yaml

from .errors import SettingsError
from .preprocess import PreprocessSettings

FIELDS = tuple(f.name for f in dataclasses.fields(PreprocessSettings))
REQUIRED = tuple(f.name for f in dataclasses.fields(PreprocessSettings)
                 if f.default is dataclasses.MISSING)  # fmt: skip
SHAPE_FIELDS = ("image_shape", "source_shape")
OPTIONAL_FIELDS = ("source_shape",)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _coerce(name: str, value: Any, source: str) -> Any:
    def bad(expected: str) -> SettingsError:
        return SettingsError(source, f"{name!r} must be {expected}, got {value!r}")

    if value is None:
        if name in OPTIONAL_FIELDS:
            return None
        raise bad("set (not null)")
    if name in SHAPE_FIELDS:
        if not (isinstance(value, (list, tuple)) and len(value) == 2
                and all(_is_int(v) and v > 0 for v in value)):  # fmt: skip
            raise bad("[height, width] (two positive integers)")
        return (int(value[0]), int(value[1]))
    if name in ("near", "far"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if name in ("patch_multiple", "num_context_views"):
        if not _is_int(value) or value < 1:
            raise bad("a positive integer")
        return value
    if not isinstance(value, str):  # dataset
        raise bad("a string")
    return value


def settings_from_dict(values: Any, source: str = "settings") -> PreprocessSettings:
    """Build settings from a flat mapping; unknown, missing or wrongly typed keys are errors."""
    if not isinstance(values, dict):
        raise SettingsError(source, f"expected a mapping of settings, got {type(values).__name__}")
    unknown = sorted(str(k) for k in set(values) - set(FIELDS))
    if unknown:
        raise SettingsError(source, f"unknown key(s) {unknown}; known: {sorted(FIELDS)}")
    missing = [name for name in REQUIRED if name not in values]
    if missing:
        raise SettingsError(source, f"missing key(s) {missing}")
    kwargs = {name: _coerce(name, value, source) for name, value in values.items()}
    try:
        return PreprocessSettings(**kwargs)
    except SettingsError as error:
        raise SettingsError(source, error.detail) from None


def settings_to_dict(settings: PreprocessSettings) -> dict[str, Any]:
    """The YAML/JSON-friendly inverse of :func:`settings_from_dict` (tuples become lists)."""
    out = dataclasses.asdict(settings)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def read_settings_file(path: Path) -> dict[str, Any]:
    """The mapping in a YAML preset file, unvalidated (for merging with overrides)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"The dataset preset {path} does not exist; see "
                                "configs/datasets/ for re10k.yaml and dl3dv.yaml.")
    try:
        values = parse_yaml(path.read_bytes()) or {}
    except MalformedTextError as error:
        raise SettingsError(str(path), f"not valid YAML ({error})") from None
    if not isinstance(values, dict):
        raise SettingsError(str(path), "expected a mapping of settings")
    return values


def load_preprocess_settings(path: Path, overrides: dict | None = None) -> PreprocessSettings:
    """Settings from a preset file; ``overrides`` (e.g. a checkpoint's image_shape) win and
    are checked like the file's keys."""
    values = read_settings_file(path)
    return settings_from_dict({**values, **(overrides or {})}, str(path))
