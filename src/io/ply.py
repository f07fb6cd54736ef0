"""PLY files: point clouds with arbitrary per-vertex properties, and 3DGS Gaussian splats.

Writing builds one numpy structured array (little endian) and writes the header and the array in
one go, atomically (``dsviewer.io.atomic``). Reading parses the header and maps the ``vertex``
element
with ``numpy.fromfile``; binary little/big endian and ASCII files from other tools are accepted.

3DGS layout (original 3DGS code, SuperSplat, most viewers), all ``float32``, in this order:
``x y z``, ``nx ny nz`` (zeros), ``f_dc_0..2``, ``f_rest_0..`` (channel-major: all higher-order
coefficients of red, then green, then blue), ``opacity`` (logit), ``scale_0..2`` (natural log of
the linear scales), ``rot_0..3`` (unit quaternion ``w x y z``, world frame). Our ``harmonics
[..., 3, d_sh]`` are already channel-major in the 3DGS basis order (see
``dsviewer.geometry.spherical_harmonics``), so ``f_dc = harmonics[..., 0]`` and ``f_rest`` is
``harmonics[..., 1:]`` flattened. (The official DepthSplat exporter writes only the DC band and
rotates everything into the first context camera's frame; we keep the world frame and all bands.)
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dsviewer.errors import InputError
from dsviewer.geometry.transforms import matrix_to_quaternion_wxyz, quaternion_xyzw_to_matrix
from dsviewer.io.atomic import atomic_write
from dsviewer.io.gaussian_factors import (
    covariance_from_scales_rotations,
    scales_rotations_from_covariance,
)
from dsviewer.model.types import Gaussians

PathLike = str | os.PathLike[str]

# PLY scalar type names (both spellings) -> numpy kind+size.
_PLY_TO_NUMPY = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_NUMPY_TO_PLY = {
    "i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort",
    "i4": "int", "u4": "uint", "f4": "float", "f8": "double",
}  # fmt: skip
_COLOR_NAMES = ("red", "green", "blue")
_POSITION_NAMES = ("x", "y", "z")
_OPACITY_EPS = 1e-7  # opacities are clamped to [eps, 1 - eps] so their logits are finite


class PlyFormatError(InputError):
    """A PLY file that this reader cannot interpret (see the message for what was found)."""


class PlyInputError(ValueError):
    """Arrays handed to a PLY writer that do not describe a valid vertex list."""


@dataclass
class PointCloud:
    """Points with optional 8-bit colours and named per-point properties."""

    points: np.ndarray  # [N, 3] float32
    colors: np.ndarray | None = None  # [N, 3] uint8
    properties: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [N]


# --------------------------------------------------------------------------- generic vertices


def _header(num_vertices: int, dtype: np.dtype, comments: tuple[str, ...]) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {c}" for c in comments]
    lines.append(f"element vertex {num_vertices}")
    for name in dtype.names or ():
        kind = dtype.fields[name][0]
        lines.append(f"property {_NUMPY_TO_PLY[kind.str[1:]]} {name}")
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def _write_body(file, vertices: np.ndarray) -> None:
    file.write(memoryview(vertices).cast("B"))


def write_ply_vertices(
    path: PathLike, vertices: np.ndarray, comments: tuple[str, ...] = ()
) -> None:
    """Write a structured array ``[N]`` as the ``vertex`` element of a binary PLY, atomically.

    Every field must be a scalar of a PLY type (int8..uint32, float32, float64); the byte order
    is made little endian.
    """
    if vertices.dtype.names is None or vertices.ndim != 1:
        raise PlyInputError(
            "vertices must be a 1-D numpy structured array (one field per property)."
        )
    fields = []
    for name in vertices.dtype.names:
        kind = vertices.dtype.fields[name][0]
        if kind.shape != () or kind.str[1:] not in _NUMPY_TO_PLY or not re.fullmatch(r"\S+", name):
            raise PlyInputError(
                f"property {name!r} has dtype {kind}; PLY vertex properties must be named without "
                "spaces and be scalars of int8/uint8/int16/uint16/int32/uint32/float32/float64."
            )
        fields.append((name, kind.newbyteorder("<")))
    little = np.dtype(fields)
    if vertices.dtype != little:
        vertices = vertices.astype(little)
    vertices = np.ascontiguousarray(vertices)
    for comment in comments:
        if "\n" in comment or "\r" in comment:
            raise PlyInputError(f"PLY comments must be single lines, got {comment!r}.")
    with atomic_write(path) as file:
        file.write(_header(len(vertices), little, comments))
        _write_body(file, vertices)


@dataclass
class _Element:
    name: str
    count: int
    properties: list[tuple[str, str]]  # (name, numpy kind) of scalar properties
    has_lists: bool


def _parse_header(path: Path) -> tuple[str, list[_Element], int]:
    with open(path, "rb") as file:
        head = file.read(1 << 16)
        while b"end_header" not in head:
            more = file.read(1 << 16)
            if not more:
                raise PlyFormatError(f"{path}: no 'end_header' line; this is not a PLY file.")
            head += more
    if not head.startswith(b"ply"):
        raise PlyFormatError(f"{path}: does not start with 'ply'; this is not a PLY file.")
    end = head.index(b"end_header")
    body_start = head.index(b"\n", end) + 1
    fmt = ""
    elements: list[_Element] = []
    for raw in head[:end].decode("ascii", errors="replace").splitlines():
        words = raw.split()
        if not words or words[0] in ("comment", "obj_info", "ply"):
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            elements.append(_Element(words[1], int(words[2]), [], False))
        elif words[0] == "property" and elements:
            if words[1] == "list":
                elements[-1].has_lists = True
            elif words[1] in _PLY_TO_NUMPY:
                elements[-1].properties.append((words[2], _PLY_TO_NUMPY[words[1]]))
            else:
                raise PlyFormatError(f"{path}: unknown PLY property type {words[1]!r}.")
    if fmt not in ("binary_little_endian", "binary_big_endian", "ascii"):
        raise PlyFormatError(f"{path}: unsupported PLY format {fmt!r}.")
    return fmt, elements, body_start


def read_ply_vertices(path: PathLike) -> np.ndarray:
    """The ``vertex`` element of a PLY file as a structured array ``[N]`` (file's field order)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PLY file not found: {path}")
    fmt, elements, offset = _parse_header(path)
    names = [e.name for e in elements]
    if "vertex" not in names:
        raise PlyFormatError(f"{path}: has no 'vertex' element (elements: {names}).")
    vertex = elements[names.index("vertex")]
    if vertex.has_lists:
        raise PlyFormatError(f"{path}: list properties in the vertex element are not supported.")
    before = elements[: names.index("vertex")]
    if any(e.has_lists for e in before):
        raise PlyFormatError(f"{path}: an element with list properties precedes 'vertex'.")
    order = ">" if fmt == "binary_big_endian" else "<"
    dtype = np.dtype([(name, order + kind) for name, kind in vertex.properties])
    if fmt == "ascii":
        skip = sum(e.count for e in before)
        with open(path, "rb") as file:
            file.seek(offset)
            for _ in range(skip):
                file.readline()
            table = np.loadtxt(file, dtype=np.float64, max_rows=vertex.count, ndmin=2)
        result = np.empty(vertex.count, dtype=dtype.newbyteorder("<"))
        for column, name in enumerate(dtype.names or ()):
            result[name] = table[:, column]
        return result
    offset += sum(e.count * np.dtype([(n, k) for n, k in e.properties]).itemsize for e in before)
    data = np.fromfile(path, dtype=dtype, count=vertex.count, offset=offset)
    if len(data) != vertex.count:
        raise PlyFormatError(
            f"{path}: header announces {vertex.count} vertices but the file holds {len(data)}; "
            "it is truncated."
        )
    return data if order == "<" else data.astype(dtype.newbyteorder("<"))


# --------------------------------------------------------------------------- point clouds


def _numpy(array) -> np.ndarray:
    if isinstance(array, Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def write_point_cloud_ply(
    path: PathLike,
    points,  # [N, 3]
    colors=None,  # [N, 3] uint8, or float in [0, 1]
    properties: dict[str, object] | None = None,  # name -> [N]
    comments: tuple[str, ...] = (),
) -> None:
    """Write points (float32 ``x y z``), optional ``uchar red green blue`` and extra properties.

    Properties keep their dtype if it is a PLY type (float32/int32/uint8/...); bool becomes
    uint8 and float16 becomes float32. Arrays may be numpy or torch (CPU or not).
    """
    points = _numpy(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise PlyInputError(f"points must be [N, 3], got shape {points.shape}.")
    n = len(points)
    columns: list[tuple[str, np.ndarray]] = [
        (name, points[:, i].astype(np.float32, copy=False))
        for i, name in enumerate(_POSITION_NAMES)
    ]
    if colors is not None:
        colors = _numpy(colors)
        if colors.shape != (n, 3):
            raise PlyInputError(f"colors must be [N, 3] = [{n}, 3], got shape {colors.shape}.")
        if colors.dtype != np.uint8:
            colors = np.clip(np.rint(colors.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
        columns += [(name, colors[:, i]) for i, name in enumerate(_COLOR_NAMES)]
    taken = {name for name, _ in columns}
    for name, values in (properties or {}).items():
        values = _numpy(values)
        if values.shape != (n,) or name in taken:
            raise PlyInputError(
                f"property {name!r} must be a new name with shape [N] = [{n}], got shape "
                f"{values.shape}{' (name already used)' if name in taken else ''}."
            )
        if values.dtype == np.bool_:
            values = values.astype(np.uint8)
        elif values.dtype == np.float16:
            values = values.astype(np.float32)
        columns.append((name, values))
        taken.add(name)
    vertices = np.empty(
        n, dtype=[(name, values.dtype.newbyteorder("<")) for name, values in columns]
    )
    for name, values in columns:
        vertices[name] = values
    write_ply_vertices(path, vertices, comments)


def read_point_cloud_ply(path: PathLike) -> PointCloud:
    """Read a point cloud written by us, open3d, trimesh, plyfile, CloudCompare, ...

    Colours stored as floats are scaled by 255 to uint8; every vertex property other than
    ``x y z red green blue`` (``alpha``, normals, scalars) is returned in ``properties``.
    """
    vertices = read_ply_vertices(path)
    names = vertices.dtype.names or ()
    if not set(_POSITION_NAMES) <= set(names):
        raise PlyFormatError(f"{path}: vertex element has no x, y, z (properties: {names}).")
    points = np.stack([vertices[n].astype(np.float32, copy=False) for n in _POSITION_NAMES], -1)
    colors = None
    if set(_COLOR_NAMES) <= set(names):
        colors = np.stack([vertices[n] for n in _COLOR_NAMES], axis=-1)
        if colors.dtype != np.uint8:
            scale = 255.0 if colors.dtype.kind == "f" else 1.0
            colors = np.clip(np.rint(colors * scale), 0, 255).astype(np.uint8)
    skip = set(_POSITION_NAMES) | (set(_COLOR_NAMES) if colors is not None else set())
    properties = {n: np.ascontiguousarray(vertices[n]) for n in names if n not in skip}
    return PointCloud(points=points, colors=colors, properties=properties)


# --------------------------------------------------------------------------- 3DGS splats


def gaussian_ply_property_names(sh_degree: int) -> list[str]:
    """The 3DGS vertex properties, in file order, for harmonics of ``sh_degree``."""
    num_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return [
        "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2",
        *[f"f_rest_{i}" for i in range(num_rest)],
        "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
    ]  # fmt: skip


def _world_factors(
    gaussians: Gaussians, batch_index: int, camera_rotations: Tensor | None
) -> tuple[Tensor, Tensor]:
    """World-frame linear scales ``[N, 3]`` and wxyz quaternions ``[N, 4]`` (float64)."""
    if camera_rotations is None:
        return scales_rotations_from_covariance(gaussians.covariances[batch_index])
    if gaussians.scales is None or gaussians.rotations_xyzw is None:
        raise PlyInputError(
            "camera_rotations was given but the Gaussians carry no camera-frame scales / "
            "rotations_xyzw; omit camera_rotations to factor the world covariances instead."
        )
    n = gaussians.means.shape[1]
    if camera_rotations.shape[-2:] != (3, 3) or camera_rotations.shape[-3] not in (1, n):
        raise PlyInputError(
            f"camera_rotations must be [N, 3, 3] (or [1, 3, 3]) rotation parts of T_world_cam, "
            f"with N = {n}; got {tuple(camera_rotations.shape)}."
        )
    R_cam = quaternion_xyzw_to_matrix(gaussians.rotations_xyzw[batch_index].double())
    R_world = camera_rotations.double().cpu() @ R_cam.cpu()
    return gaussians.scales[batch_index].double().cpu(), matrix_to_quaternion_wxyz(R_world)


def write_gaussians_ply(
    path: PathLike,
    gaussians: Gaussians,
    batch_index: int = 0,
    camera_rotations: Tensor | None = None,  # [N, 3, 3] c2w rotation of each Gaussian's view
) -> None:
    """Write one batch element of ``gaussians`` (world frame) as a standard 3DGS PLY.

    World scales and rotations come from an eigendecomposition of the world covariances, or --
    if ``camera_rotations`` is given -- from the camera-frame ``scales`` / ``rotations_xyzw``
    rotated by it (``R_world = R_c2w R_cam``), which is exact where the covariance is degenerate.
    """
    means = gaussians.means[batch_index].detach().cpu()
    n = len(means)
    harmonics = gaussians.harmonics[batch_index].detach().cpu()  # [N, 3, d_sh]
    d_sh = harmonics.shape[-1]
    sh_degree = math.isqrt(d_sh) - 1
    if harmonics.shape[:2] != (n, 3) or (sh_degree + 1) ** 2 != d_sh:
        raise PlyInputError(f"harmonics must be [N, 3, (deg+1)^2], got {tuple(harmonics.shape)}.")
    scales, rotations = _world_factors(gaussians, batch_index, camera_rotations)
    opacity = gaussians.opacities[batch_index].detach().cpu().double()
    logit = torch.logit(opacity.clamp(_OPACITY_EPS, 1.0 - _OPACITY_EPS))
    columns = torch.cat(
        (
            means.double(),
            torch.zeros(n, 3, dtype=torch.float64),
            harmonics[:, :, 0].double(),
            harmonics[:, :, 1:].reshape(n, 3 * (d_sh - 1)).double(),  # channel-major f_rest
            logit[:, None],
            scales.detach().cpu().log(),
            rotations.detach().cpu(),
        ),
        dim=-1,
    ).to(torch.float32)
    names = gaussian_ply_property_names(sh_degree)
    assert columns.shape == (n, len(names)), (columns.shape, len(names))
    vertices = np.ascontiguousarray(columns.numpy()).view(np.dtype([(m, "<f4") for m in names]))
    write_ply_vertices(path, vertices[:, 0])


def read_gaussians_ply(path: PathLike) -> Gaussians:
    """Read a 3DGS PLY into ``Gaussians`` (B = 1, float32, world frame).

    Covariances are rebuilt in float64 from ``exp(scale_*)`` and the normalized ``rot_*``;
    opacities are ``sigmoid(opacity)``. ``scales`` / ``rotations_xyzw`` (camera-frame factors)
    are left ``None``: a PLY has no notion of the producing camera.
    """
    vertices = read_ply_vertices(path)
    names = set(vertices.dtype.names or ())
    num_rest = sum(1 for name in names if name.startswith("f_rest_"))
    d_sh = 1 + num_rest // 3
    sh_degree = math.isqrt(d_sh) - 1
    expected = gaussian_ply_property_names(sh_degree)
    missing = [name for name in expected if name not in names and name not in ("nx", "ny", "nz")]
    if missing or (sh_degree + 1) ** 2 != d_sh or num_rest % 3:
        raise PlyFormatError(
            f"{path}: not a 3DGS splat PLY (missing {missing[:6]}, {num_rest} f_rest_* "
            "properties; expected x y z f_dc_0..2 f_rest_* opacity scale_0..2 rot_0..3)."
        )

    def stack(keys: list[str]) -> Tensor:
        return torch.from_numpy(np.stack([vertices[k].astype(np.float64) for k in keys], -1))

    n = len(vertices)
    means = stack(["x", "y", "z"])
    dc = stack(["f_dc_0", "f_dc_1", "f_dc_2"])  # [N, 3]
    rest_keys = [f"f_rest_{i}" for i in range(num_rest)]
    rest = stack(rest_keys) if rest_keys else torch.zeros(n, 0, dtype=torch.float64)
    rest = rest.reshape(n, 3, d_sh - 1)
    harmonics = torch.cat((dc[:, :, None], rest), dim=-1)
    scales = stack(["scale_0", "scale_1", "scale_2"]).exp()
    rotations = stack(["rot_0", "rot_1", "rot_2", "rot_3"])
    covariances = covariance_from_scales_rotations(scales, rotations)
    opacities = torch.sigmoid(stack(["opacity"])[:, 0])
    return Gaussians(
        means=means.float()[None],
        covariances=covariances.float()[None],
        harmonics=harmonics.float()[None],
        opacities=opacities.float()[None],
    )
