"""The CNN feature encoder of UniMatch/DepthSplat: a 7x7 stem and three residual stages.

Parameter names match the checkpoints (``backbone.layer2.0.downsample.0.weight`` ...).
The lowest feature resolution (1/4 or 1/8) only changes the stride of ``layer2``.
"""

from __future__ import annotations

from torch import Tensor, nn


class ResidualBlock(nn.Module):
    """Two 3x3 conv + InstanceNorm + ReLU, with a strided 1x1 projection when the shape changes."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm1 = nn.InstanceNorm2d(channels)
        self.norm2 = nn.InstanceNorm2d(channels)
        self.relu = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride), nn.InstanceNorm2d(channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


class CNNEncoder(nn.Module):
    """Per-view CNN features at three resolutions.

    Args:
        output_dim: channels of the lowest-resolution output (after the 1x1 ``conv2``).
        lowest_scale: 4 or 8, the downsampling of the lowest-resolution output.
        stage_channels: channels of ``layer1``, ``layer2``, ``layer3``.
    """

    def __init__(
        self,
        output_dim: int = 128,
        lowest_scale: int = 8,
        stage_channels: tuple[int, int, int] = (64, 96, 128),
    ) -> None:
        super().__init__()
        if lowest_scale not in (4, 8):
            raise ValueError(f"lowest_feature_resolution must be 4 or 8, got {lowest_scale}.")
        c1, c2, c3 = stage_channels
        self.conv1 = nn.Conv2d(3, c1, kernel_size=7, stride=2, padding=3, bias=False)
        self.norm1 = nn.InstanceNorm2d(c1)
        self.relu1 = nn.ReLU()
        self.layer1 = nn.Sequential(ResidualBlock(c1, c1), ResidualBlock(c1, c1))
        stride2 = 1 if lowest_scale == 4 else 2
        self.layer2 = nn.Sequential(ResidualBlock(c1, c2, stride2), ResidualBlock(c2, c2))
        self.layer3 = nn.Sequential(ResidualBlock(c2, c3, 2), ResidualBlock(c3, c3))
        self.conv2 = nn.Conv2d(c3, output_dim, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: Tensor) -> list[Tensor]:
        """[N, 3, H, W] normalized images -> [layer1 (1/2), layer2 (1/2 or 1/4), conv2 (lowest)]."""
        x = self.relu1(self.norm1(self.conv1(images)))
        half = self.layer1(x)
        middle = self.layer2(half)
        lowest = self.conv2(self.layer3(middle))
        return [half, middle, lowest]
