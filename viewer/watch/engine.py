"""``dsviewer watch``'s background work: every new checkpoint of a training folder becomes a step,
run on the watched scenes, its metrics kept for the curves and its runs kept for the timeline.

One thread polls the folder (:class:`~dsviewer.viewer.watch.checkpoints.CheckpointFolder` reads
a file only once it is complete) and works through the steps in order. For each step the model
is opened once, run on the shown scene first and then on the other scenes while the step stays
within its time budget, and dropped: no model outlives its step, and at most one is in memory
(one lock around every model use, the GUI's on-demand runs included).

What is kept, and how memory stays bounded:

* the metrics of every (step, scene): a row of a few numbers, always kept;
* the runs (:class:`~dsviewer.viewer.session.loaded.LoadedScene`: prediction, layers, cached
  analysis) in a cache bounded by :attr:`WatchBudget.memory_bytes` (measured with
  :func:`~dsviewer.viewer.session.runs.estimated_bytes`); past it the least recently used run
  that is not on screen is dropped, and run again from its checkpoint when it is asked for.

A checkpoint that cannot be run (another architecture, a truncated file, NaN weights the model
refuses) becomes a note, never an exception on the thread; the watch goes on with the next.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dsviewer.viewer.session.runs import estimated_bytes

if TYPE_CHECKING:
    from dsviewer.viewer.session.loaded import LoadedScene, ProgressFn
    from dsviewer.viewer.session.model import ModelSession
    from dsviewer.viewer.session.specs import RunSpec, SessionSettings
    from dsviewer.viewer.watch.checkpoints import CheckpointFolder, StepCheckpoint

log = logging.getLogger(__name__)

Row = dict[str, object]  # steps.csv's row: step, checkpoint, then scenes.csv's columns


@dataclass(frozen=True)
class WatchBudget:
    """How much the watch may hold and spend.

    ``memory_bytes``: the runs kept (predictions and layers of every step and scene);
    ``step_seconds``: time a step may spend on the scenes that are not shown (the shown one is
    always run); ``poll_seconds``: how often the folder is looked at; ``max_target_views``:
    target views rendered per run for its target PSNR (None: all).
    """

    memory_bytes: int = 2 << 30
    step_seconds: float = 120.0
    poll_seconds: float = 1.0
    max_target_views: int | None = None


def error_text(error: BaseException) -> str:
    """A failure as plain text for a note (escaped where it is shown): the user error's
    paragraph, or one line that points to the log with the traceback."""
    from dsviewer.viewer.errors import is_user_error, write_log

    if is_user_error(error):
        return str(error)
    return f"internal error ({type(error).__name__}); the traceback is in {write_log(error)}"


def step_name(step: int) -> str:
    """A step's run name (what the Runs folder, compare.json and the exports call it)."""
    return f"step-{step}"


class RunCache:
    """The kept runs, least recently used first, within a byte budget; ``pinned`` ones (on
    screen) are never dropped."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self._runs: OrderedDict[tuple[int, str], LoadedScene] = OrderedDict()
        self.pinned: set[tuple[int, str]] = set()
        self.dropped = 0  # runs dropped so far (they are run again when asked for)

    def get(self, key: tuple[int, str]) -> LoadedScene | None:
        loaded = self._runs.get(key)
        if loaded is not None:
            self._runs.move_to_end(key)
        return loaded

    def put(self, key: tuple[int, str], loaded: LoadedScene) -> None:
        self._runs[key] = loaded
        self._runs.move_to_end(key)
        self.enforce()

    def bytes(self) -> int:
        return sum(estimated_bytes(loaded) for loaded in self._runs.values())

    def enforce(self) -> None:
        """Drop the least recently used unpinned runs while the kept ones exceed the budget
        (sizes measured again: a run's analysis and flat layers grow after it is kept)."""
        sizes = {key: estimated_bytes(loaded) for key, loaded in self._runs.items()}
        total = sum(sizes.values())
        for key in list(self._runs):
            if total <= self.budget:
                break
            if key not in self.pinned:
                total -= sizes[key]
                del self._runs[key]
                self.dropped += 1

    def __contains__(self, key: tuple[int, str]) -> bool:
        return key in self._runs


class WatchEngine:
    """Follows ``folder`` and runs each new step on ``scenes``.

    Args:
        folder: the checkpoints, each reported once complete.
        scenes: scene specs; the first is shown at start (:meth:`show_scene` changes which).
        template: the run every step makes, its checkpoint replaced by the step's
            (views and planes from the command line).
        settings: how models open and where scenes are found.
        budget: memory and time (see :class:`WatchBudget`).
    """

    def __init__(self, folder: CheckpointFolder, scenes: Sequence[str], template: RunSpec,
                 settings: SessionSettings, budget: WatchBudget | None = None) -> None:  # fmt: skip
        self.folder = folder
        self.scenes = list(dict.fromkeys(scenes))
        self.template = template
        self.settings = settings
        self.budget = budget or WatchBudget()
        self.cache = RunCache(self.budget.memory_bytes)
        self.shown_scene = self.scenes[0]
        self.rows: dict[tuple[int, str], Row] = {}
        self.notes: list[str] = []
        self.listeners: list[Callable[[], None]] = []  # called on the engine thread on news
        self._steps: dict[int, StepCheckpoint] = {}  # every step that opened, by number
        self._queue: list[StepCheckpoint] = []  # reported, not yet run
        self._planes: dict[int, tuple[float, float]] = {}  # a step's own planes (model units)
        self._lock = threading.RLock()  # the fields above
        self._model_lock = threading.Lock()  # one model in memory at a time
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.busy = False  # a step is being run

    # --- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="dsviewer-watch", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            with self._lock:
                step = self._queue.pop(0) if self._queue else None
                self.busy = step is not None
            if step is not None:
                self._run_step(step)
                with self._lock:
                    self.busy = False
                self._tell()  # idle again, possibly
                continue
            self._wake.wait(self.budget.poll_seconds)
            self._wake.clear()

    def poll_once(self) -> None:
        """Ask the folder for complete new checkpoints; queue them and keep its notes."""
        try:
            new, notes = self.folder.poll()
        except OSError as error:  # the folder went away or is unreadable: say so, keep polling
            new, notes = [], [f"Could not read {self.folder.root}: {error}"]
        with self._lock:
            self._queue.extend(new)
            self.notes.extend(notes)
        if notes:
            self._tell()

    def idle(self) -> bool:
        """Nothing queued and nothing running (tests, scripts)."""
        with self._lock:
            return not self._queue and not self.busy

    def wait_for_steps(self, count: int, timeout: float = 120.0) -> bool:
        """Wait until ``count`` steps have rows for every scene and the engine is idle."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                done = [s for s in self._steps if all((s, sc) in self.rows for sc in self.scenes)]
            if len(done) >= count and self.idle():
                return True
            self._wake.set()
            time.sleep(0.1)
        return False

    def _tell(self) -> None:
        for listener in list(self.listeners):
            try:
                listener()
            except Exception:  # a listener's bug must not stop the watch
                log.exception("a watch listener failed")

    def _note(self, text: str) -> None:
        with self._lock:
            self.notes.append(text)
        self._tell()

    def _run_step(self, step: StepCheckpoint) -> None:
        """Open the step's model once: the shown scene, then the others within the budget."""
        start = time.perf_counter()
        with self._model_lock:
            try:
                session = self._open(step.path)
            except Exception as error:  # noqa: BLE001 -- a bad checkpoint is a note, not a crash
                self._note(f"Step {step.step} ({step.path.name}) skipped: "
                           f"{error_text(error)}")  # fmt: skip
                return
            with self._lock:
                self._steps[step.step] = step
            scenes = [self.shown_scene, *(s for s in self.scenes if s != self.shown_scene)]
            for number, scene in enumerate(scenes):
                if number and time.perf_counter() - start > self.budget.step_seconds:
                    self._note(f"Step {step.step}: {', '.join(scenes[number:])} not run (past "
                               f"the {self.budget.step_seconds:g} s a step may take); they run "
                               "when shown.")  # fmt: skip
                    break
                try:
                    self._run(session, step, scene)
                except Exception as error:  # noqa: BLE001 -- e.g. a scene this model refuses
                    self._note(f"Step {step.step} on {scene}: {error_text(error)}")
                self._tell()
            del session  # the model goes with it

    def _open(self, checkpoint: Path) -> ModelSession:
        from dsviewer.viewer.session.model import ModelSession

        return ModelSession(checkpoint, self.settings)

    def _run(self, session: ModelSession, step: StepCheckpoint, scene: str,
             progress: ProgressFn | None = None) -> LoadedScene:  # fmt: skip
        from dsviewer.viewer.session.runs import run_planes
        from dsviewer.viewer.watch.step_metrics import loaded_step_row

        spec = self.spec(step.step)
        loaded = session.load(scene, spec, progress, run_name=step_name(step.step))
        row = loaded_step_row(step, scene, loaded, self.budget.max_target_views)
        with self._lock:
            self.rows[(step.step, scene)] = row
            self._planes.setdefault(step.step, run_planes(loaded))
            self.cache.put((step.step, scene), loaded)
        return loaded

    # --- what the viewer asks -----------------------------------------------------------------

    def spec(self, step: int) -> RunSpec:
        """The run a step makes (the template with the step's checkpoint)."""
        from dsviewer.viewer.session.specs import model_path

        return dataclasses.replace(self.template, checkpoint=model_path(self._steps[step].path))

    def steps(self, scene: str | None = None) -> list[StepCheckpoint]:
        """The steps that opened (with ``scene``: those with a result on it), by step."""
        with self._lock:
            found = [s for n, s in self._steps.items()
                     if scene is None or (n, scene) in self.rows]  # fmt: skip
        return sorted(found, key=lambda s: s.step)

    def step_of(self, checkpoint: Path) -> int | None:
        with self._lock:
            return next((n for n, s in self._steps.items()
                         if self.spec(n).checkpoint == checkpoint), None)  # fmt: skip

    def own_planes(self, step: int) -> tuple[float, float] | None:
        with self._lock:
            return self._planes.get(step)

    def show_scene(self, scene: str) -> None:
        """The scene the viewer shows: run first on every later step (the listeners hear of a
        change: the timeline lists that scene's steps)."""
        with self._lock:
            changed, self.shown_scene = scene != self.shown_scene, scene
        if changed:
            self._tell()

    def pin(self, keys: set[tuple[int, str]]) -> None:
        """The runs on screen (A and B): never dropped from the cache."""
        with self._lock:
            self.cache.pinned = set(keys)

    def loaded(self, scene: str, step: int, progress: ProgressFn | None = None) -> LoadedScene:
        """The run of ``step`` on ``scene``: kept, else run now from its checkpoint."""
        with self._lock:
            kept = self.cache.get((step, scene))
            checkpoint = self._steps[step]
        if kept is not None:
            return kept
        with self._model_lock:
            with self._lock:
                kept = self.cache.get((step, scene))  # run meanwhile by the thread
            if kept is not None:
                return kept
            loaded = self._run(self._open(checkpoint.path), checkpoint, scene, progress)
        self._tell()  # a new row for the curves
        return loaded

    def run(self, scene: str, spec: RunSpec, name: str,
            progress: ProgressFn | None = None) -> LoadedScene:  # fmt: skip
        """Another run of a step's checkpoint (New run: other frames or planes), not kept."""
        with self._model_lock:
            return self._open(spec.checkpoint).load(scene, spec, progress, run_name=name)

    def table(self, scene: str) -> tuple[list[int], dict[str, list[float | None]]]:
        """The curves of ``scene``: its steps and, per metric, one value per step."""
        steps = [s.step for s in self.steps(scene)]
        with self._lock:
            rows = [self.rows[(step, scene)] for step in steps]
        names = list(rows[0]) if rows else []
        return steps, {name: [row.get(name) for row in rows] for name in names}
