"""The project's own DepthSplat (``src/model``) as a :class:`~src.backends.ModelBackend`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from src.dataset.preprocess import PreprocessSettings
    from src.dataset.types import ViewSet
    from src.model.config import DepthSplatConfig
    from src.model.types import Prediction


def preprocess_settings(model_config: DepthSplatConfig) -> PreprocessSettings:
    """The dataset loader's preprocessing settings from a model preset."""
    from src.dataset.preprocess import PreprocessSettings

    dataset = str(model_config.dataset)
    return PreprocessSettings(
        image_shape=tuple(model_config.image_shape),
        near=float(model_config.near),
        far=float(model_config.far),
        patch_multiple=int(model_config.shim_patch),
        num_context_views=int(model_config.num_context_views),
        dataset="dl3dv" if dataset.startswith("dl3dv") else "re10k",
        source_shape=model_config.original_image_shape,
    )


class BuiltinBackend:
    """Loads a checkpoint into :class:`src.model.DepthSplat` and runs :func:`src.model.predict`."""

    def __init__(self, checkpoint: Path, *, device: str, config: str | Path | None = None):
        from src.model import load_model

        start = time.perf_counter()
        self.model = load_model(checkpoint, device=device, config=config)
        self.load_seconds = time.perf_counter() - start
        self.checkpoint = Path(checkpoint)
        self.name = self.checkpoint.stem
        self.device = device
        self.preprocess = preprocess_settings(self.model.config)

    def predict(self, context: ViewSet) -> Prediction:
        from src.model.predict import predict

        return predict(self.model, context)
