"""Model backends: what turns a checkpoint into predictions on preprocessed views.

The bridge between the model (``src/model``: architecture only) and the data
(``src/dataset``: preprocessing only). Everything downstream (layers, analysis, exports, the
viewer) talks to a :class:`ModelBackend` and never to a model class, so the built-in model and
other implementations of the same contract are interchangeable, and their runs compare.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dsviewer.errors import SetupError

if TYPE_CHECKING:
    from dsviewer.dataset.preprocess import PreprocessSettings
    from dsviewer.dataset.types import ViewSet
    from dsviewer.model.types import Prediction


class ModelBackend(Protocol):
    """A loaded model that predicts depth (and Gaussians) for context views."""

    name: str
    """Short, file-name-safe run name (the checkpoint's stem)."""
    checkpoint: Path
    device: str
    preprocess: PreprocessSettings
    """What the model expects of its input views (image shape, near/far, view count)."""
    load_seconds: float
    warnings: list[str]
    """One sentence each: what the user should know about the loaded model though it runs
    (weights holding NaN or inf, settings guessed for want of a preset). Empty when all is well."""

    def predict(self, context: ViewSet) -> Prediction:
        """One forward pass on ``context`` (batch of one), under inference mode."""
        ...


class DeviceUnavailableError(SetupError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"--device {name} was asked for, but this PyTorch build sees no CUDA device. Use "
            "--device cpu (or auto), or install a CUDA build of PyTorch on a machine with a GPU."
        )


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` must be available."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailableError(name)
    return name


def open_backend(
    checkpoint: str | Path,
    *,
    device: str = "auto",
    config: str | Path | None = None,
    depthsplat_repo: Path | None = None,
) -> ModelBackend:
    """The model for ``checkpoint`` on ``device`` (``auto``, ``cpu``, ``cuda``): the built-in
    DepthSplat, or with ``depthsplat_repo`` that checkout's own code (see ``extension.py``).

    ``config``: a preset name or YAML file (``configs/checkpoints/*.yaml``); by default the
    settings embedded in the file, else the preset named after it.

    Raises:
        dsviewer.model.CheckpointError, dsviewer.backends.presets.PresetError (both ``ValueError``).
    """
    if depthsplat_repo is not None:
        from dsviewer.backends.extension import ExtensionBackend

        return ExtensionBackend(
            Path(checkpoint), repo=Path(depthsplat_repo), device=resolve_device(device),
            config=config,
        )  # fmt: skip
    from dsviewer.backends.builtin import BuiltinBackend

    return BuiltinBackend(Path(checkpoint), device=resolve_device(device), config=config)
