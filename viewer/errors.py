"""One error boundary for every entry point (``dsviewer``, ``export``, ``eval``,
``patch-depthsplat``, the GUI).

A *user error* -- bad input, bad setup, a missing or unreadable file, a full disk -- is one
paragraph that says what was wrong and how to fix it, and exit status 2; never a traceback.
Which errors those are is decided by type in :mod:`dsviewer.errors` (a ``UserError`` raised where
the input was judged, or an OSError). Anything else is a bug: one line that names the log file
where the whole traceback went, and exit status 1. Ctrl-C and SIGTERM give one line and exit
status 130.
"""

from __future__ import annotations

import datetime
import os
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from dsviewer.errors import is_user_error

EXIT_USER_ERROR = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM (treated like Ctrl-C)."""


_signalled = threading.Event()  # set by run_entry_point's handlers, cleared at each start


def interrupted() -> bool:
    """Whether Ctrl-C or SIGTERM has arrived in this run. Code that turns any exception into a
    result (a failed scene, a rank's error) re-raises instead when this holds: the signal may
    come out as another exception (Python wraps it when it lands in a class body)."""
    return _signalled.is_set()


def log_folder() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    folder = Path(base) / "dsviewer" / "logs"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    except OSError:
        return Path(tempfile.gettempdir())


def write_log(error: BaseException) -> Path:
    """Write ``error``'s traceback to a new log file; returns its path."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = log_folder() / f"dsviewer-{stamp}-{os.getpid()}.log"
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    with open(path, "a", encoding="utf-8") as file:
        file.write(f"dsviewer {' '.join(sys.argv[1:])}\n{text}\n")
    return path


def describe_error(error: BaseException) -> str:
    """Markdown for the GUI: the user error's paragraph, or one line that points to the log."""
    from dsviewer.viewer.escape import escape_markdown

    if is_user_error(error):
        return escape_markdown(str(error))
    path = write_log(error)
    return escape_markdown(f"internal error ({type(error).__name__}); the traceback is in {path}")


def exit_process(status: int) -> NoReturn:
    """End the process with ``status``. After an interruption it ends at once, without exit
    handlers: a signal that landed inside a C extension's import can leave that library half
    initialised, and its handlers then print pages of noise and change the status (open3d)."""
    if status == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def run_entry_point(program: str, main: Callable[[], int]) -> int:
    """Run ``main`` behind the boundary; returns the exit status.

    Once Ctrl-C or SIGTERM has arrived, whatever exception ends ``main`` counts as the
    interruption: a signal that lands inside a C extension's import, say, comes out as that
    library's own error (open3d's ``ImportError: initialization failed``), not as a bug.
    """
    _signalled.clear()

    def interrupt(signum, frame) -> None:
        _signalled.set()
        raise KeyboardInterrupt()

    def terminate(signum, frame) -> None:
        _signalled.set()
        raise Terminated()

    handlers = {signal.SIGTERM: terminate}
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a background job ignores Ctrl-C
        handlers[signal.SIGINT] = interrupt
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, h) for s, h in handlers.items()} if in_main_thread else {}
    try:
        return int(main() or 0)
    except SystemExit:
        raise
    except BaseException as error:  # noqa: BLE001 -- the boundary: nothing escapes as a traceback
        if interrupted() or isinstance(error, (KeyboardInterrupt, Terminated)):
            print(f"{program}: interrupted; nothing half-written was left behind.",
                  file=sys.stderr)  # fmt: skip
            return EXIT_INTERRUPTED
        if is_user_error(error):
            print(f"{program}: error: {error}", file=sys.stderr)
            return EXIT_USER_ERROR
        path = write_log(error)
        print(f"{program}: internal error ({type(error).__name__}: {error}). The full traceback "
              f"is in {path}; please include it in a bug report.", file=sys.stderr)  # fmt: skip
        return EXIT_BUG
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
