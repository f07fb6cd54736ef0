"""JSON and YAML read from files a user gives, with every way they can fail as one error.

The standard parsers fail in more ways than their documented error: text that is not UTF-8
raises ``UnicodeDecodeError``, and arrays or mappings nested deeper than Python's recursion limit
(a few hundred levels; a hostile file can nest 200,000) raise ``RecursionError``. Both are turned
into :class:`MalformedTextError`, whose message is a short reason; the caller, which knows what
the file is for, wraps it in its own user error.
"""

from __future__ import annotations

from typing import Any


class MalformedTextError(ValueError):
    """The text cannot be parsed; ``str(error)`` is the reason, e.g. ``line 3, column 7: ...``."""


_TOO_DEEP = ("arrays or mappings nested deeper than {} levels, more than this reader follows; "
             "real files nest a few levels")
_NOT_TEXT = "it cannot be decoded as text ({} at byte {}): a binary file, or not UTF-8"


def parse_json(data: str | bytes) -> Any:
    """``json.loads(data)``, or :class:`MalformedTextError` (bad syntax, encoding, nesting)."""
    import json
    import sys

    try:
        return json.loads(data)
    except json.JSONDecodeError as error:
        raise MalformedTextError(str(error)) from None
    except UnicodeDecodeError as error:
        raise MalformedTextError(_NOT_TEXT.format(error.reason, error.start)) from None
    except RecursionError:
        raise MalformedTextError(_TOO_DEEP.format(sys.getrecursionlimit())) from None


def yaml_problem(error: Exception) -> str:
    """A YAML parse error on one line: what and where (PyYAML's own text spans several)."""
    if hasattr(error, "reason") and hasattr(error, "position"):  # yaml.reader.ReaderError
        return _NOT_TEXT.format(error.reason, error.position)
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(error, 'problem', None) or type(error).__name__}{where}"


def parse_yaml(text: str | bytes) -> Any:
    """``yaml.safe_load(text)`` (the pure-Python loader: libyaml's crashes the process on deep
    nesting), or :class:`MalformedTextError`."""
    import sys

    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise MalformedTextError(yaml_problem(error)) from None
    except RecursionError:
        raise MalformedTextError(_TOO_DEEP.format(sys.getrecursionlimit())) from None
