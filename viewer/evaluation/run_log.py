"""One log file per rank and run for the tracebacks of bugs, however many scenes hit them.

A systematic bug fails every scene: one file per failure would fill the log folder. The file
is created at the first traceback only; a traceback already written (the same text) is not
written again, only the scene that hit it is noted, so every failed row can name the file.
"""

from __future__ import annotations

import datetime
import os
import sys
import traceback
from pathlib import Path


class RunLog:
    def __init__(self, rank: int = 0) -> None:
        self.rank = rank
        self.path: Path | None = None
        self._numbers: dict[str, int] = {}  # traceback text -> its number in the file

    def write(self, error: BaseException, scene: str | None = None) -> Path:
        """Note ``error`` (of ``scene``, if any) in the run's log; returns the file's path."""
        from dsviewer.viewer.errors import log_folder

        if self.path is None:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            self.path = log_folder() / f"dsviewer-eval-{stamp}-rank{self.rank}-{os.getpid()}.log"
            with open(self.path, "a", encoding="utf-8") as file:
                file.write(f"dsviewer {' '.join(sys.argv[1:])}\n")
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        where = "" if scene is None else f"scene {scene!r}: "
        with open(self.path, "a", encoding="utf-8") as file:
            if text in self._numbers:
                file.write(f"{where}the same error as traceback {self._numbers[text]}\n")
            else:
                self._numbers[text] = len(self._numbers) + 1
                file.write(f"{where}traceback {self._numbers[text]}:\n{text}\n")
        return self.path
