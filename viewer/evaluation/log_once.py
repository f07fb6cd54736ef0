"""Warnings the loader logs per scene, shown once per run instead of once per scene.

The dataset loader warns about each scene it preprocesses (e.g. images smaller than the
checkpoint's input are upsampled): over a test set that is the same line thousands of times.
While :class:`WarningsOnce` is active, each warning *template* (the logger's message before its
arguments are filled in) is printed the first time only; at the end one line per template says
how many repeats were held back.
"""

from __future__ import annotations

import logging
from collections import Counter


class WarningsOnce(logging.Handler):
    """A root-logger handler for the duration of a ``with`` block::

        with WarningsOnce(say):  # say(text) prints one plain line
            ...
    """

    def __init__(self, say) -> None:
        super().__init__(level=logging.WARNING)
        self._say = say
        self.repeats: Counter[tuple[str, str]] = Counter()  # (logger, template) -> held back
        self.first: dict[tuple[str, str], str] = {}  # (logger, template) -> first message

    def emit(self, record: logging.LogRecord) -> None:
        template = (record.name, str(record.msg))
        if template in self.first:
            self.repeats[template] += 1
            return
        try:
            self.first[template] = record.getMessage()
        except (TypeError, ValueError):  # a malformed call: show the template as it is
            self.first[template] = str(record.msg)
        self._say(self.first[template])

    def __enter__(self):  # -> Self
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *exc_info) -> None:
        logging.getLogger().removeHandler(self)
        for template, count in self.repeats.items():
            self._say(f"{count} more warning(s) like: {self.first[template]}")
