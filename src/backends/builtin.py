"""The project's own DepthSplat (``src/model``) as a :class:`~dsviewer.backends.ModelBackend`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dsviewer.dataset.types import ViewSet
    from dsviewer.model.types import Prediction


class BuiltinBackend:
    """Loads a checkpoint into :class:`dsviewer.model.DepthSplat` and runs
    :func:`dsviewer.model.predict`.

    Architecture and preprocessing come from :func:`dsviewer.backends.presets.load_checkpoint`
    (``config``: an explicit preset name or YAML file).
    """

    def __init__(self, checkpoint: Path, *, device: str, config: str | Path | None = None):
        from dsviewer.backends.presets import load_checkpoint

        start = time.perf_counter()
        loaded = load_checkpoint(checkpoint, device=device, preset=config)
        self.load_seconds = time.perf_counter() - start
        self.model = loaded.model
        self.settings = loaded.settings
        self.preprocess = loaded.settings.preprocess
        self.warnings = loaded.warnings
        self.checkpoint = Path(checkpoint)
        self.name = self.checkpoint.stem
        self.device = device

    def predict(self, context: ViewSet) -> Prediction:
        from dsviewer.model.predict import predict

        return predict(self.model, context)
