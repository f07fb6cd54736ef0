"""DepthSplat model: build from a checkpoint, run on a view set.

``load_model(path)`` returns a :class:`DepthSplat` (``.encoder``, ``.config``) in eval mode;
``predict(model, views)`` returns a :class:`Prediction`. Architecture only: what a checkpoint
expects of its input views comes from ``dsviewer.backends.presets``.
"""

from .checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    DepthSplat,
    load_model,
    save_checkpoint,
)
from .config import ConfigError, DepthSplatConfig
from .predict import predict

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "ConfigError",
    "DepthSplat",
    "DepthSplatConfig",
    "load_model",
    "predict",
    "save_checkpoint",
]
