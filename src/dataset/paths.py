"""File names read from dataset files, kept inside the folder that holds them.

An ``index.json``, ``transforms.json`` or COLMAP model comes from whoever made the dataset; a
name such as ``../../etc/passwd`` must not make the loader read files outside the dataset.
Every name a dataset file gives goes through :func:`path_inside` (or :class:`CaptureFiles`).
Data roots (which a shared viewer's clients can open by key) also refuse symbolic links that
point elsewhere; a capture, which only the user names on the command line, may keep its images
behind a link (a linked ``images/`` folder is common), so there only ``..`` is resolved,
lexically.

Names written on Windows use backslashes (``./uploads\\images/frame0001.png``); a capture's names
are looked up as written, then with backslashes read as separators. A capture's folders are
listed once each (:class:`CaptureFiles`): a stat per listed name and suffix would make reading a
capture of 100,000 video frames take minutes.
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


def portable_name(name: str) -> str:
    """A name written on Windows with ``/`` separators (``a\\b.png`` -> ``a/b.png``)."""
    return name.replace("\\", "/")


class CaptureFiles:
    """The files under a capture folder, looked up by the names its camera file gives.

    Names are checked lexically to stay inside ``root`` (as :func:`path_inside` with
    ``follow_links=False``, in plain string operations); each folder is listed once.
    """

    def __init__(self, root: Path, named_in: str) -> None:
        self.root, self.named_in = Path(root), named_in
        self._absolute = os.path.abspath(root)
        self._prefix = self._absolute.rstrip(os.sep) + os.sep
        self._listings: dict[str, frozenset[str]] = {}

    def _inside(self, spelling: str, listed: str) -> str:
        absolute = os.path.normpath(os.path.join(self._absolute, spelling))
        if absolute != self._absolute and not absolute.startswith(self._prefix):
            raise PathOutsideRootError(listed, self.named_in, self.root, follow_links=False)
        return absolute

    def _listing(self, folder: str) -> frozenset[str]:
        names = self._listings.get(folder)
        if names is None:
            try:
                with os.scandir(folder) as entries:
                    names = frozenset(e.name for e in entries if e.is_file())
            except OSError:  # no such folder (or not one): nothing in it
                names = frozenset()
            self._listings[folder] = names
        return names

    def has_folder(self, name: str) -> bool:
        return os.path.isdir(self._inside(name, name))

    def find(self, name: str, suffixes: tuple[str, ...] = ()) -> Path | None:
        """The file ``name`` names (tried as written, then with ``\\`` as separators), or
        ``name`` plus one of ``suffixes``; None when none exists. Raises
        :class:`PathOutsideRootError` for a name that leaves ``root``."""
        spellings = [name] + ([portable_name(name)] if "\\" in name else [])
        for spelling in spellings:
            absolute = self._inside(spelling, name)
            if absolute == self._absolute:
                continue  # the folder itself is no image
            folder, base = os.path.split(absolute)
            listing = self._listing(folder)
            for suffix in ("", *suffixes):
                if base + suffix in listing:
                    return Path(os.path.normpath(os.path.join(self.root, spelling + suffix)))
        return None
