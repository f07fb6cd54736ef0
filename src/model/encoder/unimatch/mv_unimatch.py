"""MultiViewUniMatch: DepthSplat's depth predictor (``encoder.depth_predictor``).

Per view: CNN features, a multi-view Transformer over them, and DINOv2 features of the
image. Per scale (coarse to fine): a plane-sweep cost volume over inverse-depth candidates,
a UNet regressor, a softmax over candidates and its expectation (soft-argmax inverse
depth). At the last scale a DPT head adds a full-resolution inverse-depth residual.

Tensor conventions: views are flattened into the batch as [B*V, ...] in view-major order
within each batch element (row ``b * V + v``). All depth values inside are inverse depth
until the final reciprocal.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..dinov2 import VIT_PRESETS, DinoVisionTransformer, ViTConfig
from .backbone import CNNEncoder
from .dpt_head import DPTHead
from .matching import cost_volume, relative_poses
from .mv_transformer import MultiViewFeatureTransformer, gather_views, source_view_indices
from .position import add_windowed_position
from .unet import UNetModel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DepthPredictorInputError(ValueError):
    """The images or cameras given to the depth predictor have an unusable shape."""


# DPT upsampler widths per ViT preset: (features, out_channels of the four levels).
DPT_WIDTHS: dict[str, tuple[int, tuple[int, int, int, int]]] = {
    "vits": (32, (48, 96, 192, 384)),
    "vitb": (48, (96, 192, 384, 768)),
    "vitl": (64, (128, 256, 512, 1024)),
}


class FeaturePyramid(nn.Module):
    """Level 0 is the input; level i > 0 is lifted x2 with half the channels (ViTDet style).

    Only 1 or 2 levels exist in the released models; level 1 is ConvTranspose(2x2, s2),
    GELU, 3x3 conv.
    """

    def __init__(self, in_channels: int, num_levels: int) -> None:
        super().__init__()
        if num_levels not in (1, 2):
            raise ValueError(f"num_scales must be 1 or 2, got {num_levels}.")
        half = in_channels // 2
        self.stages = nn.ModuleList([nn.Sequential()])
        if num_levels == 2:
            self.stages.append(
                nn.Sequential(
                    nn.ConvTranspose2d(in_channels, half, kernel_size=2, stride=2),
                    nn.GELU(),
                    nn.Conv2d(half, half, 3, padding=1),
                )
            )

    def forward(self, x: Tensor) -> list[Tensor]:
        return [stage(x) for stage in self.stages]


class DepthRegressor(nn.Sequential):
    """conv-GN-GELU, the cross-view UNet, conv (checkpoint indices 0..4)."""

    def __init__(self, in_channels: int, channels: int, unet: UNetModel) -> None:
        super().__init__(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            nn.GroupNorm(8, channels),
            nn.GELU(),
            unet,
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor, num_views: int) -> Tensor:  # type: ignore[override]
        x = self[2](self[1](self[0](x)))
        return self[4](self[3](x, num_views))


class MultiViewUniMatch(nn.Module):
    """The depth predictor.

    Args:
        num_scales: cost-volume scales (1 or 2); scale 1 refines at twice the resolution.
        feature_channels: CNN output / Transformer width.
        upsample_factor: image size / last-scale feature size (2, 4 or 8).
        lowest_feature_resolution: image size / scale-0 feature size (4 or 8).
        num_head: Transformer heads.
        ffn_dim_expansion: Transformer FFN expansion.
        num_transformer_layers: Transformer blocks.
        num_depth_candidates: inverse-depth candidates at scale 0 (scale i has 1/4^i of them).
        vit_type: "vits", "vitb" or "vitl"; picks the DINOv2 size and the DPT widths unless
            ``vit_config`` / ``dpt_features`` / ``dpt_out_channels`` override them.
        unet_channels: UNet width at scale 0 (scale i has 1/2^i).
        unet_channel_mult: UNet levels at scale 0 (scale i appends i more levels of 1).
        unet_attn_resolutions: UNet attention downsampling factors at scale 0 (x2 per scale).
        unet_head_channels: channels per UNet attention head.
        cnn_stage_channels: CNN widths of layer1, layer2, layer3.
        vit_config: explicit DINOv2 size (e.g. a reduced ViT for a tiny model).
        dpt_features, dpt_out_channels: explicit DPT upsampler widths.
    """

    def __init__(
        self,
        num_scales: int = 1,
        feature_channels: int = 128,
        upsample_factor: int = 8,
        lowest_feature_resolution: int = 8,
        num_head: int = 1,
        ffn_dim_expansion: int = 4,
        num_transformer_layers: int = 6,
        num_depth_candidates: int = 128,
        vit_type: str = "vits",
        unet_channels: int = 128,
        unet_channel_mult: Sequence[int] = (1, 1, 1),
        unet_attn_resolutions: Sequence[int] = (4,),
        unet_head_channels: int = 32,
        cnn_stage_channels: tuple[int, int, int] = (64, 96, 128),
        vit_config: ViTConfig | None = None,
        dpt_features: int | None = None,
        dpt_out_channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if vit_config is None:
            if vit_type not in VIT_PRESETS:
                raise ValueError(
                    f"vit_type must be one of {sorted(VIT_PRESETS)}, got {vit_type!r}."
                )
            vit_config = VIT_PRESETS[vit_type]
        if upsample_factor * 2 ** (num_scales - 1) != lowest_feature_resolution:
            raise ValueError(
                f"upsample_factor {upsample_factor} with {num_scales} scale(s) does not reach "
                f"lowest_feature_resolution {lowest_feature_resolution}."
            )
        self.num_scales = num_scales
        self.feature_channels = feature_channels
        self.upsample_factor = upsample_factor
        self.lowest_feature_resolution = lowest_feature_resolution
        self.num_depth_candidates = num_depth_candidates
        vit_channels = vit_config.embed_dim

        self.backbone = CNNEncoder(feature_channels, lowest_feature_resolution, cnn_stage_channels)
        self.transformer = MultiViewFeatureTransformer(
            num_transformer_layers, feature_channels, num_head, ffn_dim_expansion
        )
        if num_scales > 1:
            self.mv_pyramid = FeaturePyramid(feature_channels, num_scales)
        self.pretrained = DinoVisionTransformer(vit_config)
        if num_scales > 1:
            self.mono_pyramid = FeaturePyramid(vit_channels, num_scales)

        self.regressor = nn.ModuleList()
        self.regressor_residual = nn.ModuleList()
        self.depth_head = nn.ModuleList()
        cnn_channels = [feature_channels, cnn_stage_channels[1]]
        for i in range(num_scales):
            candidates = num_depth_candidates // 4**i
            in_channels = (
                candidates + cnn_channels[i] + feature_channels // 2**i + vit_channels // 2**i
            )
            channels = unet_channels // 2**i
            unet = UNetModel(
                channels,
                channel_mult=list(unet_channel_mult) + [1] * i,
                attention_resolutions=[r * 2**i for r in unet_attn_resolutions],
                head_channels=unet_head_channels,
            )
            self.regressor.append(DepthRegressor(in_channels, channels, unet))
            self.regressor_residual.append(nn.Conv2d(in_channels, channels, 1))
            self.depth_head.append(
                nn.Sequential(
                    nn.Conv2d(channels, channels * 2, 3, padding=1, padding_mode="replicate"),
                    nn.GELU(),
                    nn.Conv2d(channels * 2, candidates, 3, padding=1, padding_mode="replicate"),
                )
            )

        default_features, default_out = DPT_WIDTHS.get(vit_type, DPT_WIDTHS["vits"])
        self.upsampler = DPTHead(
            vit_channels,
            features=dpt_features if dpt_features is not None else default_features,
            out_channels=dpt_out_channels if dpt_out_channels is not None else default_out,
            downsample_factor=upsample_factor,
            num_scales=num_scales,
            cnn_feature_channels=(cnn_stage_channels[0], cnn_stage_channels[1], feature_channels),
            mv_feature_channels=feature_channels,
        )

    def forward(
        self,
        images: Tensor,
        attn_splits_list: Sequence[int] = (2,),
        intrinsics: Tensor | None = None,
        min_depth: Tensor | None = None,
        max_depth: Tensor | None = None,
        extrinsics: Tensor | None = None,
        nn_matrix: Tensor | None = None,
    ) -> dict[str, Tensor | list[Tensor]]:
        """Predict depth for every view.

        Args:
            images: [B, V, 3, H, W] in [0, 1]; H, W multiples of 4 * lowest_feature_resolution.
            attn_splits_list: Transformer window splits per axis; only the first is used.
            intrinsics: [B, V, 3, 3] normalized (row 0 divided by W, row 1 by H).
            min_depth: [B, V] the smallest INVERSE depth, i.e. 1 / far (official naming).
            max_depth: [B, V] the largest INVERSE depth, i.e. 1 / near (official naming).
            extrinsics: [B, V, 4, 4] camera-to-world.
            nn_matrix: [B, V, K] nearest-camera indices (column 0 = the view itself) that
                restrict Transformer cross-attention and the cost volume to K-1 source views;
                None uses all other views.
        Returns:
            A dict (lists are ordered by scale, coarse to fine, unless noted):
            ``features_cnn_all_scales``: CNN maps low to high resolution, 3 x [B*V, C, h, w].
            ``features_cnn``: the first ``num_scales`` of them.
            ``features_mv``: Transformer features per scale, [B*V, C/2^i, h_i, w_i].
            ``features_mono_intermediate``: 4 ViT maps at 1/8, [B*V, C_vit, H/8, W/8].
            ``features_mono``: ViT features per scale, [B*V, C_vit/2^i, h_i, w_i].
            ``match_probs``: softmax over candidates per scale, [B*V, D_i, h_i, w_i].
            ``depth_preds``: metric depth [B, V, H, W] (eval: one entry; training with 2
                scales: first the bilinearly upsampled scale-0 depth).
            ``depth_candidates``: last-scale INVERSE-depth candidates [B*V, D, h, w] (for
                1-scale models the scale-0 linspace, an expanded view: same at every pixel).
            ``coarse_mv_depth_lowres``: last-scale soft-argmax INVERSE depth [B, V, h, w].
            ``coarse_mv_depth``: the same upsampled by ``upsample_factor`` (bilinear,
                align_corners) before the residual, INVERSE depth [B, V, H, W].
            ``mono_depth``: the DPT residual, signed INVERSE depth [B, V, H, W].
            The final depth is 1 / clamp(coarse_mv_depth + mono_depth, 1/far, 1/near).
        """
        if intrinsics is None or extrinsics is None or min_depth is None or max_depth is None:
            raise DepthPredictorInputError(
                "MultiViewUniMatch needs intrinsics, extrinsics, min_depth and max_depth "
                "(the inverse depths 1/far and 1/near); pass all four."
            )
        b, v, _, height, width = images.shape
        divisor = 4 * self.lowest_feature_resolution
        if height % divisor or width % divisor:
            raise DepthPredictorInputError(
                f"image size {height}x{width} is not supported: height and width must be "
                f"multiples of {divisor} for this model (lowest feature resolution "
                f"1/{self.lowest_feature_resolution}); resize or crop the images first."
            )
        bv = b * v
        mean = images.new_tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = images.new_tensor(IMAGENET_STD).view(3, 1, 1)
        images = ((images - mean) / std).reshape(bv, 3, height, width)
        intrinsics_px = intrinsics.clone()
        intrinsics_px[:, :, 0] *= width
        intrinsics_px[:, :, 1] *= height
        inv_depth_min = min_depth.reshape(bv, 1, 1, 1)
        inv_depth_max = max_depth.reshape(bv, 1, 1, 1)
        results: dict[str, Tensor | list[Tensor]] = {}

        cnn_all = self.backbone(images)[::-1]  # low to high resolution
        cnn = cnn_all[: self.num_scales]
        results["features_cnn_all_scales"] = cnn_all
        results["features_cnn"] = cnn

        splits = attn_splits_list[0]
        lowest = add_windowed_position(cnn[0], splits)
        _, c, h0, w0 = lowest.shape
        mv = self.transformer(lowest.view(b, v, c, h0, w0), splits, nn_matrix).view(bv, c, h0, w0)
        mv_list = self.mv_pyramid(mv) if self.num_scales > 1 else [mv]
        results["features_mv"] = mv_list

        vit_size = (height // 14 * 14, width // 14 * 14)
        vit_input = F.interpolate(images, vit_size, mode="bilinear", align_corners=True)
        mono_maps = [
            F.interpolate(x, (height // 8, width // 8), mode="bilinear", align_corners=True)
            for x in self.pretrained.intermediate_maps(vit_input)
        ]
        results["features_mono_intermediate"] = mono_maps
        mono = mono_maps[-1]
        if self.lowest_feature_resolution == 4:
            mono = F.interpolate(mono, scale_factor=2, mode="bilinear", align_corners=True)
        mono_list = self.mono_pyramid(mono) if self.num_scales > 1 else [mono]
        results["features_mono"] = mono_list

        sources = source_view_indices(b, v, nn_matrix, images.device)  # [B, V, M]
        extrinsics_flat = extrinsics.reshape(bv, 4, 4)
        poses = relative_poses(extrinsics_flat, gather_views(extrinsics_flat, b, sources))
        depth_preds: list[Tensor] = []
        match_probs: list[Tensor] = []
        inv_depth: Tensor | None = None
        candidates: Tensor | None = None
        for scale in range(self.num_scales):
            factor = self.upsample_factor * 2 ** (self.num_scales - 1 - scale)
            features = mv_list[scale]
            _, _, h, w = features.shape
            k_scaled = intrinsics_px.clone()
            k_scaled[:, :, :2] = k_scaled[:, :, :2] / factor
            num_candidates = self.num_depth_candidates // 4**scale
            linear = torch.linspace(
                0, 1, num_candidates, dtype=features.dtype, device=features.device
            ).view(1, num_candidates, 1, 1)
            if scale == 0:
                candidates = inv_depth_min + linear * (inv_depth_max - inv_depth_min)
                candidates = candidates.expand(bv, num_candidates, h, w)  # same at every pixel
            else:
                assert inv_depth is not None
                seed = F.interpolate(inv_depth, scale_factor=2, mode="bilinear", align_corners=True)
                # Window of half the previous spacing around the upsampled estimate.
                interval = (
                    (inv_depth_max - inv_depth_min) / (self.num_depth_candidates - 1) / 2**scale
                )
                low = (seed - interval * (num_candidates // 2)).clamp(min=inv_depth_min)
                high = (seed + interval * (num_candidates // 2 - 1)).clamp(max=inv_depth_max)
                candidates = low + linear * (high - low)  # [B*V, D, h, w]
            volume = cost_volume(
                features,
                gather_views(features, b, sources),
                k_scaled.reshape(bv, 3, 3),
                poses,
                candidates,
            )
            regressor_input = torch.cat((volume, cnn[scale], features, mono_list[scale]), dim=1)
            out = self.regressor[scale](regressor_input, v) + self.regressor_residual[scale](
                regressor_input
            )
            probs = F.softmax(self.depth_head[scale](out), dim=1)  # [B*V, D, h, w]
            match_probs.append(probs)
            inv_depth = (probs * candidates).sum(dim=1, keepdim=True)  # [B*V, 1, h, w]
            if self.training and scale < self.num_scales - 1:
                upsampled = F.interpolate(
                    inv_depth, scale_factor=factor, mode="bilinear", align_corners=True
                )
                depth_preds.append(1.0 / upsampled.view(b, v, height, width))

        assert inv_depth is not None and candidates is not None
        residual = self.upsampler(
            mono_maps,
            cnn_features=cnn_all[::-1],
            mv_features=mv_list[0] if self.num_scales == 1 else mv_list[::-1],
            depth=inv_depth,
        )
        coarse = F.interpolate(
            inv_depth, scale_factor=self.upsample_factor, mode="bilinear", align_corners=True
        )
        final_inv_depth = (coarse + residual).clamp(min=inv_depth_min, max=inv_depth_max)
        depth_preds.append(1.0 / final_inv_depth.view(b, v, height, width))

        results["depth_preds"] = depth_preds
        results["match_probs"] = match_probs
        # New keys for inspection: the two inverse-depth terms of the final depth.
        results["depth_candidates"] = candidates
        results["coarse_mv_depth_lowres"] = inv_depth.view(b, v, *inv_depth.shape[-2:])
        results["coarse_mv_depth"] = coarse.view(b, v, height, width)
        results["mono_depth"] = residual.view(b, v, height, width)
        return results
