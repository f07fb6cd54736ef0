"""PLY write/read speed: our writer and reader against open3d, trimesh and plyfile, same run.

    python bench/export.py [--scenes 2] [--points 1000000] [--gaussians 100000] [--repeats 3]

First, the stage times (``dsviewer.stage_timer.STAGES``) of whole ``dsviewer export`` runs of
the demo model on ``--scenes`` generated scenes, as their ``metrics.json`` records them, beside
the wall time of each scene measured here.

Point clouds carry float32 xyz, uchar rgb and three float32 properties; every library writes
binary little-endian PLY and must keep the custom properties. Every reader loads the file that
ours wrote, fully into memory (plyfile memory-maps, so its array is copied out; its ``mmap=False``
path is ~40 s per file here). Times are the best of ``--repeats``
runs; files go to a temporary directory. The 3DGS rows include, for ours, the covariance
factorization (write) and rebuild (read); plyfile only moves the bytes.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from dsviewer.io.gaussian_factors import covariance_from_scales_rotations
from dsviewer.io.ply import (
    gaussian_ply_property_names,
    read_gaussians_ply,
    read_ply_vertices,
    read_point_cloud_ply,
    write_gaussians_ply,
    write_point_cloud_ply,
)
from dsviewer.model.types import Gaussians


@dataclass
class BenchConfig:
    scenes: int = 2
    """Scenes of a whole ``dsviewer export`` (demo model, generated scenes) whose stage times
    (``metrics.json``) are printed first; 0 skips it."""
    points: int = 1_000_000
    """Points in the point-cloud benchmark."""
    gaussians: int = 100_000
    """Gaussians (SH degree 3) in the 3DGS benchmark."""
    repeats: int = 3
    """Runs per measurement; the fastest is reported."""


def best_of(repeats: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def point_cloud_writers(points, colors, properties) -> dict[str, Callable[[Path], None]]:
    import open3d as o3d
    import plyfile
    import trimesh

    def ours(path: Path) -> None:
        write_point_cloud_ply(path, points, colors, properties)

    def open3d_tensor(path: Path) -> None:
        cloud = o3d.t.geometry.PointCloud(o3d.core.Tensor(points))
        cloud.point["colors"] = o3d.core.Tensor(colors)
        for name, values in properties.items():
            cloud.point[name] = o3d.core.Tensor(values[:, None])
        o3d.t.io.write_point_cloud(str(path), cloud)

    def trimesh_writer(path: Path) -> None:
        mesh = trimesh.Trimesh(vertices=points, faces=None, process=False,
                               vertex_colors=colors, vertex_attributes=properties)  # fmt: skip
        mesh.export(path)

    def plyfile_writer(path: Path) -> None:
        fields = [(axis, "<f4") for axis in "xyz"] + [(c, "u1") for c in ("red", "green", "blue")]
        table = np.empty(len(points), dtype=fields + [(n, "<f4") for n in properties])
        for i, axis in enumerate("xyz"):
            table[axis] = points[:, i]
        for i, channel in enumerate(("red", "green", "blue")):
            table[channel] = colors[:, i]
        for name, values in properties.items():
            table[name] = values
        plyfile.PlyData([plyfile.PlyElement.describe(table, "vertex")]).write(str(path))

    return {"ours": ours, "open3d (tensor API)": open3d_tensor, "trimesh": trimesh_writer,
            "plyfile": plyfile_writer}  # fmt: skip


def point_cloud_readers() -> dict[str, Callable[[Path], object]]:
    import open3d as o3d
    import plyfile
    import trimesh

    return {
        "ours": read_point_cloud_ply,
        "open3d (tensor API)": lambda path: o3d.t.io.read_point_cloud(str(path)),
        "trimesh": lambda path: trimesh.load(path, process=False),
        "plyfile": lambda path: np.array(plyfile.PlyData.read(str(path))["vertex"].data),
    }


def random_gaussians(n: int) -> Gaussians:
    generator = torch.Generator().manual_seed(0)
    scales = torch.exp(torch.rand(n, 3, generator=generator, dtype=torch.float64) * 4 - 6)
    quats = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    return Gaussians(
        means=torch.randn(1, n, 3, generator=generator),
        covariances=covariance_from_scales_rotations(scales, quats).float()[None],
        harmonics=torch.randn(1, n, 3, 16, generator=generator),
        opacities=torch.rand(1, n, generator=generator),
    )


def depthsplat_style_export(gaussians: Gaussians, path: Path) -> None:
    """The official exporter's recipe: build rows with ``list(map(tuple, ...))``, plyfile write.

    Given the same attribute columns as ours (factorization excluded), to time only the writing.
    """
    import plyfile

    columns = read_ply_vertices(path.with_name("ours.ply"))
    names = gaussian_ply_property_names(3)
    attributes = np.stack([columns[name] for name in names], axis=-1)
    elements = np.empty(len(attributes), dtype=[(name, "f4") for name in names])
    elements[:] = list(map(tuple, attributes))
    plyfile.PlyData([plyfile.PlyElement.describe(elements, "vertex")]).write(str(path))


def print_table(title: str, rows: list[tuple[str, str, float]], size_mb: float) -> None:
    print(f"\n{title}  ({size_mb:.1f} MB file)")
    print(f"  {'library':<34} {'op':<6} {'seconds':>9} {'MB/s':>8} {'vs ours':>9}")
    ours = {op: seconds for name, op, seconds in rows if name == "ours"}
    for name, op, seconds in rows:
        ratio = seconds / ours[op] if op in ours else float("nan")
        print(f"  {name:<34} {op:<6} {seconds:9.3f} {size_mb / seconds:8.0f} {ratio:8.2f}x")


def export_stages(scenes: int) -> None:
    """Stage seconds of ``dsviewer export`` per scene (metrics.json) and each scene's wall time
    (between the library's per-scene callbacks; the first scene's includes the model load)."""
    from dsviewer.stage_timer import STAGE_NAMES
    from dsviewer.viewer.assets import demo_checkpoint
    from dsviewer.viewer.export import ExportSettings
    from dsviewer.viewer.export.batch import export_scenes
    from dsviewer.viewer.session.specs import RunSpec, SessionSettings

    with tempfile.TemporaryDirectory() as tmp:
        folders = {f"synthetic:{seed}": Path(tmp) / f"scene{seed}" for seed in range(scenes)}
        done = [time.perf_counter()]
        export_scenes(folders, [RunSpec(demo_checkpoint())], SessionSettings(), ExportSettings(),
                      written=lambda key, runs: done.append(time.perf_counter()))  # fmt: skip
        stages = [json.loads((folder / "metrics.json").read_text())["stages"]["seconds"]
                  for folder in folders.values()]  # fmt: skip
    print(f"\ndsviewer export, demo model: seconds per stage (metrics.json), load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"  {'stage':<16}" + "".join(f"{'scene ' + str(i + 1):>10}" for i in range(scenes)))
    for name in STAGE_NAMES:
        print(f"  {name:<16}" + "".join(f"{s[name]:>10.3f}" for s in stages))
    print(f"  {'sum':<16}" + "".join(f"{sum(s.values()):>10.3f}" for s in stages))
    walls = [b - a for a, b in itertools.pairwise(done)]
    print(f"  {'wall':<16}" + "".join(f"{w:>10.3f}" for w in walls) + "   (scene 1: + model load)")


def main(config: BenchConfig) -> None:
    rng = np.random.default_rng(0)
    n = config.points
    points = (rng.standard_normal((n, 3)) * 10).astype(np.float32)
    colors = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    properties = {name: rng.random(n).astype(np.float32) for name in ("depth", "conf", "residual")}
    print(
        f"torch {torch.__version__}, numpy {np.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    if config.scenes > 0:
        export_stages(config.scenes)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows: list[tuple[str, str, float]] = []
        for name, write in point_cloud_writers(points, colors, properties).items():
            path = folder / f"{name.split()[0]}.ply"
            rows.append((name, "write", best_of(config.repeats, lambda w=write, p=path: w(p))))
        ours_path = folder / "ours.ply"
        for name, read in point_cloud_readers().items():
            rows.append((name, "read", best_of(config.repeats, lambda r=read: r(ours_path))))
        check = read_point_cloud_ply(folder / "open3d.ply")
        assert np.array_equal(check.properties["residual"], properties["residual"])
        size = ours_path.stat().st_size / 1e6
        print_table(f"Point cloud, {n:,} points: xyz + rgb + 3 float properties", rows, size)

        gaussians = random_gaussians(config.gaussians)
        splats = folder / "ours.ply"
        rows = [
            ("ours", "write",
             best_of(config.repeats, lambda: write_gaussians_ply(splats, gaussians))),
            ("ours", "read", best_of(config.repeats, lambda: read_gaussians_ply(splats))),
        ]  # fmt: skip
        # On a loaded machine torch's intra-op threads contend with other processes; show both.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        rows += [
            ("ours, torch 1 thread", "write",
             best_of(config.repeats, lambda: write_gaussians_ply(splats, gaussians))),
            ("ours, torch 1 thread", "read",
             best_of(config.repeats, lambda: read_gaussians_ply(splats))),
        ]  # fmt: skip
        torch.set_num_threads(threads)
        rows += [
            ("plyfile, DepthSplat-style rows", "write",
             best_of(config.repeats,
                     lambda: depthsplat_style_export(gaussians, folder / "ds.ply"))),
        ]  # fmt: skip
        import plyfile

        rows.append(("plyfile", "read", best_of(
            config.repeats, lambda: np.array(plyfile.PlyData.read(str(splats))["vertex"].data)
        )))  # fmt: skip
        size = splats.stat().st_size / 1e6
        print_table(
            f"3DGS PLY, {config.gaussians:,} Gaussians, SH degree 3 (62 float properties); "
            "ours includes eigendecomposition / covariance rebuild",
            rows,
            size,
        )


if __name__ == "__main__":
    main(tyro.cli(BenchConfig))
