"""The exported point PLYs as CloudCompare reads them: every scalar property is a scalar field.

CloudCompare (Debian package ``cloudcompare``, run headless under ``xvfb-run``) imports a PLY's
``scalar_<name>`` properties as scalar fields; here it opens each file and saves it as ASCII
with a header, and the header and values are compared with what the file holds.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData
from viewer_scenes import make_loaded

from dsviewer.viewer.export import export_scene

pytestmark = pytest.mark.skipif(
    shutil.which("CloudCompare") is None or shutil.which("xvfb-run") is None,
    reason="CloudCompare or xvfb-run missing (./setup.sh --test installs them)",
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cloudcompare") / "export"
    export_scene(out, make_loaded(2, 16, 24))
    return out


def cloudcompare_ascii(ply: Path, folder: Path) -> tuple[list[str], np.ndarray]:
    """``(column names, values [N, C])`` of ``ply`` as CloudCompare exports it."""
    copy = folder / ply.name
    shutil.copy(ply, copy)
    subprocess.run(["xvfb-run", "-a", "CloudCompare", "-SILENT", "-O", str(copy),
                    "-C_EXPORT_FMT", "ASC", "-ADD_HEADER", "-SAVE_CLOUDS"], cwd=folder,
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    (ascii_file,) = folder.glob(f"{copy.stem}_*.asc")
    lines = ascii_file.read_text().splitlines()
    names = lines[0].lstrip("/").split()
    return names, np.array([[float(x) for x in line.split()] for line in lines[1:]])


@pytest.mark.parametrize(
    "name", ["residual.ply", "final.ply", "coarse.ply", "gt.ply", "comparison.ply"]
)
def test_every_scalar_property_is_a_cloudcompare_scalar_field(exported, tmp_path, name):
    vertex = PlyData.read(str(exported / name))["vertex"].data
    scalars = [p for p in vertex.dtype.names if p.startswith("scalar_")]
    assert scalars
    names, values = cloudcompare_ascii(exported / name, tmp_path)
    assert names[:6] == ["X", "Y", "Z", "R", "G", "B"]
    assert sorted(names[6:]) == sorted(p.removeprefix("scalar_") for p in scalars)
    assert len(values) == len(vertex)
    for column, field in enumerate(names[6:], start=6):
        np.testing.assert_allclose(
            values[:, column],
            vertex[f"scalar_{field}"].astype(np.float64),
            rtol=1e-6,
            atol=1e-9,
            equal_nan=True,
            err_msg=field,
        )
