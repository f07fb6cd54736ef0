"""The watch in the live viewer: the engine's steps on a :class:`ViewerApp`'s screen.

:class:`WatchViewer` adds the Timeline and Curves folders to the app and turns their choices
into runs: the shown step is run A, "Compare with step" run B (both through the app's own
``show_runs``, so B - A, the inspector's columns and the export's compare.json treat two steps
as they treat two checkpoints). The clients' cameras stay put from step to step, and the
inspected pixel is inspected again at the new step. Step changes run on one worker thread of
their own; of several asked for while one is shown, only the newest is shown next.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from dsviewer.viewer.escape import escape_markdown
from dsviewer.viewer.gui.curves_panel import CurvesPanel
from dsviewer.viewer.gui.state import Partner
from dsviewer.viewer.gui.timeline_panel import TimelinePanel
from dsviewer.viewer.watch.engine import error_text

if TYPE_CHECKING:
    from dsviewer.viewer.gui.app import ViewerApp
    from dsviewer.viewer.watch.engine import WatchEngine
    from dsviewer.viewer.watch.step_runs import StepRunLoader


class WatchViewer:
    """The Timeline and Curves of ``engine`` in ``app`` (whose loader is ``loader``)."""

    def __init__(self, app: ViewerApp, engine: WatchEngine, loader: StepRunLoader,
                 folder_label: str) -> None:  # fmt: skip
        self.app, self.engine, self.loader = app, engine, loader
        self.timeline = TimelinePanel(app.context, folder_label, on_step=self.ask_step,
                                      on_compare=self.ask_compare)  # fmt: skip
        self.curves = CurvesPanel(app.context)
        self.compare_step: int | None = None
        self._wanted: tuple[int, int | None] | None = None  # (A's step, B's step) to show
        self._wanted_changed = threading.Condition()
        self._showing = False
        self._closed = False
        self._offered = 0  # steps New run offers
        threading.Thread(target=self._show_loop, name="dsviewer-steps", daemon=True).start()
        engine.listeners.append(self.refresh)

    @property
    def scene(self) -> str:
        """The scene shown, or being loaded (the Scene folder asks the loader, the loader tells
        the engine)."""
        return self.engine.shown_scene

    def shown_step(self) -> int | None:
        """Run A's step (None: A is not a step's own run, e.g. a New run)."""
        run = self.app.state.run_a
        return None if run is None else self.loader.step_of(run.spec)

    # --- the engine's news --------------------------------------------------------------------

    def refresh(self) -> None:
        """New steps, metrics or notes (called on the engine's thread): the slider, the
        curves, the notes; following, a new newest step is shown."""
        steps = [s.step for s in self.engine.steps(self.scene)]
        with self.app.lock:  # the engine's thread and the step worker both update the folders
            moved = self.timeline.set_steps(steps, self._status(steps))
            self.timeline.set_notes(self.engine.notes)
            opened = len(self.engine.steps())
            if opened != self._offered:
                self._offered = opened
                self.app.runs_panel.refresh_checkpoints()  # New run offers every step
        self._draw_curves()
        if moved or (steps and self.app.state.run_a is None):
            self.ask_step(steps[-1])

    def _status(self, steps: list[int]) -> str:
        if not steps:
            return "*Waiting for the first checkpoint...*"
        shown = self.shown_step()
        checkpoint = next((s for s in self.engine.steps() if s.step == shown), None)
        where = "" if checkpoint is None else (
            f"step **{shown}** ({escape_markdown(checkpoint.path.name)}, step from its "
            f"{escape_markdown(checkpoint.step_source)}); ")  # fmt: skip
        busy = " Running the newest checkpoint..." if not self.engine.idle() else ""
        return f"{where}{len(steps)} steps, {steps[0]} to {steps[-1]}.{busy}"

    def _draw_curves(self) -> None:
        table = {scene: self.engine.table(scene) for scene in self.engine.scenes}
        with self.app.lock, self.app.server.atomic():
            self.curves.show(table, self.scene, self.shown_step())

    # --- the user's choices -------------------------------------------------------------------

    def ask_step(self, step: int) -> None:
        """Show ``step`` as A (with the compare step as B)."""
        self._want(step, self.compare_step)

    def ask_compare(self, step: int | None) -> None:
        """Make ``step`` run B (None: no B) beside the step on the slider."""
        self.compare_step = step
        if self.timeline.steps:
            self._want(self.timeline.shown_step(), step)

    def _want(self, a: int, b: int | None) -> None:
        with self._wanted_changed:
            self._wanted = (a, b)
            self._wanted_changed.notify_all()

    def _show_loop(self) -> None:
        """The step worker: shows the newest wanted pair, one at a time."""
        while True:
            with self._wanted_changed:
                self._wanted_changed.wait_for(lambda: self._wanted is not None or self._closed)
                if self._closed:
                    return
                wanted, self._wanted = self._wanted, None
                self._showing = True
            try:
                self.show_steps(*wanted)
            except Exception as error:  # noqa: BLE001 -- the worker must not die silently
                self.timeline.set_notes([*self.engine.notes,
                                         f"Step {wanted[0]} not shown: {error_text(error)}"])
            finally:
                with self._wanted_changed:
                    self._showing = False
                    self._wanted_changed.notify_all()

    def wait_idle(self, timeout: float = 120.0) -> bool:
        """Wait until the wanted step is on screen and the app's jobs are done (tests)."""
        with self._wanted_changed:
            shown = self._wanted_changed.wait_for(
                lambda: self._wanted is None and not self._showing, timeout)
        return shown and self.app.wait_idle(timeout)

    def close(self) -> None:
        with self._wanted_changed:
            self._closed = True
            self._wanted_changed.notify_all()
        self.engine.close()

    def show_steps(self, a: int, b: int | None = None) -> None:
        """Runs A (step ``a``) and B (step ``b``, if any and not ``a``) of the shown scene."""
        scene = self.scene
        runs = [self.loader.step_run(scene, a)]
        if b is not None and b != a:
            runs.append(self.loader.step_run(scene, b))
        self.engine.pin({(step, scene) for step in (a, b) if step is not None})
        inspector = self.app.inspector_panel
        pixel = None if inspector.report is None else (inspector.report.view,
                                                       inspector.report.u, inspector.report.v)
        first = self.app.state.run_a is None
        self.app.show_runs(runs, scene_spec=scene, a=runs[0].name, keep_camera=not first)
        if len(runs) > 1:  # the compared step is B, whatever B was before
            self.app.set_pair(0, Partner(runs[1].name))
        if pixel is not None:
            with self.app.lock:
                inspector.inspect_pixel(*pixel)  # the same pixel at the new step
        steps = [s.step for s in self.engine.steps(scene)]
        with self.app.lock:
            self.timeline.show_step(a)
            moved = self.timeline.set_steps(steps, self._status(steps))
        if moved:  # a newer step came meanwhile, and the timeline follows the newest
            self.ask_step(steps[-1])
        self._draw_curves()
