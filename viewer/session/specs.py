"""What a run is, before anything is loaded: plain, light definitions (no torch).

A :class:`RunSpec` defines one run (a checkpoint, its context views, near/far); it outlives
scene switches. :class:`SessionSettings` says how models are opened and where scenes are read,
for every run of a session. Both are built from the command line by
:mod:`dsviewer.viewer.options`, from the GUI's New run folder, or in Python; the session layer,
``dsviewer export`` and ``dsviewer eval`` take these, never the command-line dataclasses.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

GT_NAME = "gt"
"""The name the scene's ground truth takes among runs (B = ``gt`` in a comparison)."""
SFM_NAME = "sfm"
"""The name a capture's SfM points take among runs (compared like one, at SfM pixels only)."""
RESERVED_NAMES = (GT_NAME, SFM_NAME)

MIN_VIEWS = 2  # the cost volume matches each view against the others


def model_path(checkpoint: str | Path) -> Path:
    """A checkpoint's absolute path (symbolic links kept: the file name names the run)."""
    return Path(os.path.abspath(checkpoint))


def unique_names(names: Sequence[str], reserved: Sequence[str] = RESERVED_NAMES) -> list[str]:
    """``names`` made unique in order (``m``, ``m-2``, ``m-3``, ...), never one of ``reserved``."""
    taken = set(reserved)
    unique = []
    for name in names:
        candidate, n = name, 2
        while candidate in taken:
            candidate, n = f"{name}-{n}", n + 1
        taken.add(candidate)
        unique.append(candidate)
    return unique


@dataclass(frozen=True)
class RunSpec:
    """One run's definition: which model, which context views, which near/far.

    ``near``/``far`` are in ``units``: ``"model"`` (the units the model sees, as the GUI's New
    run gives them) or ``"user"`` (the scene's own units, as ``--near``/``--far`` give them;
    converted with the scene's ``world_from_model`` scale once the scene is loaded). None: the
    model's own plane. ``views``: how many context views to choose when ``context`` is None
    (None: the checkpoint's preset).
    """

    checkpoint: Path
    context: tuple[int, ...] | None = None  # None: the session's, else the scene's defaults
    near: float | None = None
    far: float | None = None
    views: int | None = None
    units: Literal["model", "user"] = "model"

    def asked(self) -> dict:
        """What this spec asks for beyond the checkpoint (for the files that record a run)."""
        return {"context": None if self.context is None else list(self.context),
                "views": self.views, "near": self.near, "far": self.far,
                "units": self.units}  # fmt: skip


def run_names(specs: Sequence[RunSpec]) -> list[str]:
    """Each run's name: its checkpoint's file stem, made unique in order (``gt`` reserved)."""
    return unique_names([spec.checkpoint.stem for spec in specs])


@dataclass(frozen=True)
class SessionSettings:
    """How a session opens models and finds scenes (shared by all its runs).

    ``data_root``: dataset roots searched in order; ``index``: the evaluation index choosing
    views per key; ``context``: context frames for every run that sets none of its own (None:
    the index's, else chosen); ``target``: target frames for every scene (None: the index's,
    else chosen near the context); ``device``, ``config``, ``depthsplat_repo``: how each
    checkpoint is opened (see :func:`dsviewer.backends.open_backend`); ``sfm_max_error``: a
    capture's SfM points above this mean reprojection error (pixels) are left out of its SfM
    reference depth.
    """

    data_root: tuple[Path, ...] = ()
    index: Path | None = None
    context: tuple[int, ...] | None = None
    target: tuple[int, ...] | None = None
    device: str = "auto"
    config: Path | None = None
    depthsplat_repo: Path | None = None
    sfm_max_error: float = 2.0  # pixels; dataset.sfm.DEFAULT_MAX_ERROR (a test keeps them equal)
