"""Warnings the loader logs per scene, shown once per run instead of once per scene.

The dataset loader warns about each scene it preprocesses (e.g. images smaller than the
checkpoint's input are upsampled): over a test set that is the same line thousands of times.
While :class:`WarningsOnce` is active, each warning *template* (the logger's message before its
arguments are filled in) is printed the first time only; at the end one line per template says
how many repeats were held back. Under torchrun only rank 0 prints (other ranks' lines would
break its live bar): the others keep their counts silently (:meth:`WarningsOnce.tally`), and
rank 0 adds them (:meth:`WarningsOnce.merge`) before its closing lines.
"""

from __future__ import annotations

import logging
from collections import Counter

Template = tuple[str, str]  # (logger name, message before its arguments)


class WarningsOnce(logging.Handler):
    """A root-logger handler for the duration of a ``with`` block::

        with WarningsOnce(say) as warnings:  # say(text) prints one plain line; None: silent
            ...
    """

    def __init__(self, say) -> None:
        super().__init__(level=logging.WARNING)
        self._say = say
        self.counts: Counter[Template] = Counter()  # every occurrence, the first included
        self.first: dict[Template, str] = {}  # the first message of each template
        self._shown: set[Template] = set()

    def emit(self, record: logging.LogRecord) -> None:
        template = (record.name, str(record.msg))
        self.counts[template] += 1
        if template in self.first:
            return
        try:
            self.first[template] = record.getMessage()
        except (TypeError, ValueError):  # a malformed call: show the template as it is
            self.first[template] = str(record.msg)
        if self._say is not None:
            self._say(self.first[template])
            self._shown.add(template)

    def tally(self) -> list[tuple[str, str, str, int]]:
        """This process's warnings: (logger, template, first message, count), picklable."""
        return [(*template, self.first[template], n) for template, n in self.counts.items()]

    def merge(self, tally: list[tuple[str, str, str, int]]) -> None:
        """Add another process's :meth:`tally`."""
        for name, template, first, count in tally:
            self.first.setdefault((name, template), first)
            self.counts[(name, template)] += count

    def __enter__(self):  # -> Self
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *exc_info) -> None:
        logging.getLogger().removeHandler(self)
        if self._say is None:
            return
        for template, count in self.counts.items():
            if template not in self._shown:  # seen on other ranks only
                self._say(self.first[template])
            if count > 1:
                self._say(f"{count - 1} more warning(s) like: {self.first[template]}")
