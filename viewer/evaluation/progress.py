"""One progress bar for many scenes: done / total, elapsed, ETA and the failures so far.

One rich task for the whole run, advanced once per scene, so the cost per scene is constant
(a display with one row per scene redraws all of them on every refresh: quadratic). When the
console is not a terminal (a SLURM or torchrun log file), a bar cannot redraw: then a plain
line says the same every :data:`PLAIN_INTERVAL` seconds and once at the end.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TypeVar

Item = TypeVar("Item")
PLAIN_INTERVAL = 30.0  # seconds between two plain progress lines in a log file


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


class SceneProgress:
    """One bar for ``total`` scenes::

        with SceneProgress(len(scenes), "Exporting") as progress:
            for scene in progress.track(scenes):
                ...  # on failure: progress.failed()

    or, when the counts come from elsewhere (every torchrun rank), ``progress.show(done,
    failed)`` after each change.

    Args:
        total: scenes of the run.
        description: the bar's label (plain text; it is escaped for rich markup).
        console: a ``rich.console.Console`` (default: stderr).
        enabled: False draws nothing (other ranks than 0, or tests).
        plain_interval: seconds between plain lines when the console is not a terminal.
    """

    def __init__(self, total: int, description: str, console=None, enabled: bool = True,
                 plain_interval: float = PLAIN_INTERVAL):  # fmt: skip
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.total = total
        self.description = description
        self.failures = 0
        self.completed = 0
        self._current_failed = False
        self._console = console or Console(stderr=True)
        self._plain = enabled and not self._console.is_terminal
        self._interval = plain_interval
        self._start = self._last_line = time.monotonic()
        self._shown = (-1, -1)  # the counts of the last plain line
        self._progress = Progress(
            TextColumn(escape(description)),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failures]} failed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self._console,
            disable=not enabled or self._plain,
        )
        self._task = self._progress.add_task(description, total=total, failures=0)

    def __enter__(self):  # -> Self
        self._start = self._last_line = time.monotonic()
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._progress.stop()
        if self._plain and self._shown != (self.completed, self.failures):
            self._plain_line()

    def _plain_line(self) -> None:
        elapsed = time.monotonic() - self._start
        left = self.total - self.completed
        eta = _clock(elapsed / self.completed * left) if self.completed else "unknown"
        self._console.print(f"{self.description}: {self.completed}/{self.total} scenes, "
                            f"{self.failures} failed, {_clock(elapsed)} elapsed, ETA {eta}",
                            markup=False, highlight=False, soft_wrap=True)  # fmt: skip
        self._last_line = time.monotonic()
        self._shown = (self.completed, self.failures)

    def show(self, completed: int, failures: int) -> None:
        """Set the counts (scenes finished so far, of them failed) and redraw."""
        self.completed, self.failures = completed, failures
        self._progress.update(self._task, completed=completed, failures=failures)
        fresh = self._shown != (completed, failures)
        due = time.monotonic() - self._last_line >= self._interval or completed >= self.total
        if self._plain and fresh and due:
            self._plain_line()

    def track(self, scenes: Iterable[Item]) -> Iterator[Item]:
        """Yield each scene; the bar advances when the loop body is done with it."""
        for scene in scenes:
            self._current_failed = False
            yield scene
            self.show(self.completed + 1, self.failures + int(self._current_failed))

    def failed(self) -> None:
        """The scene of the current loop step ended as a failure (counted on the bar)."""
        self._current_failed = True
