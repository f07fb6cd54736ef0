"""File names read from dataset files, kept inside the folder that holds them.

An ``index.json``, ``transforms.json`` or COLMAP model comes from whoever made the dataset; a
name such as ``../../etc/passwd`` or a symbolic link pointing elsewhere must not make the loader
read files outside the dataset. Every name a dataset file gives goes through
:func:`path_inside`, which resolves ``..`` and symbolic links before comparing.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import PathOutsideRootError


def path_inside(root: Path, name: str, named_in: str) -> Path:
    """``root / name``, refused unless its resolved location lies inside ``root``'s.

    Args:
        root: the folder the name is relative to (the data root or capture folder).
        name: the name as the dataset file gives it.
        named_in: which file named it, for the message (e.g. ``"datasets/re10k/index.json"``).

    Returns:
        The path as ``root / name`` (not resolved, so messages show the user's own spelling).
    """
    path = Path(root) / name
    if not path.resolve().is_relative_to(Path(root).resolve()):
        raise PathOutsideRootError(name, named_in, Path(root))
    return path


def natural_key(name: str) -> tuple:
    """Sort key comparing digit runs as numbers: ``r_2`` before ``r_10``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))
