"""Quaternions, covariances, rigid inverses and SH rotation (against the official dump)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import available

from dsviewer.geometry.transforms import (
    T_cam_world_from_T_world_cam,
    T_world_cam_from_T_cam_world,
    covariance_from_scale_rotation,
    invert_rigid,
    matrix_to_quaternion_wxyz,
    quaternion_wxyz_to_matrix,
    quaternion_xyzw_to_matrix,
    rotate_covariance,
    rotate_sh,
    sh_rotation_matrix,
    wxyz_to_xyzw,
    xyzw_to_wxyz,
)

INTERMEDIATE_CASES = available("case_a_small_2v_64x64", "case_b_base_3v_64x112")


def random_rotations(n: int, seed: int = 0) -> torch.Tensor:
    q = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return quaternion_xyzw_to_matrix(q / q.norm(dim=-1, keepdim=True), eps=0.0)


def axis_angle_matrix(axis: str, angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    if axis == "x":
        rows = [[1, 0, 0], [0, c, -s], [0, s, c]]
    elif axis == "y":
        rows = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    else:
        rows = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    return torch.tensor(rows, dtype=torch.float64)


def e3nn_degree2_harmonics(x: torch.Tensor) -> torch.Tensor:
    """e3nn's real degree-2 harmonics (component normalization) of unit vectors ``[N, 3]``,
    written out independently of the basis matrices used by ``sh_rotation_matrix``."""
    px, py, pz = x.unbind(-1)
    r15, r5 = math.sqrt(15.0), math.sqrt(5.0)
    return torch.stack(
        (
            r15 * px * pz,
            r15 * px * py,
            r5 * (py**2 - 0.5 * (px**2 + pz**2)),
            r15 * py * pz,
            r15 / 2 * (pz**2 - px**2),
        ),
        dim=-1,
    )


def test_quaternion_matrix_is_a_rotation_and_matches_axis_angle():
    R = random_rotations(64)
    eye = torch.eye(3, dtype=torch.float64).expand(64, 3, 3)
    torch.testing.assert_close(R @ R.transpose(-1, -2), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(64, dtype=torch.float64))
    # 90 degrees about z: xyzw = (0, 0, sin 45, cos 45) maps +x to +y.
    q = torch.tensor([0.0, 0.0, math.sqrt(0.5), math.sqrt(0.5)], dtype=torch.float64)
    torch.testing.assert_close(
        quaternion_xyzw_to_matrix(q, eps=0.0), axis_angle_matrix("z", math.pi / 2)
    )
    # Scaling the quaternion does not change the rotation.
    torch.testing.assert_close(
        quaternion_xyzw_to_matrix(3.0 * q, eps=0.0), axis_angle_matrix("z", math.pi / 2)
    )


def test_quaternion_round_trips():
    R = random_rotations(200, seed=1)
    q_wxyz = matrix_to_quaternion_wxyz(R)
    assert (q_wxyz[:, 0] >= 0).all()
    torch.testing.assert_close(q_wxyz.norm(dim=-1), torch.ones(200, dtype=torch.float64))
    torch.testing.assert_close(quaternion_wxyz_to_matrix(q_wxyz), R, atol=1e-7, rtol=0)
    torch.testing.assert_close(xyzw_to_wxyz(wxyz_to_xyzw(q_wxyz)), q_wxyz)
    # 180-degree rotations (w = 0) are the hard case for the naive formula.
    for axis in "xyz":
        R180 = axis_angle_matrix(axis, math.pi)
        q = matrix_to_quaternion_wxyz(R180)
        torch.testing.assert_close(quaternion_wxyz_to_matrix(q), R180, atol=1e-7, rtol=0)


def test_covariance_from_scale_rotation():
    R = random_rotations(32, seed=2)
    q_xyzw = wxyz_to_xyzw(matrix_to_quaternion_wxyz(R))
    scales = torch.rand(32, 3, dtype=torch.float64) + 0.1
    cov = covariance_from_scale_rotation(scales, q_xyzw)
    expected = R @ torch.diag_embed(scales**2) @ R.transpose(-1, -2)
    torch.testing.assert_close(cov, expected, atol=1e-7, rtol=0)
    torch.testing.assert_close(
        torch.linalg.eigvalsh(cov), torch.sort(scales**2, dim=-1).values, atol=1e-7, rtol=0
    )
    R2 = random_rotations(32, seed=3)
    torch.testing.assert_close(
        rotate_covariance(cov, R2), covariance_from_scale_rotation(
            scales, wxyz_to_xyzw(matrix_to_quaternion_wxyz(R2 @ R))
        ), atol=1e-7, rtol=0,
    )  # fmt: skip


def test_rigid_inverse():
    T = torch.eye(4, dtype=torch.float64).repeat(10, 1, 1)
    T[:, :3, :3] = random_rotations(10, seed=4)
    T[:, :3, 3] = torch.randn(10, 3, dtype=torch.float64)
    torch.testing.assert_close(invert_rigid(T), torch.linalg.inv(T))
    T_cam_world = T_cam_world_from_T_world_cam(T)
    torch.testing.assert_close(T_cam_world @ T, torch.eye(4, dtype=torch.float64).expand(10, 4, 4))
    torch.testing.assert_close(T_world_cam_from_T_cam_world(T_cam_world), T)


def test_sh_rotation_is_equivariant_and_a_representation():
    R1, R2 = random_rotations(16, seed=5), random_rotations(16, seed=6)
    x = torch.nn.functional.normalize(torch.randn(16, 3, dtype=torch.float64), dim=-1)
    # Y(R x) = D(R) Y(x) for e3nn's degree-1 (xyz) and degree-2 harmonics.
    torch.testing.assert_close(sh_rotation_matrix(R1, 1) @ x[..., None], (R1 @ x[..., None]))
    Y_rot = e3nn_degree2_harmonics((R1 @ x[..., None])[..., 0])
    torch.testing.assert_close((sh_rotation_matrix(R1, 2) @ e3nn_degree2_harmonics(x)[..., None])[
        ..., 0], Y_rot)  # fmt: skip
    # D(R1 R2) = D(R1) D(R2), D orthogonal.
    D12 = sh_rotation_matrix(R1 @ R2, 2)
    torch.testing.assert_close(D12, sh_rotation_matrix(R1, 2) @ sh_rotation_matrix(R2, 2))
    torch.testing.assert_close(D12 @ D12.transpose(-1, -2), torch.eye(5, dtype=torch.float64)
                               .expand(16, 5, 5))  # fmt: skip
    # Band 0 is untouched; the identity leaves everything unchanged.
    sh = torch.randn(16, 3, 9, dtype=torch.float64)
    rotated = rotate_sh(sh, R1[:, None])
    torch.testing.assert_close(rotated[..., 0], sh[..., 0])
    torch.testing.assert_close(rotate_sh(sh, torch.eye(3, dtype=torch.float64)), sh)


def test_rotate_sh_rejects_unsupported_sizes():
    with pytest.raises(ValueError, match="SH coefficients"):
        rotate_sh(torch.zeros(2, 16), torch.eye(3))


@pytest.mark.parametrize("case", INTERMEDIATE_CASES)
def test_rotate_sh_reproduces_official_world_harmonics(reference, case):
    """sh_camera (official, before rotation) rotated by each Gaussian's c2w = world harmonics."""
    inter = np.load(reference / f"{case}_intermediates.npz")
    expected = np.load(reference / f"{case}_expected.npz")
    inputs = np.load(reference / f"{case}_inputs.npz")
    height, width = inputs["image"].shape[-2:]
    index = inter["gaussian_adapter@sh_camera#n"]
    view = torch.from_numpy(index // (height * width)).long()
    R_world_cam = torch.from_numpy(inputs["extrinsics"])[0, view, :3, :3]  # [n, 3, 3]
    sh_camera = torch.from_numpy(inter["gaussian_adapter@sh_camera"])[0]  # [n, 3, 9]
    harmonics = rotate_sh(sh_camera, R_world_cam[:, None])
    target = torch.from_numpy(expected["harmonics"][0][index])
    assert len(index) > 100
    torch.testing.assert_close(harmonics, target, atol=1e-4, rtol=0)
    # Much tighter in fact: float32 rounding only.
    assert (harmonics - target).abs().max() < 1e-6


@pytest.mark.parametrize("case", INTERMEDIATE_CASES)
def test_covariance_reproduces_official(reference, case):
    """Covariance from the dumped scales and quaternions, rotated to the world frame."""
    inter = np.load(reference / f"{case}_intermediates.npz")
    expected = np.load(reference / f"{case}_expected.npz")
    inputs = np.load(reference / f"{case}_inputs.npz")
    height, width = inputs["image"].shape[-2:]
    index = inter["gaussian_adapter@cov_camera#n"]
    cov_cam = covariance_from_scale_rotation(
        torch.from_numpy(expected["scales"][0][index]),
        torch.from_numpy(expected["rotations"][0][index]),
    )
    torch.testing.assert_close(
        cov_cam, torch.from_numpy(inter["gaussian_adapter@cov_camera"][0]), atol=1e-9, rtol=1e-4
    )
    view = torch.from_numpy(index // (height * width)).long()
    R_world_cam = torch.from_numpy(inputs["extrinsics"])[0, view, :3, :3]
    torch.testing.assert_close(
        rotate_covariance(cov_cam, R_world_cam),
        torch.from_numpy(expected["covariances"][0][index]),
        atol=1e-9,
        rtol=1e-4,
    )
