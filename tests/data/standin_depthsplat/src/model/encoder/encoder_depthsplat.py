"""Stand-in encoder: the stand-in depth predictor, then one Gaussian per pixel at its depth."""

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from ...standin_only import STANDIN
from .unimatch.mv_unimatch import MultiViewUniMatch


@dataclass
class GaussianAdapterCfg:
    gaussian_scale_min: float
    gaussian_scale_max: float
    sh_degree: int


@dataclass
class EncoderDepthSplatCfg:
    name: str
    gaussian_adapter: GaussianAdapterCfg
    upsample_factor: int
    num_depth_candidates: int
    return_depth: bool
    train_depth_only: bool
    residual_scale: float


@dataclass
class Gaussians:
    means: torch.Tensor
    covariances: torch.Tensor
    harmonics: torch.Tensor
    opacities: torch.Tensor


class EncoderDepthSplat(nn.Module):
    def __init__(self, cfg: EncoderDepthSplatCfg) -> None:
        super().__init__()
        assert STANDIN
        assert isinstance(cfg.gaussian_adapter, GaussianAdapterCfg)
        self.cfg = cfg
        self.depth_predictor = MultiViewUniMatch(
            cfg.upsample_factor, cfg.num_depth_candidates, cfg.residual_scale
        )
        if not cfg.train_depth_only:
            self.opacity = nn.Conv2d(3, 1, 1)

    def forward(
        self,
        context: dict,
        global_step: int,
        deterministic: bool = False,
        visualization_dump: dict | None = None,
    ):
        b, v, _, h, w = context["image"].shape
        results_dict = self.depth_predictor(
            context["image"], min_depth=1.0 / context["far"], max_depth=1.0 / context["near"]
        )
        depth_preds = results_dict["depth_preds"]

        # [B, V, H, W]
        depth = depth_preds[-1]

        if self.cfg.train_depth_only:
            return {"gaussians": None, "depths": depth}

        # Pixel centres (normalized), unprojected to camera then world points.
        ys, xs = torch.meshgrid(
            (torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij"
        )
        pixels = torch.stack((xs, ys, torch.ones_like(xs)), dim=-1)  # [H, W, 3]
        rays = torch.einsum("bvij,hwj->bvhwi", context["intrinsics"].inverse(), pixels)
        points = rays * depth[..., None]  # [B, V, H, W, 3], camera frame
        extrinsics = context["extrinsics"]
        rotation, translation = extrinsics[..., :3, :3], extrinsics[..., :3, 3]
        means = torch.einsum("bvij,bvhwj->bvhwi", rotation, points) + translation[:, :, None, None]
        n = v * h * w
        d_sh = (self.cfg.gaussian_adapter.sh_degree + 1) ** 2
        harmonics = torch.zeros(b, n, 3, d_sh)
        harmonics[..., 0] = rearrange(context["image"], "b v c h w -> b (v h w) c")
        images = rearrange(context["image"], "b v c h w -> (b v) c h w")
        opacities = rearrange(self.opacity(images).sigmoid(), "(b v) () h w -> b (v h w)", b=b)
        gaussians = Gaussians(
            means=rearrange(means, "b v h w xyz -> b (v h w) xyz"),
            covariances=torch.eye(3).expand(b, n, 3, 3) * 1e-4,
            harmonics=harmonics,
            opacities=opacities,
        )
        if visualization_dump is not None:
            visualization_dump["depth"] = depth[..., None, None]
            visualization_dump["scales"] = torch.full((b, n, 3), 1e-2)
            visualization_dump["rotations"] = torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(b, n, 4)
        if self.cfg.return_depth:
            return {"gaussians": gaussians, "depths": depth}
        return gaussians
