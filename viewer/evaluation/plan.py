"""Which scenes an evaluation (or a batch export) runs, resolved once, in time linear in the keys.

The scene list is, in this order of precedence: the specs given explicitly; else every key of
the evaluation index whose entry is not null (null entries are skipped by the official
evaluation too); else every key the data roots' ``index.json`` files list. Keys are looked up
in one merged key -> chunk table read once, so a key absent from the roots costs a dict lookup
(the per-scene loader re-reads the index and ranks close matches for its error message, which
is quadratic over thousands of absent keys); only a key typed with ``--scene`` gets the closest
keys in its reason, as the viewer's message has them. An evaluation plans its whole test set
even with ``--scene`` (``whole``): the specs choose what runs, the rows stay those of the test
set. Each scene that can be loaded carries its source (:func:`scene_source`), which its record
keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dsviewer.dataset import SYNTHETIC_PREFIX
from dsviewer.dataset.errors import close_keys, close_keys_text
from dsviewer.errors import InputError


@dataclass(frozen=True)
class PlannedScene:
    """One row of the evaluation: a scene spec and where it lives, or why it cannot run."""

    key: str  # the spec as given: a dataset key, a capture folder or synthetic:<seed>
    position: int  # its place in the plan (the row order of scenes.csv)
    chunk: Path | None = None  # the chunk holding a dataset key
    context: tuple[int, ...] | None = None  # frames from the evaluation index, if it has the key
    target: tuple[int, ...] | None = None
    missing: str | None = None  # why the scene cannot be loaded at all (then it is not run)
    frames_from: str | None = None  # who chose context/target, for errors (None: the index)
    source: dict | None = field(default=None, compare=False)  # see scene_source


def scene_source(spec: str, chunk: Path | None, root: Path | None, explicit: bool,
                 stats: dict[Path, tuple[int, int] | None]) -> dict:  # fmt: skip
    """Where a scene is read from, as its record stores it: a dataset key's chunk (absolute,
    with its size and modification time, a cheap fingerprint of its contents) and the data root
    that lists it, a capture folder, or a synthetic spec. ``stats`` caches one stat per chunk."""
    if chunk is not None:
        chunk = Path(chunk).resolve()
        if chunk not in stats:
            try:
                status = chunk.stat()
                stats[chunk] = (status.st_size, status.st_mtime_ns)
            except OSError:
                stats[chunk] = None  # the load reports it
        size, mtime = stats[chunk] or (None, None)
        return {"chunk": str(chunk), "bytes": size, "mtime_ns": mtime,
                "data_root": None if root is None else str(Path(root).resolve())}  # fmt: skip
    if explicit and not spec.startswith(SYNTHETIC_PREFIX) and Path(spec).is_dir():
        return {"capture": str(Path(spec).resolve())}
    return {"synthetic": spec}


@dataclass
class ScenePlan:
    scenes: list[PlannedScene]  # the rows
    skipped_by_index: int = 0  # keys whose evaluation-index entry is null
    root_keys: int = 0  # keys the data roots list (named when none of the scenes is found)
    root_key_example: str | None = None
    selected: frozenset[str] | None = None  # the rows to run (None: all of them)

    @property
    def chosen(self) -> list[PlannedScene]:
        """The rows to run (with ``--scene``: those specs, else all), in row order."""
        if self.selected is None:
            return self.scenes
        return [scene for scene in self.scenes if scene.key in self.selected]

    @property
    def available(self) -> list[PlannedScene]:
        return [scene for scene in self.chosen if scene.missing is None]

    @property
    def missing(self) -> list[PlannedScene]:
        return [scene for scene in self.chosen if scene.missing is not None]


class PlanError(InputError):
    """Nothing to run, or a source that cannot be read."""


def _is_dataset_key(spec: str, explicit: bool) -> bool:
    """Keys from an index or a root are dataset keys even if a folder of that name exists."""
    if not explicit:
        return True
    return not spec.startswith(SYNTHETIC_PREFIX) and not Path(spec).is_dir()


def plan_scenes(
    data_roots: Sequence[Path],
    index: Path | None = None,
    specs: Sequence[str] = (),
    whole: bool = False,
) -> ScenePlan:
    """Resolve the scenes to run; see the module docstring for where they come from.

    With ``whole`` and ``specs``, the rows are those of the index (or of the roots) followed by
    the specs they do not hold, and only the specs are selected to run: an evaluation's outputs
    keep every row of its test set when ``--scene`` redoes a few.

    Raises:
        PlanError, or the dataset loader's errors (a missing root, an unreadable index.json
        or evaluation index) with a message that says what to fix.
    """
    from dsviewer.dataset.chunks import load_index
    from dsviewer.dataset.views import read_evaluation_index

    roots = [Path(root) for root in data_roots]
    chunks: dict[str, Path] = {}
    root_of: dict[str, Path] = {}
    for root in roots:  # one root at a time, to know which one lists each key
        for key, chunk in load_index([root]).items():
            if key not in chunks:  # the first root wins, as the loader's search path does
                chunks[key], root_of[key] = chunk, root
    selections = read_evaluation_index(Path(index)) if index is not None else {}
    skipped = 0
    if index is not None:
        listed = [key for key, selection in selections.items() if selection is not None]
        skipped = len(selections) - len(listed)
    else:
        listed = sorted(chunks)
    if specs:
        wanted = [*listed, *specs] if whole else list(specs)
        skipped = skipped if whole else 0
    elif index is not None or roots:
        wanted = listed
    else:
        raise PlanError(
            "No scenes to evaluate: pass --data-root (every key of its index.json is run), "
            "--index (the keys of an evaluation index) or --scene."
        )
    if not wanted:
        raise PlanError("The scene list is empty: the index names no key with views to run.")
    if roots:
        why_missing = "no data root lists this key in its index.json"
    else:
        why_missing = "no --data-root was given to look this key up in"
    given = set(specs)
    scenes, stats = [], {}
    for position, spec in enumerate(dict.fromkeys(wanted)):
        chunk = chunks.get(spec)
        explicit = spec in given
        missing = why_missing if chunk is None and _is_dataset_key(spec, explicit) else None
        if missing is not None and explicit and chunks:  # a typo: name the keys it may mean
            missing = f"{missing}. {close_keys_text(close_keys(spec, chunks), len(chunks))}"
        selection = selections.get(spec)
        if spec in selections and selection is None:
            missing = "the evaluation index marks this key as skipped (null)"
        source = None if missing else scene_source(spec, chunk, root_of.get(spec), explicit,
                                                   stats)  # fmt: skip
        scenes.append(PlannedScene(
            spec, position, chunk,
            context=None if selection is None else tuple(selection.context),
            target=None if selection is None else tuple(selection.target),
            missing=missing, source=source,
        ))  # fmt: skip
    selected = frozenset(specs) if specs and whole else None
    return ScenePlan(scenes, skipped, len(chunks), next(iter(chunks), None), selected)


def with_explicit_frames(plan: ScenePlan, context: Sequence[int] | None,
                         target: Sequence[int] | None) -> ScenePlan:
    """``plan`` with ``--context``/``--target`` winning over the evaluation index for every
    scene (and named as the source of frames a scene does not have)."""
    from dataclasses import replace

    if context is None and target is None:
        return plan
    changes: dict = {"frames_from": "--context/--target"}
    if context is not None:
        changes["context"] = tuple(context)
    if target is not None:
        changes["target"] = tuple(target)
    return replace(plan, scenes=[replace(scene, **changes) for scene in plan.scenes])


def shard(scenes: Sequence[PlannedScene], rank: int, world_size: int) -> list[PlannedScene]:
    """Rank ``rank``'s disjoint share: a contiguous block of the scenes sorted by chunk.

    Blocks differ in size by at most one scene. Sorting by chunk keeps each chunk file on as
    few ranks as possible (a scene load reads its whole chunk; neighbours hit the page cache).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size} processes")
    ordered = sorted(scenes, key=lambda scene: (str(scene.chunk or ""), scene.position))
    start = len(ordered) * rank // world_size
    stop = len(ordered) * (rank + 1) // world_size
    return ordered[start:stop]
