"""An export folder written as one transaction: readers see the old set of files or the new one.

The files are written into a fresh hidden folder beside the destination,
``.<name>.dsviewer-<pid>-<token>``; only when every file is complete is it swapped in place of
the destination. On Linux the swap is one ``renameat2(RENAME_EXCHANGE)`` call (atomic: the
destination is never missing); elsewhere it is two renames (old aside, new in), and a
destination found missing with an old copy aside is put back by the next run. The old files,
now in the hidden folder, are removed after the swap. Any exception, Ctrl-C included, removes
the hidden folder and leaves the destination as it was. Hidden folders of killed runs (their
process gone) are removed by the next export beside them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MARKER = ".dsviewer-"  # hidden working folders: .<destination name>.dsviewer-<pid>-<token>[.old]
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class ExportFolderError(OSError):
    """The destination cannot take an export (not a folder, not writable)."""


def _working_folders(destination: Path) -> list[Path]:
    prefix = f".{destination.name}{MARKER}"
    parent = destination.parent
    if not parent.is_dir():
        return []
    return [p for p in parent.iterdir() if p.name.startswith(prefix) and p.is_dir()]


def _owner_alive(folder: Path) -> bool:
    try:
        pid = int(folder.name.rsplit(MARKER, 1)[1].split("-")[0])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(destination: Path) -> None:
    """Finish what a killed export left behind: restore a set put aside, drop working folders."""
    for folder in _working_folders(destination):
        if _owner_alive(folder):
            continue
        if folder.name.endswith(".old") and not destination.exists():
            folder.rename(destination)  # the two-rename swap was cut between its renames
        else:
            shutil.rmtree(folder, ignore_errors=True)


def check_writable(destination: Path) -> None:
    """Fail now, not after minutes of model work, if ``destination`` cannot be written."""
    destination = Path(destination)
    if destination.exists() and not destination.is_dir():
        raise ExportFolderError(
            f"--out {destination} exists and is not a folder. Give a folder path (it is "
            "created if missing)."
        )
    parent = destination.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = parent / f".{destination.name}{MARKER}{os.getpid()}-probe"
        probe.mkdir()
        probe.rmdir()
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
    """Put ``working`` at ``destination``; the old files end up in ``working`` (or are gone)."""
    if not destination.exists():
        working.rename(destination)
        return
    if _exchange(working, destination):
        shutil.rmtree(working, ignore_errors=True)
        return
    aside = working.with_name(working.name + ".old")
    destination.rename(aside)
    working.rename(destination)
    shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def export_transaction(destination: Path) -> Iterator[Path]:
    """Yield an empty working folder; on success it replaces ``destination`` as a whole."""
    destination = Path(destination)
    recover(destination)
    check_writable(destination)
    working = (
        destination.parent / f".{destination.name}{MARKER}{os.getpid()}-{secrets.token_hex(4)}"
    )
    working.mkdir()
    try:
        yield working
        _swap_in(working, destination)
    except BaseException:
        shutil.rmtree(working, ignore_errors=True)
        raise
