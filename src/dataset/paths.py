"""File names read from dataset files, kept inside the folder that holds them.

An ``index.json``, ``transforms.json`` or COLMAP model comes from whoever made the dataset; a
name such as ``../../etc/passwd`` must not make the loader read files outside the dataset.
Every name a dataset file gives goes through :func:`path_inside`. Data roots (which a shared
viewer's clients can open by key) also refuse symbolic links that point elsewhere; a capture,
which only the user names on the command line, may keep its images behind a link (a linked
``images/`` folder is common), so there only ``..`` is resolved, lexically.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import PathOutsideRootError


def path_inside(root: Path, name: str, named_in: str, follow_links: bool = True) -> Path:
    """``root / name``, refused unless it lies inside ``root``.

    Args:
        root: the folder the name is relative to (the data root or capture folder).
        name: the name as the dataset file gives it.
        named_in: which file named it, for the message (e.g. ``"datasets/re10k/index.json"``).
        follow_links: compare locations after resolving symbolic links (data roots); False
            compares the path as named with ``..`` removed lexically (captures).

    Returns:
        The path as ``root / name`` (not resolved, so messages show the user's own spelling;
        with ``..`` removed when ``follow_links`` is False, so the file opened is the one
        checked).
    """
    path = Path(root) / name
    if follow_links:
        inside = path.resolve().is_relative_to(Path(root).resolve())
    else:
        path = Path(os.path.normpath(path))
        # Absolute, so that a root of '.' does not contain '../x'; still lexical (no links).
        inside = Path(os.path.abspath(path)).is_relative_to(os.path.abspath(root))
    if not inside:
        raise PathOutsideRootError(name, named_in, Path(root), follow_links)
    return path


def natural_key(name: str) -> tuple:
    """Sort key comparing digit runs as numbers: ``r_2`` before ``r_10``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))
