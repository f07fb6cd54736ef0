"""Which frames of a scene become context and target views."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from dsviewer.io.text_formats import MalformedTextError, parse_json

from .errors import (
    DuplicateContextError,
    EvaluationIndexError,
    FrameIndexError,
    SceneError,
    SkippedSceneError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViewSelection:
    context: list[int]
    target: list[int]


def read_evaluation_index(path: Path) -> dict[str, ViewSelection | None]:
    """The official evaluation index: scene key -> {"context": [...], "target": [...]} or null."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"The evaluation index {path} does not exist. Pass the JSON the official "
            "evaluation uses, e.g. assets/evaluation_index_re10k.json from the DepthSplat "
            "repository, or give --context/--target explicitly."
        )
    try:
        raw = parse_json(path.read_bytes())
    except MalformedTextError as exc:
        raise SceneError(f"The evaluation index {path} is not valid JSON ({exc}).") from None
    if not isinstance(raw, dict):
        raise SceneError(f"The evaluation index {path} must map scene keys to entries.")
    index: dict[str, ViewSelection | None] = {}
    for key, entry in raw.items():
        if entry is None:
            index[key] = None
        elif isinstance(entry, dict) and "context" in entry and "target" in entry:
            index[key] = ViewSelection(_frame_list(path, key, "context", entry["context"]),
                                       _frame_list(path, key, "target", entry["target"]))
        else:
            raise SceneError(
                f"Entry {key!r} of the evaluation index {path} is neither null nor "
                '{"context": [...], "target": [...]}.'
            )
    return index


def _frame_list(path: Path, key: str, role: str, values: object) -> list[int]:
    """A list of frame indices from the index file: integers only (not bools, floats or
    strings, which ``int()`` would silently turn into other frames)."""
    if not isinstance(values, list):
        raise EvaluationIndexError(path, key, role, values, "expected a list of frame indices")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EvaluationIndexError(
                path, key, f"{role} entry", value,
                f"a frame index must be an integer, not a {type(value).__name__}")
        if value < 0:
            raise EvaluationIndexError(path, key, f"{role} entry", value,
                                       "frame indices count from 0")
    return list(values)


def evenly_spaced(num_frames: int, num_context: int, max_targets: int | None = None
                  ) -> ViewSelection:
    """``num_context`` frames spread from the first to the last, targets in between."""
    if num_frames < num_context:
        raise SceneError(
            f"The scene has {num_frames} frames, fewer than the {num_context} context views "
            "requested. Ask for fewer context views."
        )
    context = torch.linspace(0, num_frames - 1, num_context).round().long().tolist()
    context = sorted(set(context))
    return ViewSelection(context, frames_between(context, max_targets))


def frames_between(context: Sequence[int], max_targets: int | None) -> list[int]:
    """Frames from the first to the last context frame that are not context, thinned evenly to
    at most ``max_targets``."""
    between = [i for i in range(min(context), max(context) + 1) if i not in context]
    if max_targets is not None and len(between) > max_targets:
        picks = torch.linspace(0, len(between) - 1, max_targets).round().long().tolist()
        between = [between[i] for i in sorted(set(picks))]
    return between


def check_frames(selection: ViewSelection, num_frames: int, source: str, what: str) -> None:
    """Every selected frame must exist in the scene."""
    for role, frames in (("context", selection.context), ("target", selection.target)):
        bad = [i for i in frames if not 0 <= i < num_frames]
        if bad:
            raise FrameIndexError(source, bad, num_frames, f"{what} ({role})")
    if not selection.context:
        raise SceneError(f"{what} selects no context view of {source}; give at least one.")
    if len(set(selection.context)) != len(selection.context):
        raise DuplicateContextError(source, list(selection.context), what)


def select_views(
    key: str,
    num_frames: int,
    source: str,
    *,
    context: Sequence[int] | None,
    target: Sequence[int] | None,
    index_path: Path | None,
    num_context_views: int,
    max_targets: int | None = 8,
) -> ViewSelection:
    """Explicit indices win; else the evaluation index entry; else evenly spaced frames."""
    if context is not None:
        if target is None:
            target = frames_between(context, max_targets) if context else []
        selection = ViewSelection(list(context), list(target))
        check_frames(selection, num_frames, source, "--context/--target")
        return selection
    if index_path is not None:
        index = read_evaluation_index(index_path)
        if key in index:
            entry = index[key]
            if entry is None:
                raise SkippedSceneError(key, Path(index_path))
            if target is not None:
                entry = ViewSelection(entry.context, list(target))
            check_frames(entry, num_frames, source, f"The evaluation index {index_path}")
            return entry
        log.warning("%s is not in the evaluation index %s; using %d evenly spaced context "
                    "views instead.", key, index_path, num_context_views)
    selection = evenly_spaced(num_frames, num_context_views, max_targets)
    if target is not None:
        selection = ViewSelection(selection.context, list(target))
    check_frames(selection, num_frames, source, "The view selection")
    return selection
