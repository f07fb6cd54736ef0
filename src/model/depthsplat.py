"""The model as the released checkpoints store it: everything lives under ``encoder``."""

from __future__ import annotations

from torch import Tensor, nn

from .config import DepthSplatConfig
from .encoder.encoder_depthsplat import EncoderDepthSplat, EncoderOutput


class DepthSplat(nn.Module):
    """``DepthSplat(config).encoder`` is :class:`EncoderDepthSplat`; keys are ``encoder.*``."""

    def __init__(self, config: DepthSplatConfig):
        super().__init__()
        self.config = config
        self.encoder = EncoderDepthSplat(config)

    def forward(
        self, context: dict[str, Tensor], visualization_dump: dict[str, Tensor] | None = None
    ) -> EncoderOutput:
        return self.encoder(context, global_step=0, visualization_dump=visualization_dump)
