"""Where a scene's time goes: the one list of processing stages and the timer that fills it.

:data:`STAGES` names every stage a scene passes through on its way from disk to results, in
order. ``dsviewer eval`` (per scene in its records, per rank in ``summary.json``),
``dsviewer export`` (``metrics.json``) and the benchmarks (``bench/eval.py``,
``bench/export.py``) all report these names and no others.

A :class:`StageTimer` holds one scene's seconds per stage. Code that does a stage's work wraps
it in ``with stage("decode"):``; the seconds go to the timer made current in this thread by
``with timing(timer):`` and nowhere when none is (the viewer, a notebook). Stages nest
exclusively: the seconds of an inner stage are taken out of the outer one, so a scene's stages
add up to the wall time spent on it (a loader that preprocesses while it decodes reports both
parts apart). The current timer is a context variable, so a pipeline may time several scenes at
once, each in its own thread, and code deep in ``dsviewer.dataset`` needs no timer argument.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    meaning: str


STAGES: tuple[Stage, ...] = (
    Stage("decode", "reading the scene's files (a chunk, a capture's images and model) and "
          "decoding the selected frames"),
    Stage("preprocess", "rescale and crop to the model's input, intrinsics updated, the run's "
          "planes and views applied"),
    Stage("forward", "the model's forward pass (the encoder-only bound counts this alone)"),
    Stage("unproject", "depth maps and Gaussians into the layers in the user's frame, the "
          "prediction's non-finite checks"),
    Stage("analysis", "clamps, edges, GT and SfM errors, statistics, Chamfer distances"),
    Stage("consistency", "multi-view consistency: each view's depth checked in the others"),
    Stage("target_renders", "the Gaussians rendered at the target views, PSNR"),
    Stage("thumbnails", "colour-mapped thumbnails (eval) and figures (export)"),
    Stage("writes", "the scene's files: eval's record, export's PLY, HTML, PNG and JSON"),
)  # fmt: skip
STAGE_NAMES = tuple(s.name for s in STAGES)
STAGE_MEANINGS = {s.name: s.meaning for s in STAGES}


class StageTimer:
    """Wall seconds per stage of one scene (every name of :data:`STAGE_NAMES`)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(STAGE_NAMES, 0.0)
        self._open: list[str] = []  # stages entered and not left, innermost last
        self._since = 0.0  # when the innermost open stage last resumed

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if name not in self.seconds:
            raise KeyError(f"{name!r} is not a stage of dsviewer.stage_timer.STAGES")
        now = time.perf_counter()
        if self._open:  # the outer stage pauses while this one runs
            self.seconds[self._open[-1]] += now - self._since
        self._open.append(name)
        self._since = now
        try:
            yield
        finally:
            now = time.perf_counter()
            self.seconds[self._open.pop()] += now - self._since
            self._since = now  # the outer stage, if any, resumes

    def now(self) -> dict[str, float]:
        """Seconds per stage so far: a stage still running counts up to this call."""
        seconds = dict(self.seconds)
        if self._open:
            seconds[self._open[-1]] += time.perf_counter() - self._since
        return seconds

    def total(self) -> float:
        return sum(self.now().values())

    def as_dict(self) -> dict[str, float]:
        """Seconds per stage so far, rounded to 0.1 ms (JSON-ready)."""
        return {name: round(value, 4) for name, value in self.now().items()}


_current: ContextVar[StageTimer | None] = ContextVar("dsviewer_stage_timer", default=None)


@contextmanager
def timing(timer: StageTimer) -> Iterator[StageTimer]:
    """Make ``timer`` the one :func:`stage` records into, in this thread, for the block."""
    token = _current.set(timer)
    try:
        yield timer
    finally:
        _current.reset(token)


def current_timer() -> StageTimer | None:
    """The timer :func:`stage` records into in this thread (None: nothing is timed)."""
    return _current.get()


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Count the block's wall time as stage ``name`` of the current timer (if there is one)."""
    timer = _current.get()
    if timer is None:
        yield
        return
    with timer.stage(name):
        yield


def add_stages(totals: Mapping[str, float] | None, more: Mapping[str, float] | None) -> dict:
    """Per-stage sums of two stage dicts (either may be None or miss names)."""
    return {name: round((totals or {}).get(name, 0.0) + (more or {}).get(name, 0.0), 4)
            for name in STAGE_NAMES}  # fmt: skip
