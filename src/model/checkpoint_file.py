"""Checkpoint files: read any of them safely, write our own.

Accepted files:
* released GS checkpoints: ``encoder.*`` keys, as a plain dict or under a ``state_dict`` entry
  (Lightning);
* released depth checkpoints: a dict whose ``model`` entry holds the depth predictor's keys
  without any prefix (``pretrained.blocks.0...``);
* our own files from :func:`save_checkpoint` (``.pth`` with a ``dsviewer_config`` entry, or
  ``.safetensors`` with it in the metadata).

Pickled files are always read with ``torch.load(weights_only=True)``: no code runs on load.
Whatever the bytes, reading raises :class:`CheckpointError` (a ``ValueError``) and nothing else.
"""

from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dsviewer.errors import InputError
from dsviewer.io.atomic import atomic_write
from dsviewer.io.text_formats import MalformedTextError, parse_json

from .config import ARCHITECTURE_FIELDS, ConfigError, DepthSplatConfig

CONFIG_ENTRY = "dsviewer_config"
SECTIONS = ("architecture", "preprocess")
PREFIX = "encoder."
DEPTH_PREFIX = "encoder.depth_predictor."
# Files saved before architecture and preprocessing were split embed one flat dict: the
# architecture fields plus these run settings. The model never reads them; they are handed on
# (src/backends/presets.py turns them into preprocessing settings).
LEGACY_RUN_KEYS = frozenset({
    "checkpoint", "dataset", "image_shape", "original_image_shape", "near", "far",
    "num_context_views", "shim_patch",
})  # fmt: skip
EXAMPLE_NAME = "depthsplat-gs-base-re10k-256x256-view2-ca7b6795.pth"


class CheckpointError(InputError):
    """A file that cannot be loaded as a DepthSplat model; the message says why and what to do."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not name a file."""


@dataclass(frozen=True)
class EmbeddedSettings:
    """What :func:`save_checkpoint` stored beside the tensors."""

    architecture: DepthSplatConfig
    preprocess: dict[str, Any] | None
    """The ``preprocess`` section as saved, unread here (None: none was saved)."""
    legacy_run: dict[str, Any] | None
    """For a file of the old flat form: its run settings (``near``, ``image_shape``, ...)."""


@dataclass
class RawCheckpoint:
    """A file's tensors with full model keys (``encoder.`` prefix) and any embedded settings."""

    state_dict: dict[str, Tensor]
    embedded: EmbeddedSettings | None
    layout: str  # how the file stored them, for messages
    global_step: int | None = None
    """A Lightning checkpoint's training step (its top-level ``global_step``), else None."""


# --- reading ------------------------------------------------------------------------------------


def read_checkpoint(path: str | Path, *, mapped: bool = False) -> RawCheckpoint:
    """Tensors of a checkpoint file, keys normalized to ``encoder.``-prefixed model keys.

    ``mapped``: map a torch zip file's tensors instead of reading them, for a caller that needs
    only the shapes and the small entries (a folder watcher reading ``global_step``); their
    bytes are then neither read nor checked, so never build a model from such a read.
    """
    path = Path(path)
    if not path.is_file():
        what = "a directory" if path.is_dir() else "not there"
        raise CheckpointNotFoundError(
            f"Checkpoint {str(path)!r} is {what}. Pass the path of a DepthSplat checkpoint file "
            f"(.pth, .ckpt or .safetensors), e.g. {EXAMPLE_NAME}."
        )
    if path.suffix == ".safetensors":
        tensors, settings = _read_safetensors(path)
        return _normalize(tensors, settings, "safetensors", path)
    obj = _torch_load(path, mapped)
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a state dict. A DepthSplat checkpoint "
            "is a dict of tensors (optionally under 'state_dict' or 'model'); pass a released "
            "DepthSplat checkpoint or a file written by save_checkpoint."
        )
    settings = None
    if CONFIG_ENTRY in obj:
        settings = _embedded(obj[CONFIG_ENTRY], f"{path} [{CONFIG_ENTRY}]")
    if isinstance(obj.get("state_dict"), dict):
        raw = _normalize(obj["state_dict"], settings, "Lightning 'state_dict' entry", path)
        step = obj.get("global_step")
        if isinstance(step, int) and not isinstance(step, bool):
            raw.global_step = step
        return raw
    if isinstance(obj.get("model"), dict):
        # Depth checkpoints: the depth predictor's own keys, loaded into encoder.depth_predictor.
        entries = obj["model"]
        _check_entries(entries, "depth checkpoint 'model' entry", path)
        tensors = {f"{DEPTH_PREFIX}{k}": v for k, v in entries.items()}
        return _normalize(tensors, settings, "depth checkpoint 'model' entry", path)
    entries = {k: v for k, v in obj.items() if k != CONFIG_ENTRY}
    return _normalize(entries, settings, "plain state dict", path)


def _torch_load(path: Path, mapped: bool = False) -> object:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as error:  # unreadable: permissions, a device, ...
        raise CheckpointError(f"{path} cannot be read ({error.strerror or error}); check the "
                              "path and its permissions.") from None
    is_zip = head.startswith(b"PK")
    is_pickle = head[:1] == b"\x80"
    if not (is_zip or is_pickle):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (it is neither a torch zip archive nor a pickle; "
            f"first bytes {head!r}). Check that the download finished and that you passed the "
            "checkpoint rather than another file."
        )
    try:
        # Damaged files make the unpickler warn (e.g. about an unknown protocol) before it
        # fails; the failure is reported below, so the warnings would only add noise.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # No mmap for weights: mapped storages are not checked against their zip records,
            # so a shortened record silently yields its neighbours' bytes as weights.
            return torch.load(path, map_location="cpu", weights_only=True,
                              mmap=mapped and is_zip)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path} contains Python objects other than tensors and plain containers, or is not "
            f"a valid pickle, so it was not unpickled (torch.load weights_only=True refused: "
            f"{_first_line(error)}). Save only the state dict, or convert the file with "
            "save_checkpoint."
        ) from error
    except Exception as error:
        # Untrusted bytes: the unpickler and the zip reader raise IndexError, KeyError,
        # RuntimeError, EOFError, ... on damaged files. Each means the same to the user.
        raise CheckpointError(
            f"{path} looks like a PyTorch checkpoint but cannot be read; it is probably truncated "
            f"or corrupt ({type(error).__name__}: {_first_line(error)}). Download or copy it "
            "again (compare the hash in its file name with the file's sha256)."
        ) from error


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], EmbeddedSettings | None]:
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path), device="cpu")
    except Exception as error:  # untrusted bytes: the Rust reader's error types vary
        raise CheckpointError(
            f"{path} is not a readable safetensors file; it is probably truncated or corrupt "
            f"({type(error).__name__}: {_first_line(error)}). Copy it again, or write it again "
            "with save_checkpoint."
        ) from error
    if CONFIG_ENTRY not in metadata:
        return tensors, None
    try:
        data = parse_json(metadata[CONFIG_ENTRY])
    except MalformedTextError as error:
        raise CheckpointError(
            f"{path}: metadata '{CONFIG_ENTRY}' is not JSON ({error}); write the file again "
            "with save_checkpoint."
        ) from error
    return tensors, _embedded(data, f"{path} metadata [{CONFIG_ENTRY}]")


def _embedded(data: object, source: str) -> EmbeddedSettings:
    """Split what save_checkpoint stored: the sections, or the old flat dict."""
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise CheckpointError(f"{source} is not a mapping of settings ({type(data).__name__}); "
                              "the file was not written by save_checkpoint.")
    try:
        if "architecture" in data:
            unknown = sorted(set(data) - set(SECTIONS))
            if unknown:
                raise ConfigError(f"{source}: unknown section(s) {unknown}; expected "
                                  f"{list(SECTIONS)}.")
            preprocess = data.get("preprocess")
            if preprocess is not None and not isinstance(preprocess, dict):
                raise ConfigError(f"{source} [preprocess] is a {type(preprocess).__name__}, not "
                                  "a mapping.")
            architecture = DepthSplatConfig.from_dict(data["architecture"],
                                                      source=f"{source} [architecture]")
            return EmbeddedSettings(architecture, preprocess, None)
        unknown = sorted(set(data) - ARCHITECTURE_FIELDS - LEGACY_RUN_KEYS)
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {unknown}; the file was not written "
                              "by save_checkpoint.")
        architecture = DepthSplatConfig.from_dict(
            {k: v for k, v in data.items() if k in ARCHITECTURE_FIELDS}, source=source
        )
        legacy = {k: v for k, v in data.items() if k in LEGACY_RUN_KEYS}
        return EmbeddedSettings(architecture, None, legacy)
    except ConfigError as error:
        raise CheckpointError(
            f"{error} The file's embedded settings cannot be used; pass an explicit preset "
            "(--config, a configs/checkpoints/*.yaml file) or save the model again."
        ) from error


def _check_entries(entries: dict, layout: str, path: Path) -> None:
    bad_keys = [k for k in entries if not isinstance(k, str)]
    if bad_keys:
        raise CheckpointError(f"{path} ({layout}) has keys that are not strings, e.g. "
                              f"{_preview(bad_keys)}; it is not a DepthSplat state dict.")
    not_tensors = [k for k, v in entries.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"{path} ({layout}) has entries that are not tensors, e.g. {_preview(not_tensors)}; "
            "it is not a DepthSplat state dict."
        )


def _normalize(
    entries: dict, settings: EmbeddedSettings | None, layout: str, path: Path
) -> RawCheckpoint:
    _check_entries(entries, layout, path)
    if "pretrained.patch_embed.proj.weight" in entries:
        # The depth predictor's own state dict saved as a plain file (no 'model' entry).
        return RawCheckpoint({DEPTH_PREFIX + k: v for k, v in entries.items()}, settings, layout)
    state = {}
    for key, value in entries.items():
        if key.startswith(("depth_predictor.", "feature_upsampler.", "gaussian_")):
            key = PREFIX + key  # saved from the encoder itself
        state[key] = value
    return RawCheckpoint(state, settings, layout)


def _first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of ``error``'s message. A longer one is cut after its last whole sentence
    within ``limit`` characters (else its last whole word) and ends in "..."."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    if len(text) <= limit:
        return text
    head = text[:limit]
    sentence_end = head.rfind(". ")
    if sentence_end > 0:
        return head[: sentence_end + 1] + " ..."
    word_end = head.rfind(" ")
    return (head[:word_end] if word_end > 0 else head).rstrip(",;:") + "..."


def _preview(items: Iterable[object], count: int = 5, width: int = 60) -> str:
    """The first ``count`` items as short reprs, for messages about untrusted files."""
    shown = []
    for item in list(items)[:count]:
        text = repr(item)
        shown.append(text if len(text) <= width else text[: width - 3] + "...")
    return "[" + ", ".join(shown) + "]"


# --- writing ------------------------------------------------------------------------------------


def save_checkpoint(
    model: nn.Module, path: str | Path, *, preprocess: Mapping[str, Any] | None = None,
    global_step: int | None = None,
) -> Path:
    """Write the weights and the settings atomically (``.safetensors`` or a torch file).

    Args:
        model: a :class:`~dsviewer.model.DepthSplat` (its ``config`` becomes the ``architecture``
            section).
        path: where to write; ``.safetensors`` selects that format, anything else a torch file.
        preprocess: stored unread as the ``preprocess`` section, e.g.
            ``dsviewer.dataset.settings.settings_to_dict(settings)``; loaders then need no preset.
        global_step: the training step, stored as PyTorch Lightning stores it (a top-level
            ``global_step`` beside ``state_dict``; torch files only), so that a folder watcher
            reads it (:attr:`RawCheckpoint.global_step`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    sections: dict[str, Any] = {"architecture": model.config.to_dict()}
    if preprocess is not None:
        sections["preprocess"] = dict(preprocess)
    if global_step is not None and path.suffix == ".safetensors":
        raise ValueError("global_step is stored in torch files only (.pth, .ckpt)")
    entries: dict[str, Any] = {"state_dict": state, CONFIG_ENTRY: sections}
    if global_step is not None:
        entries["global_step"] = int(global_step)
    with atomic_write(path) as handle:
        if path.suffix == ".safetensors":
            from safetensors.torch import save

            handle.write(save(state, metadata={CONFIG_ENTRY: json.dumps(sections)}))
        else:
            torch.save(entries, handle)
    return path
