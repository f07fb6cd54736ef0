"""Stand-in depth predictor: a softmax over uniform inverse-depth candidates plus a residual."""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class MultiViewUniMatch(nn.Module):
    def __init__(self, upsample_factor=4, num_depth_candidates=16, residual_scale=0.5):
        super().__init__()
        self.upsample_factor = upsample_factor
        self.num_depth_candidates = num_depth_candidates
        self.residual_scale = residual_scale
        self.matcher = nn.Conv2d(3, num_depth_candidates, 1)
        self.upsampler = nn.Conv2d(3, 1, 1)

    def forward(self, images, min_depth, max_depth, **kwargs):
        # images [B, V, 3, H, W]; min_depth = 1 / far and max_depth = 1 / near, [B, V]
        results_dict = {}
        b, v, _, ori_h, ori_w = images.shape
        images = rearrange(images, "b v c h w -> (b v) c h w")
        features = F.avg_pool2d(images, self.upsample_factor)
        h, w = features.shape[-2:]
        min_depth, max_depth = min_depth.reshape(-1, 1, 1, 1), max_depth.reshape(-1, 1, 1, 1)
        linear_space = torch.linspace(0, 1, self.num_depth_candidates).view(1, -1, 1, 1)
        depth_candidates = min_depth + linear_space * (max_depth - min_depth)  # [BV, D, 1, 1]
        depth_candidates = depth_candidates.repeat(1, 1, h, w)
        match_prob = F.softmax(self.matcher(features), dim=1)  # [BV, D, h, w]
        match_probs = [match_prob]
        depth = (match_prob * depth_candidates).sum(dim=1, keepdim=True)
        residual_depth = self.upsampler(images) * self.residual_scale
        depth_bilinear = F.interpolate(
            depth, size=(ori_h, ori_w), mode="bilinear", align_corners=True
        )
        depth = (depth_bilinear + residual_depth).clamp(min=min_depth, max=max_depth)
        depth_preds = [rearrange(1.0 / depth[:, 0], "(b v) h w -> b v h w", b=b, v=v)]

        results_dict.update({"depth_preds": depth_preds})
        results_dict.update({"match_probs": match_probs})

        return results_dict
