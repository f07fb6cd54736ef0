"""One progress bar for many scenes: done / total, elapsed, ETA and the failures so far.

One rich task for the whole run, advanced once per scene, so the cost per scene is constant
(a display with one row per scene redraws all of them on every refresh: quadratic).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TypeVar

Item = TypeVar("Item")


class SceneProgress:
    """One bar for ``total`` scenes::

        with SceneProgress(len(scenes), "Exporting") as progress:
            for scene in progress.track(scenes):
                ...  # on failure: progress.failed()

    Args:
        total: scenes this process will run.
        description: the bar's label (plain text; it is escaped for rich markup).
        console: a ``rich.console.Console`` (default: stderr).
        enabled: False draws nothing (other ranks than 0, or tests).
    """

    def __init__(self, total: int, description: str, console=None, enabled: bool = True):
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

        self.failures = 0
        self.completed = 0
        self._current_failed = False
        self._progress = Progress(
            TextColumn(escape(description)),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failures]} failed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            disable=not enabled,
        )
        self._task = self._progress.add_task(description, total=total, failures=0)

    def __enter__(self):  # -> Self
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def track(self, scenes: Iterable[Item]) -> Iterator[Item]:
        """Yield each scene; the bar advances when the loop body is done with it."""
        for scene in scenes:
            self._current_failed = False
            yield scene
            self.completed += 1
            self.failures += int(self._current_failed)
            self._progress.update(self._task, advance=1, failures=self.failures)

    def failed(self) -> None:
        """The scene of the current loop step ended as a failure (counted on the bar)."""
        self._current_failed = True
