"""PLY point clouds and 3DGS splats: interoperability with open3d, trimesh, plyfile; round trips."""

from __future__ import annotations

import math

import numpy as np
import plyfile
import pytest
import torch

from dsviewer.io import ply
from dsviewer.io.gaussian_factors import covariance_from_scales_rotations
from dsviewer.io.ply import (
    PlyFormatError,
    gaussian_ply_property_names,
    read_gaussians_ply,
    read_point_cloud_ply,
    write_gaussians_ply,
    write_point_cloud_ply,
)
from dsviewer.model.types import Gaussians


@pytest.fixture
def cloud():
    rng = np.random.default_rng(3)
    n = 1000
    return {
        "points": (rng.standard_normal((n, 3)) * 10).astype(np.float32),
        "colors": rng.integers(0, 256, (n, 3), dtype=np.uint8),
        "properties": {
            "confidence": rng.random(n).astype(np.float32),
            "view": rng.integers(0, 7, n).astype(np.int32),
            "clamped": rng.integers(0, 2, n).astype(np.uint8),
        },
    }


def _check(points, colors, properties, cloud, exact_positions=True):
    if exact_positions:
        np.testing.assert_array_equal(np.asarray(points, np.float32), cloud["points"])
    np.testing.assert_array_equal(np.asarray(colors)[:, :3], cloud["colors"])
    for name, values in cloud["properties"].items():
        got = np.asarray(properties[name]).reshape(-1)
        assert got.dtype == values.dtype, name
        np.testing.assert_array_equal(got, values)


def test_point_cloud_written_by_us_reads_the_same_in_open3d_trimesh_plyfile(tmp_path, cloud):
    path = tmp_path / "cloud.ply"
    write_point_cloud_ply(path, cloud["points"], cloud["colors"], cloud["properties"])

    import open3d as o3d

    pcd = o3d.t.io.read_point_cloud(str(path))
    attributes = {name: pcd.point[name].numpy() for name in cloud["properties"]}
    _check(pcd.point["positions"].numpy(), pcd.point["colors"].numpy(), attributes, cloud)

    import trimesh

    mesh = trimesh.load(path, process=False)
    raw = mesh.metadata["_ply_raw"]["vertex"]["data"]
    _check(mesh.vertices, mesh.colors, {n: raw[n] for n in cloud["properties"]}, cloud)

    vertex = plyfile.PlyData.read(str(path))["vertex"]
    assert [p.name for p in vertex.properties] == [
        "x",
        "y",
        "z",
        "red",
        "green",
        "blue",
        "confidence",
        "view",
        "clamped",
    ]
    data = vertex.data
    _check(
        np.stack([data["x"], data["y"], data["z"]], -1),
        np.stack([data["red"], data["green"], data["blue"]], -1),
        data,
        cloud,
    )

    ours = read_point_cloud_ply(path)
    _check(ours.points, ours.colors, ours.properties, cloud)
    assert list(ours.properties) == list(cloud["properties"])


def test_reader_accepts_files_from_open3d_trimesh_and_plyfile(tmp_path, cloud):
    import open3d as o3d
    import trimesh

    pcd = o3d.t.geometry.PointCloud(o3d.core.Tensor(cloud["points"]))
    pcd.point["colors"] = o3d.core.Tensor(cloud["colors"])
    for name, values in cloud["properties"].items():
        pcd.point[name] = o3d.core.Tensor(values[:, None])
    o3d.t.io.write_point_cloud(str(tmp_path / "o3d.ply"), pcd)
    read = read_point_cloud_ply(tmp_path / "o3d.ply")
    _check(read.points, read.colors, read.properties, cloud)

    mesh = trimesh.Trimesh(
        vertices=cloud["points"],
        faces=None,
        process=False,
        vertex_colors=cloud["colors"],
        vertex_attributes=cloud["properties"],
    )
    mesh.export(tmp_path / "trimesh.ply")
    read = read_point_cloud_ply(tmp_path / "trimesh.ply")
    # trimesh stores positions as float64 from float32 input: the values are still exact.
    _check(read.points, read.colors, read.properties, cloud)

    dtype = [
        ("x", "f4"),
        ("y", "f4"),
        ("z", "f4"),
        ("red", "u1"),
        ("green", "u1"),
        ("blue", "u1"),
        ("confidence", "f4"),
        ("view", "i4"),
        ("clamped", "u1"),
    ]
    table = np.empty(len(cloud["points"]), dtype=dtype)
    for i, axis in enumerate("xyz"):
        table[axis] = cloud["points"][:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        table[channel] = cloud["colors"][:, i]
    for name, values in cloud["properties"].items():
        table[name] = values
    faces = plyfile.PlyElement.describe(
        np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))]), "face"
    )
    for kind, text, order in (("ascii", True, "="), ("big", False, ">")):
        element = plyfile.PlyElement.describe(table, "vertex")
        plyfile.PlyData([element, faces], text=text, byte_order=order).write(
            str(tmp_path / f"{kind}.ply")
        )
        read = read_point_cloud_ply(tmp_path / f"{kind}.ply")
        _check(read.points, read.colors, read.properties, cloud)


def _random_gaussians(n: int, d_sh: int) -> Gaussians:
    scales = torch.exp(torch.empty(n, 3, dtype=torch.float64).uniform_(-6.0, -1.0))
    quats = torch.randn(n, 4, dtype=torch.float64)
    covariances = covariance_from_scales_rotations(scales, quats)
    return Gaussians(
        means=torch.randn(1, n, 3),
        covariances=covariances.float()[None],
        harmonics=torch.randn(1, n, 3, d_sh),
        opacities=torch.rand(1, n) * 0.98 + 0.01,
    )


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.double(), b.double()
    return (a - b).norm(dim=(-1, -2)) / b.norm(dim=(-1, -2))


@pytest.mark.parametrize("sh_degree", [0, 1, 2, 3])
def test_gaussian_ply_round_trip_and_standard_layout(tmp_path, sh_degree):
    d_sh = (sh_degree + 1) ** 2
    gaussians = _random_gaussians(500, d_sh)
    path = tmp_path / "splats.ply"
    write_gaussians_ply(path, gaussians)

    vertex = plyfile.PlyData.read(str(path))["vertex"]
    names = [p.name for p in vertex.properties]
    assert names == gaussian_ply_property_names(sh_degree)
    assert len(names) == 14 + 3 * d_sh and all(p.val_dtype == "f4" for p in vertex.properties)
    data = vertex.data
    # f_rest is channel-major: red's higher bands first, then green's, then blue's.
    if d_sh > 1:
        np.testing.assert_array_equal(
            data[f"f_rest_{d_sh - 1}"], gaussians.harmonics[0, :, 1, 1].numpy()
        )
    np.testing.assert_array_equal(data["f_dc_2"], gaussians.harmonics[0, :, 2, 0].numpy())
    np.testing.assert_allclose(
        1 / (1 + np.exp(-data["opacity"].astype(np.float64))),
        gaussians.opacities[0].numpy(),
        rtol=1e-6,
    )
    quats = np.stack([data[f"rot_{i}"] for i in range(4)], -1).astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(quats, axis=-1), 1.0, atol=1e-6)
    assert (quats[:, 0] >= 0).all()

    read = read_gaussians_ply(path)
    torch.testing.assert_close(read.means, gaussians.means, rtol=0, atol=0)
    torch.testing.assert_close(read.harmonics, gaussians.harmonics, rtol=0, atol=0)
    torch.testing.assert_close(read.opacities, gaussians.opacities, rtol=1e-6, atol=1e-7)
    assert float(_relative_error(read.covariances[0], gaussians.covariances[0]).max()) < 1e-6


def test_gaussian_ply_from_camera_frame_factors_matches_covariance_path(tmp_path):
    n = 300
    gaussians = _random_gaussians(n, 4)
    scales = torch.exp(torch.empty(n, 3).uniform_(-5.0, -2.0))
    xyzw = torch.nn.functional.normalize(torch.randn(n, 4), dim=-1)
    angle = torch.rand(n) * 2 * math.pi
    camera_rotations = torch.zeros(n, 3, 3)  # c2w rotations about z, one per Gaussian
    camera_rotations[:, 0, 0], camera_rotations[:, 0, 1] = torch.cos(angle), -torch.sin(angle)
    camera_rotations[:, 1, 0], camera_rotations[:, 1, 1] = torch.sin(angle), torch.cos(angle)
    camera_rotations[:, 2, 2] = 1.0
    wxyz = torch.cat((xyzw[:, 3:], xyzw[:, :3]), -1)
    cov_cam = covariance_from_scales_rotations(scales.double(), wxyz.double())
    R = camera_rotations.double()
    gaussians.covariances = (R @ cov_cam @ R.transpose(-1, -2)).float()[None]
    gaussians.scales, gaussians.rotations_xyzw = scales[None], xyzw[None]

    write_gaussians_ply(tmp_path / "cam.ply", gaussians, camera_rotations=camera_rotations)
    write_gaussians_ply(tmp_path / "eig.ply", gaussians)
    from_cam = read_gaussians_ply(tmp_path / "cam.ply").covariances[0]
    from_eig = read_gaussians_ply(tmp_path / "eig.ply").covariances[0]
    assert float(_relative_error(from_cam, gaussians.covariances[0]).max()) < 1e-6
    assert float(_relative_error(from_eig, gaussians.covariances[0]).max()) < 1e-6
    data = plyfile.PlyData.read(str(tmp_path / "cam.ply"))["vertex"].data
    np.testing.assert_allclose(data["scale_0"], np.log(scales[:, 0].numpy()), rtol=1e-6)


def test_degenerate_covariances_write_finite_values(tmp_path):
    gaussians = _random_gaussians(4, 1)
    flat = torch.diag(torch.tensor([1e-2, 1e-2, 0.0]))
    gaussians.covariances[0, 0] = flat
    gaussians.covariances[0, 1] = torch.zeros(3, 3)
    gaussians.opacities[0, :2] = torch.tensor([0.0, 1.0])
    write_gaussians_ply(tmp_path / "g.ply", gaussians)
    data = plyfile.PlyData.read(str(tmp_path / "g.ply"))["vertex"].data
    for name in data.dtype.names:
        assert np.isfinite(data[name]).all(), name
    read = read_gaussians_ply(tmp_path / "g.ply")
    torch.testing.assert_close(read.covariances[0, 0], flat, atol=1e-9, rtol=1e-6)


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path, cloud, monkeypatch):
    path = tmp_path / "cloud.ply"
    write_point_cloud_ply(path, cloud["points"], cloud["colors"])
    before = path.read_bytes()

    def half_then_fail(file, vertices):
        file.write(vertices.tobytes()[: vertices.nbytes // 2])
        raise KeyboardInterrupt("simulated interruption mid-write")

    monkeypatch.setattr(ply, "_write_body", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        write_point_cloud_ply(path, cloud["points"][:10], cloud["colors"][:10])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cloud.ply"]


def test_reader_rejects_bad_files_with_clear_errors(tmp_path, cloud):
    with pytest.raises(FileNotFoundError):
        read_point_cloud_ply(tmp_path / "missing.ply")
    (tmp_path / "text.ply").write_text("hello\n")
    with pytest.raises(PlyFormatError, match="end_header"):
        read_point_cloud_ply(tmp_path / "text.ply")
    write_point_cloud_ply(tmp_path / "cut.ply", cloud["points"], cloud["colors"])
    data = (tmp_path / "cut.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(data[: len(data) - 100])
    with pytest.raises(PlyFormatError, match="truncated"):
        read_point_cloud_ply(tmp_path / "cut.ply")
    write_point_cloud_ply(tmp_path / "cloud.ply", cloud["points"], cloud["colors"])
    with pytest.raises(PlyFormatError, match="not a 3DGS"):
        read_gaussians_ply(tmp_path / "cloud.ply")
    with pytest.raises(ply.PlyInputError, match="shape"):
        write_point_cloud_ply(tmp_path / "x.ply", cloud["points"], properties={"a": np.ones(3)})


@pytest.mark.parametrize("sh_degree", [0, 3])
def test_an_empty_gaussian_set_writes_a_valid_ply(tmp_path, sh_degree):
    # All-NaN predictions leave nothing finite to export; the file must still be a valid PLY.
    write_gaussians_ply(tmp_path / "none.ply", _random_gaussians(0, (sh_degree + 1) ** 2))
    vertex = plyfile.PlyData.read(str(tmp_path / "none.ply"))["vertex"]
    assert vertex.count == 0
    assert [p.name for p in vertex.properties] == gaussian_ply_property_names(sh_degree)
    assert read_gaussians_ply(tmp_path / "none.ply").means.shape == (1, 0, 3)
