"""DepthSplat's encoder (eval path): multi-view depth, then pixel-aligned Gaussians.

Submodule names (``depth_predictor``, ``feature_upsampler``, ``gaussian_regressor``,
``gaussian_head``) match the released checkpoints, so ``encoder.*`` keys load as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..config import DepthSplatConfig
from ..types import Gaussians
from .common.cpu_kernels import cat_nhwc
from .common.gaussian_adapter import GaussianAdapter
from .dinov2 import VIT_PRESETS, ViTConfig
from .unimatch.dpt_head import DPTHead
from .unimatch.mv_unimatch import DPT_WIDTHS, MultiViewUniMatch

# Released widths of the Gaussian-feature DPT head per ViT size (twice the depth upsampler's).
FEATURE_UPSAMPLER_CHANNELS = {"vits": 64, "vitb": 96, "vitl": 128}


def vit_config(config: DepthSplatConfig) -> ViTConfig:
    """The DINOv2 size: the ``vit_type`` preset, or the explicit reduced one."""
    if config.vit_embed_dim is None:
        return VIT_PRESETS[config.vit_type]
    assert config.vit_depth is not None and config.vit_num_heads is not None
    assert config.vit_tapped_layers is not None
    return ViTConfig(
        embed_dim=config.vit_embed_dim,
        depth=config.vit_depth,
        num_heads=config.vit_num_heads,
        tapped_layers=tuple(config.vit_tapped_layers),
    )


@dataclass
class EncoderOutput:
    """What one forward pass returns."""

    depth: Tensor  # [B, V, H, W] final metric z-depth
    gaussians: Gaussians | None  # N = V * H * W per batch element; None for depth-only models


class EncoderDepthSplat(nn.Module):
    """Images + cameras of the context views -> depth maps and (unless depth-only) Gaussians."""

    def __init__(self, config: DepthSplatConfig):
        super().__init__()
        self.config = config
        vit = vit_config(config)
        projection_widths = config.dpt_out_channels or DPT_WIDTHS[config.vit_type][1]
        cnn_channels = config.cnn_stage_channels
        self.depth_predictor = MultiViewUniMatch(
            num_scales=config.num_scales,
            feature_channels=config.feature_channels,
            upsample_factor=config.upsample_factor,
            lowest_feature_resolution=config.lowest_feature_resolution,
            num_transformer_layers=config.num_transformer_layers,
            vit_type=config.vit_type,
            unet_channels=config.unet_channels,
            cnn_stage_channels=(cnn_channels[0], cnn_channels[1], cnn_channels[2]),
            vit_config=vit,
            dpt_features=config.dpt_features,
            dpt_out_channels=projection_widths,
        )
        if config.depth_only:
            return

        feature_channels = (
            config.feature_upsampler_channels or FEATURE_UPSAMPLER_CHANNELS[config.vit_type]
        )
        self.feature_upsampler = DPTHead(
            in_channels=vit.embed_dim,
            features=feature_channels,
            out_channels=projection_widths,
            downsample_factor=config.upsample_factor,
            num_scales=config.num_scales,
            return_feature=True,
            cnn_feature_channels=(cnn_channels[0], cnn_channels[1], config.feature_channels),
            mv_feature_channels=config.feature_channels,
        )
        self.gaussian_adapter = GaussianAdapter(
            config.gaussian_scale_min, config.gaussian_scale_max, config.sh_degree
        )
        regressor_channels = config.gaussian_regressor_channels
        # Input: image (3), metric depth (1), match confidence (1), DPT features.
        self.gaussian_regressor = nn.Sequential(
            nn.Conv2d(3 + 1 + 1 + feature_channels, regressor_channels, 3, 1, 1),
            nn.GELU(),
            nn.Conv2d(regressor_channels, regressor_channels, 3, 1, 1),
        )
        head_channels = self.gaussian_adapter.layout.num_channels
        # Input: regressor output, image (3), DPT features, match confidence (1).
        self.gaussian_head = nn.Sequential(
            nn.Conv2d(
                regressor_channels + 3 + feature_channels + 1,
                head_channels, 3, 1, 1, padding_mode="replicate",
            ),
            nn.GELU(),
            nn.Conv2d(head_channels, head_channels, 3, 1, 1, padding_mode="replicate"),
        )  # fmt: skip

    def nearest_views(self, extrinsics: Tensor) -> Tensor | None:
        """``[B, V, k+1]`` indices of each view and its ``k = local_mv_match`` nearest cameras.

        Only used with more than 3 views; with 3 or fewer every view is matched with all others.
        Ties are broken by ``argsort``, which is not stable: inputs should avoid equal distances.
        """
        num_views = extrinsics.shape[1]
        if num_views <= 3:
            return None
        centers = extrinsics[:, :, :3, 3]
        distances = torch.cdist(centers, centers, p=2)  # [B, V, V]
        return torch.argsort(distances)[:, :, : self.config.local_mv_match + 1]

    def forward(
        self,
        context: dict[str, Tensor],
        global_step: int = 0,
        visualization_dump: dict[str, Tensor] | None = None,
    ) -> EncoderOutput:
        """Run the encoder.

        Args:
            context: ``image [B, V, 3, H, W]`` in [0, 1], ``intrinsics [B, V, 3, 3]`` normalized,
                ``extrinsics [B, V, 4, 4]`` T_world_cam, ``near [B, V]``, ``far [B, V]``.
            global_step: accepted for call compatibility with the official encoder; unused.
            visualization_dump: if a dict, receives the intermediate maps (see below).

        ``visualization_dump`` keys: ``depth`` [B, V, H, W] final metric depth;
        ``coarse_mv_depth`` and ``mono_depth`` [B, V, H, W] (INVERSE depth, see below);
        ``match_prob`` [B, V, h, w] max of the last-scale softmax; ``match_probs`` and
        ``depth_candidates`` [B, V, D, h, w] (candidates are inverse depths); for Gaussian models
        also ``scales`` [B, N, 3] and ``rotations`` [B, N, 4] (xyzw, camera frame).
        """
        del global_step  # eval-only encoder: nothing depends on the training step
        image = context["image"]
        b, h, w = image.shape[0], image.shape[-2], image.shape[-1]

        results = self.depth_predictor(
            image,
            attn_splits_list=[2],
            min_depth=1.0 / context["far"],  # the official argument names: inverse depths
            max_depth=1.0 / context["near"],
            intrinsics=context["intrinsics"],
            extrinsics=context["extrinsics"],
            nn_matrix=self.nearest_views(context["extrinsics"]),
        )
        depth = results["depth_preds"][-1]  # [B, V, H, W] metric
        probs = results["match_probs"][-1]  # [BV, D, h, w] last-scale softmax over candidates
        match_prob = probs.max(dim=1, keepdim=True).values  # [BV, 1, h, w]

        if visualization_dump is not None:
            per_view = "(b v) ... -> b v ..."
            visualization_dump["depth"] = depth
            # INVERSE depth: the cost-volume soft-argmax, bilinearly upsampled to H x W.
            visualization_dump["coarse_mv_depth"] = results["coarse_mv_depth"]
            # INVERSE-depth residual (signed) added by the DPT upsampler:
            # depth = 1 / clamp(coarse_mv_depth + mono_depth, 1/far, 1/near).
            visualization_dump["mono_depth"] = results["mono_depth"]
            visualization_dump["match_prob"] = rearrange(match_prob[:, 0], per_view, b=b)
            visualization_dump["match_probs"] = rearrange(probs, per_view, b=b)
            candidates = results["depth_candidates"]  # [BV, D, h or 1, w or 1] inverse depth
            candidates = candidates.expand(-1, -1, *probs.shape[-2:])
            visualization_dump["depth_candidates"] = rearrange(candidates, per_view, b=b)

        if self.config.depth_only:
            return EncoderOutput(depth=depth, gaussians=None)

        features = self.feature_upsampler(
            results["features_mono_intermediate"],
            cnn_features=results["features_cnn_all_scales"][::-1],
            mv_features=(
                results["features_mv"][0]
                if self.config.num_scales == 1
                else results["features_mv"][::-1]
            ),
        )  # [BV, C, H, W]
        match_prob_full = F.interpolate(match_prob, size=(h, w), mode="nearest")  # [BV, 1, H, W]
        image_bv = rearrange(image, "b v c h w -> (b v) c h w")
        depth_bv = rearrange(depth, "b v h w -> (b v) () h w")

        # Channels-last all through the two conv stacks (see cpu_kernels); the adapter reads
        # the head output channel-last anyway.
        stacked = cat_nhwc((image_bv, depth_bv, match_prob_full, features))
        regressed = self.gaussian_regressor(stacked)
        raw = self.gaussian_head(cat_nhwc((regressed, image_bv, features, match_prob_full)))
        gaussians = self.gaussian_adapter(
            rearrange(raw, "(b v) c h w -> b v c h w", b=b),
            depth,
            image,
            context["intrinsics"],
            context["extrinsics"],
        )
        if visualization_dump is not None:
            visualization_dump["scales"] = gaussians.scales
            visualization_dump["rotations"] = gaussians.rotations_xyzw
        return EncoderOutput(depth=depth, gaussians=gaussians)
