"""Command-line options shared by ``dsviewer`` and ``dsviewer export``.

Plain dataclasses; their field docstrings become the ``--help`` text (tyro reads them). Nothing
heavy is imported here so that ``--help`` stays instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro  # light (~0.1 s); the field docstrings below are its --help text


@dataclass
class SceneOptions:
    """Which model runs on which scene and views."""

    ckpt: Annotated[list[Path], tyro.conf.UseAppendAction] = field(default_factory=list)
    """Checkpoint file (.pth / .safetensors) of a released DepthSplat model; give the flag
    again for more models: each becomes a run of the same scene, to compare."""

    scene: str | None = None
    """Dataset scene key (e.g. RealEstate10K), capture folder (COLMAP/transforms.json) or
    synthetic:N."""

    data_root: Annotated[list[Path], tyro.conf.UseAppendAction] = field(default_factory=list)
    """Dataset root holding chunks and index.json; give the flag once per root."""

    index: Path | None = None
    """Evaluation index JSON that fixes context/target views per scene key."""

    context: list[int] | None = None
    """Context view indices (frames of the scene); default: the evaluation index or the preset."""

    target: list[int] | None = None
    """Target view indices shown as extra cameras; default: the evaluation index, if any."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the model runs; auto picks CUDA when available."""

    depthsplat_repo: Path | None = None
    """Run your own DepthSplat checkout's code (a fork, say) instead of the built-in model; see
    docs/backends.md (``dsviewer patch-depthsplat PATH`` adds what it must expose)."""

    config: Path | None = None
    """Model preset YAML (configs/checkpoints/*.yaml); default: recognised from the checkpoint."""

    sfm_max_error: float = 2.0  # dataset.sfm.DEFAULT_MAX_ERROR (not imported: --help stays fast)
    """Captures: SfM points whose mean reprojection error exceeds this many pixels are left out
    of the SfM reference depth."""


@dataclass
class ViewerOptions(SceneOptions):
    """Options of the live viewer (``dsviewer``)."""

    host: str = "127.0.0.1"
    """Interface to bind. The default is local only; pass 0.0.0.0 to share on your network."""

    port: int | None = None
    """Port to serve on; default 8080 or the next free one. A port given here must be free."""

    demo: bool = False
    """Open the bundled demo model and scenes (also what happens with neither --ckpt nor
    --scene)."""

    point_budget: int = 600_000
    """Points sent per layer at most (server-side subsampling keeps the browser fluid)."""

    gaussian_budget: int = 300_000
    """Gaussians sent at most."""

    scenes: Annotated[list[str], tyro.conf.UseAppendAction] = field(default_factory=list)
    """Another scene spec offered in the GUI's scene switcher."""
