"""Write files atomically: readers see the old file or the complete new one, never a part."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for binary writing; ``os.replace`` it on success.

    On any exception (``KeyboardInterrupt`` included) the temporary file is removed and an
    existing ``path`` is left untouched. The file gets the usual ``0o666 & ~umask`` mode.
    The data is flushed but not fsync-ed: atomic against crashes of this process, not against
    power loss.
    """
    target = Path(path)
    temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
