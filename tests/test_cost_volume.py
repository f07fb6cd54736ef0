"""The two cost-volume paths (correlate-then-gather and warp-then-correlate) agree."""

from __future__ import annotations

import pytest
import torch

from dsviewer.model.encoder.unimatch import matching
from dsviewer.model.encoder.unimatch.matching import cost_volume, relative_poses


def scene(views: int, sources: int, channels: int, height: int, width: int, candidates: int):
    g = torch.Generator().manual_seed(views * 100 + candidates)
    reference = torch.randn(views, channels, height, width, generator=g)
    extrinsics = torch.eye(4).repeat(views, 1, 1)
    extrinsics[:, 0, 3] = 0.3 * torch.arange(views)  # wide baselines: many projections fall outside
    extrinsics[:, 1, 3] = 0.05 * torch.arange(views) ** 2
    index = torch.stack([(i + 1 + torch.arange(sources)) % views for i in range(views)])
    feature_sources = reference[index]  # [V, M, C, h, w]
    poses = relative_poses(extrinsics, extrinsics[index])
    K = torch.tensor([[0.9 * width, 0, width / 2], [0, 0.9 * width, height / 2], [0, 0, 1.0]])
    if candidates > 32:  # scale 0: uniform in inverse depth, the same at every pixel
        inv = torch.linspace(1 / 100, 1 / 0.5, candidates).view(1, -1, 1, 1)
        inv = inv.expand(views, candidates, height, width)
    else:  # scale 1: a window per pixel
        seed = 0.2 + 0.5 * torch.rand(views, 1, height, width, generator=g)
        inv = seed + torch.linspace(-0.05, 0.05, candidates).view(1, -1, 1, 1)
    return reference, feature_sources, K.expand(views, 3, 3).clone(), poses, inv


@pytest.mark.parametrize(
    "views, sources, channels, height, width, candidates",
    [(2, 1, 16, 8, 12, 64), (3, 2, 8, 6, 10, 32), (5, 2, 4, 4, 8, 16)],
)
def test_gather_path_matches_warping(
    monkeypatch, views, sources, channels, height, width, candidates
):
    inputs = scene(views, sources, channels, height, width, candidates)
    monkeypatch.setattr(matching, "GATHER_RATIO", 0)  # always warp the features
    warped = cost_volume(*inputs)
    monkeypatch.setattr(matching, "GATHER_RATIO", 10**9)  # always correlate, then gather
    gathered = cost_volume(*inputs)
    torch.testing.assert_close(gathered, warped, rtol=1e-5, atol=1e-5)
    # The scenes reach outside the source images, so the zero padding is exercised too.
    assert (warped == 0).any() or (warped.abs() < 1e-6).any()


def test_gather_path_chunks_give_the_same_result():
    reference, sources, K, poses, inv = scene(2, 1, 8, 6, 10, 32)
    grid = matching.sampling_grid(K, poses[:, 0], 1.0 / inv)
    whole = matching.correlate_warped(reference, sources[:, 0], grid)
    chunked = matching.correlate_warped(reference, sources[:, 0], grid, max_chunk_bytes=1)
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)  # matmul blocking only
