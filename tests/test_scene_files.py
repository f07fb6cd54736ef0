"""``scene.glb`` and ``recording.rrd`` on the hand-built tilted-plane scene (3 views, 24 x 32, a
target view, GT, a scale-2 ``world_from_model``), read back by independent readers.

One export for the module (about 2 s). The Rerun recording is read with Rerun's own reader
(``rerun.chunk.RrdReader``); the GLB with trimesh and with a few lines of numpy that parse its
two chunks per the glTF 2.0 specification. Every expected number comes from ``final.ply`` (read
by plyfile) and ``cameras.json``, or from the specification's axes, not from ``viewer/``.
"""

from __future__ import annotations

import io
import json
import struct
import sys
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
import pytest
from analysis_scenes import build_case, similarity
from plyfile import PlyData

from dsviewer.viewer.export import ExportSettings, export_scene
from dsviewer.viewer.session.loaded import run_prediction

rr = pytest.importorskip("rerun", reason="the rerun extra (pip install 'dsviewer[rerun]')")

VIEWS = 3
LAYERS = ("coarse", "final", "residual", "gt", "centers")  # the plane has no SfM points
MAPS = ("coarse_depth", "final_depth", "gt_depth", "residual", "confidence", "gt_error",
        "consistency", "inconsistent", "clamp", "depth_edge", "flying_pixel")  # the plane's
GLTF_FLIP = np.array([1.0, -1.0, -1.0])  # glTF: +Y up, cameras look down -Z (OpenCV: +Y down, +Z)


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    case = build_case((1.0, 1.1, 1.0), clamp_pixels=True, world_from_model=similarity(2.0))
    folder = tmp_path_factory.mktemp("scene_files") / "plane"
    export_scene(folder, run_prediction(case.scene, lambda _scene: case.prediction),
                 ExportSettings(rerun=True))  # fmt: skip
    return folder


def _ply(path: Path) -> dict[str, np.ndarray]:
    vertex = PlyData.read(str(path))["vertex"].data
    return {name: np.asarray(vertex[name]) for name in vertex.dtype.names}


def _xyz(ply: dict) -> np.ndarray:
    return np.stack([ply[a] for a in "xyz"], axis=-1)


# --- the Rerun recording ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recording(out) -> dict[str, dict]:
    """``entity path -> {component: first row's value}`` of every chunk, via Rerun's reader."""
    entities: dict[str, dict] = {}
    for chunk in rr.chunk.RrdReader(out / "recording.rrd").stream().to_chunks():
        batch = chunk.to_record_batch()
        row = entities.setdefault(chunk.entity_path, {})
        for name in batch.schema.names:
            if not name.startswith("rerun."):
                row[name] = batch.column(name).to_pylist()[0]
    return entities


def _image(component: dict, kind: str, dtype: str) -> np.ndarray:
    (shape,) = component[f"{kind}:format"]
    (buffer,) = component[f"{kind}:buffer"]
    pixels = np.frombuffer(bytes(buffer), dtype=dtype)
    return pixels.reshape(shape["height"], shape["width"], -1)


def test_recording_holds_every_entity(out, recording):
    expected = {"/world", "/metrics", "/world/target/0", "/world/target/0/photo",
                "/world/target/0/render", "/world/target/0/depth"}  # fmt: skip
    expected |= {f"/world/points/{layer}" for layer in LAYERS}
    for v in range(VIEWS):
        view = f"/world/context/{v}"
        expected |= {view, f"{view}/photo", *(f"{view}/maps/{m}" for m in MAPS),
                     *(f"{view}/depth/{k}" for k in ("coarse", "final", "gt"))}  # fmt: skip
    assert set(recording) - {"/__properties"} == expected  # nothing the scene lacks (SfM)
    (text,) = recording["/metrics"]["TextDocument:text"]
    written = json.loads((out / "metrics.json").read_text())
    assert json.loads(text) == {key: value for key, value in written.items() if key != "files"}
    assert "recording.rrd" in written["files"] and "scene.glb" in written["files"]


def test_recording_depth_and_cameras_match_final_ply(out, recording):
    """Each view's final depth image equals final.ply's depths at the same pixels, and that
    view's Pinhole and Transform3D project final.ply's points onto those pixels' centres."""
    final = _ply(out / "final.ply")
    cameras = json.loads((out / "cameras.json").read_text())["context"]
    xyz = _xyz(final).astype(np.float64)
    for v in range(VIEWS):
        entity = recording[f"/world/context/{v}"]
        depth = _image(recording[f"/world/context/{v}/depth/final"], "DepthImage", "<f4")[..., 0]
        assert recording[f"/world/context/{v}/depth/final"]["DepthImage:meter"] == [1.0]
        mine = final["scalar_view"] == v
        u, row = final["scalar_u"][mine], final["scalar_v"][mine]
        np.testing.assert_array_equal(depth[row, u], final["scalar_depth"][mine])
        assert depth.shape == tuple(cameras[v]["image_size"])
        # z-depth of the PLY's points in the camera of cameras.json (independent of the writer)
        T = np.array(cameras[v]["T_world_cam"])
        z = (xyz[mine] - T[:3, 3]) @ T[:3, 2]
        np.testing.assert_allclose(depth[row, u], z, rtol=1e-5)
        # Rerun stores 3x3 matrices column-major.
        K = np.array(entity["Pinhole:image_from_camera"][0]).reshape(3, 3, order="F")
        R = np.array(entity["Transform3D:mat3x3"][0]).reshape(3, 3, order="F")
        t = np.array(entity["Transform3D:translation"][0])
        np.testing.assert_allclose(R, T[:3, :3], atol=1e-6)
        camera = (xyz[mine] - t) @ R  # world -> camera (RDF, as Pinhole:camera_xyz says)
        pixels = camera @ K.T
        np.testing.assert_allclose(pixels[:, 0] / pixels[:, 2], u + 0.5, atol=1e-3)
        np.testing.assert_allclose(pixels[:, 1] / pixels[:, 2], row + 0.5, atol=1e-3)


def test_recording_points_carry_the_ply_values(out, recording):
    for layer in ("final", "gt"):
        ply = _ply(out / f"{layer}.ply")
        entity = recording[f"/world/points/{layer}"]
        np.testing.assert_array_equal(np.array(entity["Points3D:positions"], np.float32), _xyz(ply))
        for name in ("scalar_depth", "scalar_view", "scalar_u", "scalar_v", "scalar_gt_error"):
            np.testing.assert_array_equal(np.array(entity[name]), ply[name])
    final_rgb = np.stack([_ply(out / "final.ply")[c] for c in ("red", "green", "blue")], -1)
    colors = np.array(recording["/world/points/final"]["Points3D:colors"], dtype=np.uint32)
    np.testing.assert_array_equal(colors >> 24, final_rgb[:, 0])  # packed 0xRRGGBBAA
    photo = _image(recording["/world/context/0/photo"], "Image", "u1")
    mine = _ply(out / "final.ply")["scalar_view"] == 0
    ply = _ply(out / "final.ply")
    np.testing.assert_array_equal(photo[ply["scalar_v"][mine], ply["scalar_u"][mine]],
                                  final_rgb[mine])  # fmt: skip


# --- scene.glb --------------------------------------------------------------------------------


def _glb(path: Path) -> tuple[dict, bytes]:
    """The JSON and BIN chunks of a GLB file (glTF 2.0, section "GLB File Format")."""
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    chunks, offset = {}, 12
    while offset < length:
        size, kind = struct.unpack_from("<I4s", data, offset)
        chunks[kind] = data[offset + 8: offset + 8 + size]
        offset += 8 + size
    return json.loads(chunks[b"JSON"]), chunks[b"BIN\x00"]


def _accessor(document: dict, binary: bytes, index: int) -> np.ndarray:
    accessor = document["accessors"][index]
    view = document["bufferViews"][accessor["bufferView"]]
    dtype = {5126: "<f4", 5121: "u1"}[accessor["componentType"]]
    width = {"VEC3": 3, "VEC4": 4}[accessor["type"]]
    start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    count = accessor["count"] * width
    return np.frombuffer(binary, dtype=dtype, count=count, offset=start).reshape(-1, width)


def test_glb_points_are_final_ply_in_gltf_axes_for_two_readers(out):
    import trimesh

    document, binary = _glb(out / "scene.glb")
    nodes = {node["name"]: node for node in document["nodes"]}
    assert set(LAYERS) <= set(nodes)
    assert all("matrix" not in n and "rotation" not in n for n in nodes.values())  # baked axes
    loaded = trimesh.load(out / "scene.glb")
    for layer in ("final", "gt"):
        ply = _ply(out / f"{layer}.ply")
        expected = _xyz(ply) * GLTF_FLIP
        (primitive,) = document["meshes"][nodes[layer]["mesh"]]["primitives"]
        assert primitive["mode"] == 0  # POINTS
        positions = _accessor(document, binary, primitive["attributes"]["POSITION"])
        np.testing.assert_array_equal(positions, expected)
        colors = _accessor(document, binary, primitive["attributes"]["COLOR_0"])
        np.testing.assert_array_equal(colors[:, :3], np.stack([ply[c] for c in ("red", "green",
                                                                              "blue")], -1))
        np.testing.assert_array_equal(np.asarray(loaded.geometry[layer].vertices, np.float32),
                                      expected)  # fmt: skip


def test_glb_frustums_are_lines_from_each_camera_centre(out):
    document, binary = _glb(out / "scene.glb")
    cameras = json.loads((out / "cameras.json").read_text())
    nodes = {node["name"]: node for node in document["nodes"]}
    for kind in ("context", "target"):
        for i, camera in enumerate(cameras[kind]):
            node = nodes[f"{kind} camera {i} (frame {camera['frame']})"]
            (primitive,) = document["meshes"][node["mesh"]]["primitives"]
            assert primitive["mode"] == 1  # LINES
            vertices = _accessor(document, binary, primitive["attributes"]["POSITION"])
            T = np.array(camera["T_world_cam"])
            centre = T[:3, 3] * GLTF_FLIP
            apex = np.linalg.norm(vertices - centre, axis=1) < 1e-4
            assert apex.sum() == 4  # one end of each of the four rays to the corners
            # The far ends lie in front of the camera, on its optical axis side.
            forward = (vertices[~apex] * GLTF_FLIP - T[:3, 3]) @ T[:3, 2]
            assert (forward > 0).all()


def test_gltf_axes_turn_opencv_up_and_forward_into_gltf_ones():
    """glTF: +Y up, a camera looks down -Z. In OpenCV axes a point ahead of the camera is +Z and
    one above the image centre is -Y."""
    from dsviewer.geometry.projection import GLTF_FROM_OPENCV, opencv_to_gltf

    ahead, above = opencv_to_gltf(np.array([[0.0, 0.0, 5.0], [0.0, -1.0, 5.0]]))
    np.testing.assert_array_equal(ahead, [0.0, 0.0, -5.0])
    assert above[1] == 1.0
    assert np.linalg.det(np.array(GLTF_FROM_OPENCV)) == 1.0  # a rotation: handedness kept


# --- without Rerun ------------------------------------------------------------------------------


def test_rerun_flag_without_rerun_says_how_to_install(tmp_path, monkeypatch):
    from dsviewer.viewer.export_cli import main

    monkeypatch.setitem(sys.modules, "rerun", None)  # "import rerun" raises ImportError
    stderr = io.StringIO()
    with redirect_stderr(stderr):
        status = main(["--demo", "--rerun", "--out", str(tmp_path / "out")])
    assert status == 2
    lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'dsviewer[rerun]'" in lines[0], lines
    assert not (tmp_path / "out").exists()
