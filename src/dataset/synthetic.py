"""Seeded synthetic scenes with exact metric depth, written as DepthSplat chunks.

A scene is a closed room (textured walls, floor, ceiling) holding boxes, spheres and tilted
plates at several depths, seen by a camera that slides and turns slowly. Every pixel hits a
surface, so the ground-truth z-depth is known everywhere. Colours come from a solid (3-D)
procedural texture per object, so a surface point has the same colour in every view (plus
view-independent Lambert shading), which gives multi-view stereo something to match.

World axes follow the cameras (OpenCV): +X right, +Y down, +Z forward at frame 0.

    python -m dsviewer.dataset.synthetic --out DIR --scenes 4 --frames 24 --height 128 --width 128
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dsviewer.errors import SetupError
from dsviewer.geometry.projection import camera_rays, pixel_centers

from .chunks import ChunkExample, write_chunk, write_index

ROOM_MIN = np.array([-6.0, -3.0, -3.0])
ROOM_MAX = np.array([6.0, 2.0, 18.0])
JPEG_QUALITY = 95


@dataclass(frozen=True)
class SolidTexture:
    """Per-object procedural colouring of 3-D points."""

    colors: np.ndarray  # [3, 3] three RGB colours mixed by the pattern
    directions: np.ndarray  # [4, 3] wave vectors (include the frequency)
    phases: np.ndarray  # [4]
    checker: float  # checker cell size

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """``[N, 3]`` points to ``[N, 3]`` RGB in [0, 1]."""
        waves = np.sin(points @ self.directions.T + self.phases)  # [N, 4]
        a = 0.5 + 0.25 * (waves[:, 0] + waves[:, 1])
        b = 0.5 + 0.25 * (waves[:, 2] * waves[:, 3] + waves[:, 0] * waves[:, 3])
        cells = np.floor(points / self.checker).sum(axis=1) % 2  # [N]
        rgb = (self.colors[0] * a[:, None] + self.colors[1] * (1 - a[:, None])) * (
            0.65 + 0.35 * cells[:, None]
        )
        return np.clip(rgb * (0.7 + 0.3 * b[:, None]) + 0.25 * self.colors[2] * b[:, None], 0, 1)


def _open3d():
    """open3d, imported on first use (only the synthetic generator needs it)."""
    try:
        import open3d
    except ImportError:
        raise SetupError(
            "Synthetic scenes are ray-cast with open3d, which is not installed here. Install it "
            "with `pip install open3d-cpu` (or `open3d`), or load a dataset scene or a capture."
        ) from None
    return open3d


def random_texture(rng: np.random.Generator) -> SolidTexture:
    hues = rng.uniform(0, 1, 3)
    colors = np.stack([_hsv_to_rgb(h, rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0)) for h in hues])
    directions = rng.normal(size=(4, 3))
    directions *= (rng.uniform(2.0, 9.0, 4) / np.linalg.norm(directions, axis=1))[:, None]
    return SolidTexture(colors, directions, rng.uniform(0, 2 * np.pi, 4), rng.uniform(0.25, 0.8))


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)


def _rotation_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rotation_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


@dataclass
class SyntheticScene:
    """Geometry (open3d raycasting scene) plus one texture per geometry id."""

    raycaster: object  # o3d.t.geometry.RaycastingScene
    textures: list[SolidTexture]


def build_scene(rng: np.random.Generator) -> SyntheticScene:
    """A room with 3-5 boxes, 2-3 spheres and 1-2 tilted plates, placed 2.5-14 units ahead."""
    o3d = _open3d()
    mesh_api = o3d.t.geometry.TriangleMesh
    meshes = [mesh_api.create_box(*(ROOM_MAX - ROOM_MIN)).translate(ROOM_MIN)]

    def place(mesh, rotation: np.ndarray, center: np.ndarray):
        vertices = mesh.vertex.positions.numpy().astype(np.float64)
        vertices = (vertices - vertices.mean(axis=0)) @ rotation.T + center
        mesh.vertex.positions = o3d.core.Tensor(vertices.astype(np.float32))
        return mesh

    for _ in range(rng.integers(3, 6)):
        size = rng.uniform(0.5, 2.0, 3)
        center = np.array([rng.uniform(-3.5, 3.5), rng.uniform(-0.8, 1.0), rng.uniform(3, 14)])
        center[1] = min(center[1], ROOM_MAX[1] - size[1] / 2)  # rest on or float above the floor
        meshes.append(place(mesh_api.create_box(*size), _rotation_y(rng.uniform(0, np.pi)),
                            center))
    for _ in range(rng.integers(2, 4)):
        radius = rng.uniform(0.4, 1.1)
        center = np.array([rng.uniform(-3.5, 3.5), rng.uniform(-1.0, 0.8), rng.uniform(2.5, 12)])
        meshes.append(place(mesh_api.create_sphere(radius, 32), np.eye(3), center))
    for _ in range(rng.integers(1, 3)):
        plate = mesh_api.create_box(rng.uniform(1.5, 3.0), rng.uniform(1.0, 2.0), 0.05)
        rotation = _rotation_y(rng.uniform(-0.7, 0.7)) @ _rotation_x(rng.uniform(-0.4, 0.4))
        center = np.array([rng.uniform(-3, 3), rng.uniform(-1.5, 0.5), rng.uniform(5, 15)])
        meshes.append(place(plate, rotation, center))

    raycaster = o3d.t.geometry.RaycastingScene()
    for mesh in meshes:
        raycaster.add_triangles(mesh)
    return SyntheticScene(raycaster, [random_texture(rng) for _ in meshes])


CAMERA_WALL_MARGIN = 0.5
"""Closest a camera may come to a wall, floor or ceiling."""


def _share_inside_room(start: np.ndarray, step: np.ndarray) -> float:
    """Largest share of ``step`` (at most 1) that keeps ``start + share * step`` at least
    :data:`CAMERA_WALL_MARGIN` inside the room. Shortening, not redrawing, leaves every
    trajectory that already stays inside (every scene rendered before) unchanged."""
    low, high = ROOM_MIN + CAMERA_WALL_MARGIN, ROOM_MAX - CAMERA_WALL_MARGIN
    share = 1.0
    for axis in range(3):
        end = start[axis] + step[axis]
        if end > high[axis]:
            share = min(share, (high[axis] - start[axis]) / step[axis])
        elif end < low[axis]:
            share = min(share, (low[axis] - start[axis]) / step[axis])
    return share


def camera_trajectory(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """``[F, 4, 4]`` float64 camera-to-world poses: a slow slide of 1.2-2.5 units with a turn."""
    start = np.array([rng.uniform(-1, 1), rng.uniform(-0.6, 0.2), rng.uniform(-1.5, 0)])
    heading = rng.normal(size=3) * np.array([1.0, 0.15, 0.5])
    step = heading / np.linalg.norm(heading) * rng.uniform(1.2, 2.5)
    step *= _share_inside_room(start, step)
    yaw0, yaw1 = rng.uniform(-0.25, 0.25, 2)
    pitch = rng.uniform(-0.12, 0.12)
    poses = np.tile(np.eye(4), (num_frames, 1, 1))
    for i, t in enumerate(np.linspace(0, 1, num_frames)):
        poses[i, :3, :3] = _rotation_y(yaw0 + (yaw1 - yaw0) * t) @ _rotation_x(pitch)
        poses[i, :3, 3] = start + step * t
    return poses


def render_view(scene: SyntheticScene, K: np.ndarray, T_world_cam: np.ndarray, height: int,
                width: int) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast one view.

    Args:
        K: ``[3, 3]`` normalized intrinsics; T_world_cam: ``[4, 4]`` camera-to-world.

    Returns:
        ``(rgb uint8 [H, W, 3], depth float32 [H, W])`` with metric z-depth.
    """
    o3d = _open3d()
    coords = pixel_centers(height, width, dtype=torch.float64)
    rays_cam = camera_rays(coords, torch.from_numpy(K)).numpy().reshape(-1, 3)  # z = 1
    directions = rays_cam @ T_world_cam[:3, :3].T
    origins = np.broadcast_to(T_world_cam[:3, 3], directions.shape)
    rays = np.concatenate([origins, directions], axis=1).astype(np.float32)
    hits = scene.raycaster.cast_rays(o3d.core.Tensor(rays))
    # The direction has unit z in the camera, so the ray parameter is the z-depth.
    depth = hits["t_hit"].numpy().astype(np.float64)
    if not np.isfinite(depth).all():
        raise AssertionError("a ray escaped the closed room")
    points = origins + directions * depth[:, None]
    ids = hits["geometry_ids"].numpy()
    normals = hits["primitive_normals"].numpy().astype(np.float64)
    rgb = np.zeros_like(points)
    for gid in np.unique(ids):
        mask = ids == gid
        rgb[mask] = scene.textures[gid](points[mask])
    light = np.array([0.3, -0.8, -0.5]) / np.linalg.norm([0.3, -0.8, -0.5])
    rgb *= 0.6 + 0.4 * np.abs(normals @ light)[:, None]
    rgb8 = np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8).reshape(height, width, 3)
    return rgb8, depth.reshape(height, width).astype(np.float32)


def encode_jpeg(rgb: np.ndarray) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` to encoded JPEG bytes as a uint8 tensor, as chunks store them."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def scene_key(seed: int, scene: int) -> str:
    return f"synthetic_{seed}_{scene:04d}"


def render_example(seed: int, scene: int, num_frames: int, height: int, width: int,
                   key: str | None = None) -> ChunkExample:
    """One complete scene as a chunk example (JPEG images, camera rows, GT depths)."""
    rng = np.random.default_rng([seed, scene])
    world = build_scene(rng)
    poses = camera_trajectory(rng, num_frames)
    fx = 0.5 / np.tan(np.deg2rad(rng.uniform(55, 70)) / 2)  # horizontal field of view
    K = np.array([[fx, 0, 0.5], [0, fx * width / height, 0.5], [0, 0, 1]])
    K[:2, 2] += rng.uniform(-0.02, 0.02, 2)
    images, depths, cameras = [], [], []
    for pose in poses:
        rgb, depth = render_view(world, K, pose, height, width)
        images.append(encode_jpeg(rgb))
        depths.append(torch.from_numpy(depth))
        w2c = np.linalg.inv(pose)[:3].reshape(-1)
        cameras.append(np.concatenate([[K[0, 0], K[1, 1], K[0, 2], K[1, 2], 0.0, 0.0], w2c]))
    return ChunkExample(
        key=key or scene_key(seed, scene),
        url=f"synthetic://seed={seed}/scene={scene}",
        timestamps=torch.arange(num_frames, dtype=torch.int64),
        cameras=torch.tensor(np.stack(cameras), dtype=torch.float32),
        images=images,
        depths=depths,
    )


def write_dataset(out: Path, num_scenes: int, num_frames: int, height: int, width: int,
                  seed: int, scenes_per_chunk: int = 8, progress: bool = True) -> Path:
    """Render ``num_scenes`` scenes into ``out/*.torch`` plus ``out/index.json``."""
    from rich.progress import Progress

    out = Path(out)
    index: dict[str, str] = {}
    with Progress(disable=not progress) as bar:
        task = bar.add_task("rendering frames", total=num_scenes * num_frames)
        for first in range(0, num_scenes, scenes_per_chunk):
            examples = []
            for scene in range(first, min(first + scenes_per_chunk, num_scenes)):
                examples.append(render_example(seed, scene, num_frames, height, width))
                bar.advance(task, num_frames)
            name = f"{first // scenes_per_chunk:06d}.torch"
            write_chunk(out / name, examples)
            index.update({example.key: name for example in examples})
    return write_index(out, index)


@dataclass
class SyntheticArgs:
    """Render seeded synthetic scenes with exact depth into DepthSplat chunks."""

    out: Path
    """Output folder (chunks and index.json)."""
    scenes: int = 4
    """Number of scenes."""
    frames: int = 24
    """Frames per scene."""
    height: int = 128
    """Image height in pixels."""
    width: int = 128
    """Image width in pixels."""
    seed: int = 0
    """Base seed; scene i uses (seed, i)."""


def main() -> None:
    import tyro

    args = tyro.cli(SyntheticArgs)
    index = write_dataset(args.out, args.scenes, args.frames, args.height, args.width, args.seed)
    print(f"wrote {args.scenes} scenes; index: {index}")


if __name__ == "__main__":
    main()
