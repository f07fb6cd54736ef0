"""The Timeline folder (``dsviewer watch``): a slider over the training steps, play/pause, follow
the newest step, and "Compare with step", which makes two steps runs A and B.

The folder knows steps as numbers only: whoever builds it hands it the steps there are
(:meth:`TimelinePanel.set_steps`) and gets the user's choices through its callbacks; what a
step is (a run of a checkpoint) is the watch's business. Strings from files (checkpoint names,
notes) are escaped before they reach the markdown.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dsviewer.viewer.escape import escape_markdown

if TYPE_CHECKING:
    from dsviewer.viewer.gui.context import GuiContext

NO_STEP = "(none)"  # the compare dropdown's label for "no second step"
ORDER = -2.0  # above the viewer's folders (viser orders by a counter that starts at 1)
PLAY_SECONDS = 1.5  # at least this long per step while playing
MAX_MARKS = 6  # step numbers written under the slider


def slider_marks(steps: Sequence[int]) -> tuple[tuple[int, str], ...]:
    """At most :data:`MAX_MARKS` evenly spread slider positions, labelled with their step."""
    if not steps:
        return ()
    count = min(len(steps), MAX_MARKS)
    picks = sorted({round(i * (len(steps) - 1) / max(count - 1, 1)) for i in range(count)})
    return tuple((i, str(steps[i])) for i in picks)


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
            if not self._setting and self.steps:
                self.follow.value = self.slider.value == len(self.steps) - 1
                self.on_step(self.shown_step())

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
        return self.steps[min(int(self.slider.value), len(self.steps) - 1)]

    def compare_step(self) -> int | None:
        value = self.compare.value
        return None if value == NO_STEP else int(value)

    def set_steps(self, steps: Sequence[int], label: str) -> bool:
        """The steps there are now (sorted) and what to say about the shown one. Returns True
        when following moved the slider to a new newest step (its ``on_step`` is called)."""
        old = list(self.steps)
        self.steps = list(steps)
        moved = False
        self._setting = True
        try:
            if steps:
                self.slider.max = max(1, len(steps) - 1)
                self.slider.marks = slider_marks(steps)
                self.slider.disabled = len(steps) < 2
                self.play.disabled = len(steps) < 2
                if self.follow.value and self.steps != old:
                    moved = not old or steps[-1] != old[-1]
                    self.slider.value = len(steps) - 1
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
                self.slider.value = self.steps.index(step)
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
        if int(self.slider.value) >= len(self.steps) - 1:
            self.slider.value = 0  # from the start, as a player does
        paused = self._paused = threading.Event()

        def play() -> None:
            while not paused.is_set() and int(self.slider.value) < len(self.steps) - 1:
                self.slider.value = int(self.slider.value) + 1  # calls on_step
                paused.wait(PLAY_SECONDS)
            self._playing.clear()
            self.play.label = "Play"

        threading.Thread(target=play, name="dsviewer-play", daemon=True).start()

    def pause(self) -> None:
        self._paused.set()
