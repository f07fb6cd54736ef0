"""What the user can fix, told apart from our bugs by the exception's type.

Raise a :class:`UserError` subclass where an input is judged: a file or scene is read, an option
or a value typed in the GUI is checked, the machine is asked for a device or a port. Its message
is one paragraph that says what was wrong and how to fix it. Every entry point runs behind
:func:`dsviewer.viewer.errors.run_entry_point`, which shows that paragraph with exit status 2
and writes no log. An ``OSError`` is the file system's own answer (not found, permission denied,
no space left) and is shown the same way. Anything else -- a ValueError from numpy, a
RecursionError, an ``assert`` -- is a bug: a log file gets its traceback, exit status 1.

A broken promise between our own functions (a tensor of the wrong shape passed by our code, an
unknown registry key) is not a user error: raise a plain exception there.

This module imports nothing of the project, so ``src`` and ``viewer`` both use it.
"""

from __future__ import annotations


class UserError(Exception):
    """Base class: the user can fix this; ``str(error)`` is the paragraph that is shown."""


class InputError(UserError, ValueError):
    """Bad input: a file, a scene, a checkpoint, a command-line option, a value typed in the GUI.

    Also a ValueError, so that library callers who catch ValueError keep working."""


class SetupError(UserError, RuntimeError):
    """Bad setup: this machine or installation lacks something the command needs (a CUDA device,
    a DepthSplat checkout that can run, a free port, the bundled demo files)."""


def is_user_error(error: BaseException) -> bool:
    """True for errors the user can fix: ours (:class:`UserError`) and the file system's."""
    return isinstance(error, (UserError, OSError))
