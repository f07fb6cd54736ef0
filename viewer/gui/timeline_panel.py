"""The Timeline folder (``dsviewer watch``): a slider over the training steps, play/pause, follow
the newest step, and "Compare with step", which makes two steps runs A and B.

The folder knows steps as numbers only: whoever builds it hands it the steps there are
(:meth:`TimelinePanel.set_steps`) and gets the user's choices through its callbacks; what a
step is (a run of a checkpoint) is the watch's business. Strings from files (checkpoint names,
notes) are escaped before they reach the markdown.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dsviewer.viewer.escape import escape_markdown

if TYPE_CHECKING:
    from dsviewer.viewer.gui.context import GuiContext

NO_STEP = "(none)"  # the compare dropdown's label for "no second step"
ORDER = -2.0  # above the viewer's folders (viser orders by a counter that starts at 1)
PLAY_SECONDS = 1.5  # at least this long per step while playing


def slider_range(steps: Sequence[int]) -> tuple[int, int, int]:
    """``(min, max, stride)`` of a slider over the step numbers themselves: the stride is the
    greatest common divisor of the gaps (a training saving every N steps gives N), so the
    arrow keys go from one step to the next; a value between steps snaps to the nearest."""
    if len(steps) < 2:
        first = steps[0] if steps else 0
        return first, first + 1, 1
    stride = 0
    for before, after in itertools.pairwise(steps):
        stride = math.gcd(stride, after - before)
    return steps[0], steps[-1], max(stride, 1)


def nearest_step(steps: Sequence[int], value: float) -> int:
    return min(steps, key=lambda step: (abs(step - value), step))


class TimelinePanel:
    def __init__(self, context: GuiContext, folder_label: str,
                 on_step: Callable[[int], None],
                 on_compare: Callable[[int | None], None]) -> None:  # fmt: skip
        """``on_step(step)``: the slider (or play, or a new step while following) chose a step;
        ``on_compare(step)``: "Compare with step" chose B's step (None: no B)."""
        self.context = context
        self.steps: list[int] = []
        self.on_step, self.on_compare = on_step, on_compare
        self._setting = False  # set_steps moves the controls itself: not a user's choice
        self._playing = threading.Event()  # a play thread runs
        self._paused = threading.Event()  # tells it to stop
        gui = context.server.gui
        with gui.add_folder("Timeline", order=ORDER):
            self.status = gui.add_markdown(f"Watching {escape_markdown(folder_label)}: "
                                           "waiting for the first checkpoint...")  # fmt: skip
            self.slider = gui.add_slider(
                "Step", min=0, max=1, step=1, initial_value=0, disabled=True,
                hint="The training step shown (run A): layers, colours, inspector and maps "
                "follow it.",
            )  # fmt: skip
            self.play = gui.add_button("Play", disabled=True,
                                       hint="Step through the training steps, one by one.")
            self.follow = gui.add_checkbox(
                "Follow newest", initial_value=True,
                hint="Show each new step as soon as it has run on the shown scene.",
            )  # fmt: skip
            self.compare = gui.add_dropdown(
                "Compare with step", options=(NO_STEP,),
                hint="Make this step run B (and the shown one A): colour by 'B - A', the "
                "inspector's columns and the export's compare.json compare the two steps.",
            )  # fmt: skip
            self.notes = gui.add_markdown("")

        @self.slider.on_update
        def _(_event) -> None:
            if self._setting or not self.steps:
                return
            step = self.shown_step()
            if step != self.slider.value:
                self.show_step(step)  # between two steps: snap to the nearest
            self.follow.value = step == self.steps[-1]
            self.on_step(step)

        @self.play.on_click
        def _(_event) -> None:
            if self._playing.is_set():
                self.pause()
            else:
                self._start_playing()

        @self.compare.on_update
        def _(_event) -> None:
            if not self._setting:
                self.on_compare(self.compare_step())

    def shown_step(self) -> int:
        """The step on the slider (the nearest one, should it sit between two)."""
        return nearest_step(self.steps, self.slider.value)

    def compare_step(self) -> int | None:
        value = self.compare.value
        return None if value == NO_STEP else int(value)

    def set_steps(self, steps: Sequence[int], label: str) -> bool:
        """The steps there are now (sorted) and what to say about the shown one. Returns True
        when following moved the slider to a new newest step, which the caller then shows
        (``on_step`` is not called from here)."""
        old = list(self.steps)
        self.steps = list(steps)
        moved = False
        self._setting = True
        try:
            if steps:
                shown = self.shown_step() if old else steps[-1]
                low, high, stride = slider_range(steps)
                self.slider.min, self.slider.max, self.slider.step = low, high, stride
                self.slider.disabled = len(steps) < 2
                self.play.disabled = len(steps) < 2
                if self.follow.value and self.steps != old:
                    moved = not old or steps[-1] != old[-1]
                    shown = steps[-1]
                self.slider.value = shown
                chosen = self.compare.value
                self.compare.options = (NO_STEP, *map(str, steps))
                self.compare.value = chosen if chosen in self.compare.options else NO_STEP
        finally:
            self._setting = False
        self.status.content = label
        return moved

    def show_step(self, step: int) -> None:
        """Put the slider on ``step`` without calling back (a step shown another way)."""
        if step in self.steps:
            self._setting = True
            try:
                self.slider.value = step
            finally:
                self._setting = False

    def set_notes(self, notes: Sequence[str]) -> None:
        """The watch's notes (bad checkpoints, skipped scenes), newest last."""
        lines = [f"- {escape_markdown(note)}" for note in notes[-8:]]
        self.notes.content = ("**Notes**\n\n" + "\n".join(lines)) if lines else ""

    def _start_playing(self) -> None:
        """Advance the slider one step at a time until the last step or Pause."""
        self._playing.set()
        self.play.label = "Pause"
        if self.shown_step() == self.steps[-1]:
            self.slider.value = self.steps[0]  # from the start, as a player does
        paused = self._paused = threading.Event()

        def play() -> None:
            while not paused.is_set() and self.shown_step() < self.steps[-1]:
                with self.context.lock:  # not while set_steps moves the controls
                    later = self.steps.index(self.shown_step()) + 1
                    self.slider.value = self.steps[later]  # calls on_step
                paused.wait(PLAY_SECONDS)
            self._playing.clear()
            self.play.label = "Play"

        threading.Thread(target=play, name="dsviewer-play", daemon=True).start()

    def pause(self) -> None:
        self._paused.set()
