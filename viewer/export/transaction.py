"""An export folder written as one transaction: readers see the old set of files or the new one.

The files are written into a fresh hidden folder beside the destination,
``.<name>.dsviewer-<pid>-<token>``; only when every file is complete is it swapped in place of
the destination. On Linux the swap is one ``renameat2(RENAME_EXCHANGE)`` call (atomic: the
destination is never missing); elsewhere it is two renames (old aside to ``<working>.old``, new
in). The old files are removed after the swap. Any exception, Ctrl-C included, removes the
working folder and puts a set that was moved aside back, so the destination is as it was (or,
after the last rename, whole and new).

A transaction holds an ``fcntl.flock`` on its lock file ``<working>.lock`` from before its
working folder exists until its last leftover is gone. The kernel drops the lock when the
process dies, so hidden entries whose lock can be taken (or that have no lock file) belong to
no live export: the next export beside them restores a set put aside, if the destination is
missing, and removes the rest. Process ids cannot tell this: in a container every run is PID 1.
Where ``fcntl`` does not exist, leftovers are kept rather than risk removing a live export.

Paths are made absolute first: ``--out .`` names the current folder, which cannot be swapped
by that name, and a folder that holds the current one is refused (the shell would be left in
the removed old folder).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dsviewer.errors import InputError

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

MARKER = ".dsviewer-"  # hidden entries: .<destination name>.dsviewer-<pid>-<token>[.old|.lock]
ASIDE_SUFFIX = ".old"
LOCK_SUFFIX = ".lock"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class ExportFolderError(InputError, OSError):
    """The destination cannot take an export (not a folder, not writable)."""


def absolute_folder(destination: str | Path) -> Path:
    """``destination`` as an absolute path without ``.``, ``..`` or symbolic links."""
    return Path(destination).expanduser().resolve()


def _transactions(destination: Path) -> list[Path]:
    """Working-folder paths of every transaction that left something beside ``destination``."""
    prefix = f".{destination.name}{MARKER}"
    parent = destination.parent
    if not parent.is_dir():
        return []
    bases = set()
    for entry in parent.iterdir():
        if entry.name.startswith(prefix):
            name = entry.name.removesuffix(LOCK_SUFFIX).removesuffix(ASIDE_SUFFIX)
            bases.add(parent / name)
    return sorted(bases)


def _aside(working: Path) -> Path:
    return working.with_name(working.name + ASIDE_SUFFIX)


def _lock_file(working: Path) -> Path:
    return working.with_name(working.name + LOCK_SUFFIX)


@contextmanager
def _claim_if_abandoned(working: Path) -> Iterator[bool]:
    """True, holding its lock, when no live process holds the transaction ``working``."""
    if fcntl is None:
        yield False
        return
    try:
        descriptor = os.open(_lock_file(working), os.O_RDWR)
    except FileNotFoundError:
        yield True  # an owner creates its lock file first and removes it last: none is alive
        return
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held (EWOULDBLOCK), or a file system without locks: keep it
            yield False
            return
        yield True
    finally:
        os.close(descriptor)


def _settle(destination: Path, working: Path) -> None:
    """Leave ``destination`` whole (a set put aside goes back if it is missing) and nothing of
    the transaction ``working`` beside it. The caller holds the transaction's lock."""
    aside = _aside(working)
    if aside.is_dir() and not destination.exists():
        aside.rename(destination)  # the two-rename swap was cut between its renames
    for folder in (working, aside):
        shutil.rmtree(folder, ignore_errors=True)
    _lock_file(working).unlink(missing_ok=True)


def recover(destination: str | Path) -> None:
    """Finish what killed exports left beside ``destination``: restore a set put aside, drop
    working folders. Transactions of live processes (this one included) are left alone."""
    destination = absolute_folder(destination)
    for working in _transactions(destination):
        with _claim_if_abandoned(working) as abandoned:
            if abandoned:
                _settle(destination, working)


def check_writable(destination: str | Path) -> None:
    """Fail now, not after minutes of model work, if ``destination`` cannot take an export."""
    given, destination = destination, absolute_folder(destination)
    if destination.exists() and not destination.is_dir():
        raise ExportFolderError(
            f"--out {given} exists and is not a folder. Give a folder path (it is created if "
            "missing)."
        )
    try:
        current = Path.cwd().resolve()
    except OSError:  # the current folder was removed: no shell can be left in the old one
        current = None
    if current is not None and (destination == current or destination in current.parents):
        where = "is the current folder" if destination == current else "holds the current folder"
        raise ExportFolderError(
            f"--out {given} ({destination}) {where}. An export replaces its folder as a whole, "
            "which would leave this shell in the removed old folder. Give a new folder instead, "
            f"e.g. --out {destination / 'export'}, or run the command from elsewhere."
        )
    parent = destination.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=parent):  # unnamed where possible: a kill leaves nothing
            pass
    except OSError as error:
        raise ExportFolderError(
            f"Cannot write an export to {destination}: {error.strerror or error} "
            f"({parent} must be a writable folder). Choose another --out."
        ) from None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the system cannot."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _swap_in(working: Path, destination: Path) -> None:
    """Put ``working`` at ``destination``; the old files end up in ``working`` or aside."""
    if not destination.exists():
        working.rename(destination)
    elif not _exchange(working, destination):
        destination.rename(_aside(working))
        working.rename(destination)


def _begin(destination: Path) -> tuple[Path, int]:
    """A fresh transaction's working-folder path and its lock file's descriptor, locked."""
    while True:
        name = f".{destination.name}{MARKER}{os.getpid()}-{secrets.token_hex(4)}"
        working = destination.parent / name
        lock_file = _lock_file(working)
        descriptor = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        if fcntl is None:
            return working, descriptor
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError:  # a file system without locks: no one else can claim it either
            return working, descriptor
        # A recovering export may have taken the new file for a dead one's and removed it
        # before the lock was ours: then start over with another name.
        try:
            if os.path.samestat(os.fstat(descriptor), os.stat(lock_file)):
                return working, descriptor
        except FileNotFoundError:
            pass
        os.close(descriptor)


@contextmanager
def export_transaction(
    destination: str | Path, may_replace: Callable[[Path], None] | None = None
) -> Iterator[Path]:
    """Yield an empty working folder; on success it replaces ``destination`` as a whole.

    ``may_replace(destination)`` runs again just before the swap and raises to keep what is
    there: files may have appeared in ``destination`` during the minutes of work (another
    export, the user's own), and the swap would take them away.
    """
    destination = absolute_folder(destination)
    recover(destination)
    check_writable(destination)
    working, lock = _begin(destination)
    try:
        working.mkdir()
        yield working
        if may_replace is not None:
            may_replace(destination)
        _swap_in(working, destination)
    finally:
        try:
            _settle(destination, working)
        finally:
            os.close(lock)
