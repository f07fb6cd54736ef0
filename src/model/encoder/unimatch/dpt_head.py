"""DPT head: fuses ViT maps with CNN / multi-view features and upsamples to full resolution.

DepthSplat uses it twice with the same structure: as ``depth_predictor.upsampler`` it outputs a
1-channel residual in inverse depth; as the encoder's ``feature_upsampler``
(``return_feature=True``) it outputs ``features`` channels for the Gaussian head.

The four ViT maps come in at 1/8 of the image. ``projects`` + ``resize_layers`` bring them
to 1/2, 1/4, 1/8 and 1/16; at the first three levels ``concat_projects`` (1x1 convs) fuse
them with other features, chosen by (upsample factor, number of scales); see
:func:`fusion_layout`. RefineNet blocks then merge the levels coarse to fine.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..common.cpu_kernels import PointwiseConv2d, cat_nhwc, nhwc

# Names of the tensors concatenated at levels 1/2, 1/4, 1/8 ("vit" is the projected ViT map):
#   cnn0/cnn1/cnn2 = CNN layer1, layer2, lowest output; mv = multi-view features at the
#   lowest CNN resolution; mv_fine = the x2 pyramid level of them (2-scale models only);
#   depth = the coarse inverse depth at the last cost-volume scale (omitted for features).
FUSION_LAYOUTS: dict[tuple[int, int], tuple[tuple[str, ...], ...]] = {
    (4, 1): (("cnn0", "cnn1", "vit"), ("cnn2", "vit", "mv", "depth"), ("vit",)),
    (2, 2): (("cnn0", "cnn1", "mv_fine", "depth", "vit"), ("cnn2", "vit", "mv"), ("vit",)),
    (4, 2): (("cnn0", "vit"), ("cnn1", "vit", "mv_fine", "depth"), ("cnn2", "vit", "mv")),
    (8, 1): (("cnn0", "vit"), ("cnn1", "vit"), ("cnn2", "vit", "mv", "depth")),
}


def fusion_layout(
    upsample_factor: int, num_scales: int, with_depth: bool
) -> tuple[tuple[str, ...], ...]:
    """The concatenation order per level for a model variant (see ``FUSION_LAYOUTS``)."""
    key = (upsample_factor, num_scales)
    if key not in FUSION_LAYOUTS:
        raise ValueError(
            f"DPT head: unsupported upsample_factor={upsample_factor} with num_scales={num_scales};"
            f" supported pairs are {sorted(FUSION_LAYOUTS)}."
        )
    return tuple(
        tuple(name for name in level if with_depth or name != "depth")
        for level in FUSION_LAYOUTS[key]
    )


class ResidualConvUnit(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + x


class FeatureFusionBlock(nn.Module):
    """Adds a refined skip (if any), refines, resizes bilinearly (align_corners), 1x1 conv."""

    def __init__(self, channels: int, with_skip: bool = True) -> None:
        super().__init__()
        self.out_conv = PointwiseConv2d(channels, channels)
        if with_skip:
            self.resConfUnit1 = ResidualConvUnit(channels)
        self.resConfUnit2 = ResidualConvUnit(channels)

    def forward(
        self, x: Tensor, skip: Tensor | None = None, size: Sequence[int] | None = None
    ) -> Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTHead(nn.Module):
    """DPT fusion head.

    Args:
        in_channels: ViT embedding width.
        features: RefineNet width (and output channels when ``return_feature``).
        out_channels: projected widths of the four ViT levels (1/2, 1/4, 1/8, 1/16).
        downsample_factor: the model's upsample factor (2, 4 or 8).
        num_scales: cost-volume scales of the model (1 or 2).
        return_feature: output ``features`` channels instead of the 1-channel residual.
        cnn_feature_channels: CNN widths at layer1, layer2 and the lowest level.
        mv_feature_channels: multi-view Transformer width (the pyramid level has half).
    """

    def __init__(
        self,
        in_channels: int,
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        downsample_factor: int = 8,
        num_scales: int = 1,
        return_feature: bool = False,
        cnn_feature_channels: Sequence[int] = (64, 96, 128),
        mv_feature_channels: int = 128,
    ) -> None:
        super().__init__()
        self.return_feature = return_feature
        self.layout = fusion_layout(downsample_factor, num_scales, not return_feature)
        out_channels = list(out_channels)
        widths = {
            "cnn0": cnn_feature_channels[0],
            "cnn1": cnn_feature_channels[1],
            "cnn2": cnn_feature_channels[2],
            "mv": mv_feature_channels,
            "mv_fine": mv_feature_channels // 2,
            "depth": 1,
        }
        self.concat_projects = nn.ModuleList(
            PointwiseConv2d(
                sum(widths.get(name, out_channels[i]) for name in names), out_channels[i]
            )
            for i, names in enumerate(self.layout)
        )
        self.projects = nn.ModuleList(PointwiseConv2d(in_channels, c) for c in out_channels)
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4),
                nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(out_channels[3], out_channels[3], 3, stride=2, padding=1),
            ]
        )
        self.scratch = nn.Module()
        for i, c in enumerate(out_channels, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        self.scratch.refinenet1 = FeatureFusionBlock(features)
        self.scratch.refinenet2 = FeatureFusionBlock(features)
        self.scratch.refinenet3 = FeatureFusionBlock(features)
        self.scratch.refinenet4 = FeatureFusionBlock(features, with_skip=False)
        if not return_feature:
            self.scratch.output_conv = nn.Sequential(
                nn.Conv2d(features, features // 2, 3, padding=1, padding_mode="replicate"),
                nn.GELU(),
                nn.Conv2d(features // 2, 16, 3, padding=1, padding_mode="replicate"),
                nn.GELU(),
                PointwiseConv2d(16, 1),
            )
            nn.init.zeros_(self.scratch.output_conv[4].weight)
            nn.init.zeros_(self.scratch.output_conv[4].bias)

    def forward(
        self,
        out_features: Sequence[Tensor],
        cnn_features: Sequence[Tensor],
        mv_features: Tensor | Sequence[Tensor],
        depth: Tensor | None = None,
    ) -> Tensor:
        """Fuse and upsample.

        Args:
            out_features: four ViT maps [N, in_channels, H/8, W/8] (tapped layers in order).
            cnn_features: the three CNN maps, high to low resolution: layer1 [N, c0, H/2, W/2],
                layer2 [N, c1, H/2 or H/4, ...], lowest [N, c2, H/l, W/l] (l = 4 or 8).
            mv_features: 1-scale models: the multi-view map [N, mv, h, w]; 2-scale models:
                [pyramid level (x2, mv/2 channels), multi-view map], high to low resolution.
            depth: [N, 1, h', w'] coarse inverse depth at the last scale; required unless
                ``return_feature``.
        Returns:
            [N, 1, H, W] inverse-depth residual, or [N, features, H, W] with ``return_feature``,
            stored channels-last (see :mod:`..common.cpu_kernels`).
        """
        if not self.return_feature and depth is None:
            raise ValueError("DPTHead without return_feature needs the coarse `depth`.")
        levels = [
            resize(project(nhwc(x)))
            for x, project, resize in zip(out_features, self.projects, self.resize_layers)
        ]
        if isinstance(mv_features, Tensor):
            mv = {"mv": mv_features}
        else:
            mv = {"mv_fine": mv_features[0], "mv": mv_features[1]}
        named = {
            "cnn0": cnn_features[0],
            "cnn1": cnn_features[1],
            "cnn2": cnn_features[2],
            "depth": depth,
            **mv,
        }
        for i, names in enumerate(self.layout):
            parts = [levels[i] if name == "vit" else named[name] for name in names]
            levels[i] = self.concat_projects[i](cat_nhwc(parts))
        s = self.scratch
        rn = [
            s.layer1_rn(levels[0]),
            s.layer2_rn(levels[1]),
            s.layer3_rn(levels[2]),
            s.layer4_rn(levels[3]),
        ]
        path = s.refinenet4(rn[3], size=rn[2].shape[2:])  # 1/8
        path = s.refinenet3(path, rn[2], size=rn[1].shape[2:])  # 1/4
        path = s.refinenet2(path, rn[1], size=rn[0].shape[2:])  # 1/2
        path = s.refinenet1(path, rn[0])  # full resolution
        if self.return_feature:
            return path
        return s.output_conv(path)
