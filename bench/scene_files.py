"""What scene.glb and recording.rrd add to an export: each export file's write time, same run.

    python bench/scene_files.py [--scene synthetic_7_0000] [--rounds 5]

The bundled demo model runs once on a demo scene (2 views, 128 x 128); the analysis, the target
render and metrics.json's numbers are computed once (every file reads them from the caches, as in
``dsviewer export``, where recording.rrd and metrics.json share the numbers). Then every file of
:data:`~dsviewer.viewer.export.EXPORT_FILES` is written ``--rounds`` times into a temporary
folder, the order rotated each round so that no file always runs on a warm or a cold cache; the
median per file is reported, and the export's total without and with scene.glb and
recording.rrd. Prints the load average: the machine is shared.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tyro


@dataclass
class BenchConfig:
    scene: str = "synthetic_7_0000"
    """A bundled demo scene key."""
    rounds: int = 5
    """Times each file is written; the median is reported."""


def main(config: BenchConfig) -> None:
    from dsviewer.viewer.assets import demo_checkpoint, demo_data_root
    from dsviewer.viewer.export import EXPORT_FILES, ExportSettings, export_inputs
    from dsviewer.viewer.export.layout import GLB_FILE, RERUN_FILE
    from dsviewer.viewer.session.model import ModelSession
    from dsviewer.viewer.session.specs import RunSpec, SessionSettings

    session = ModelSession(demo_checkpoint(), SessionSettings(data_root=(demo_data_root(),),
                                                              device="cpu"))  # fmt: skip
    run = RunSpec(session.checkpoint, units="user")
    loaded = session.run(session.views(config.scene, run), run=run)
    settings = ExportSettings(rerun=True)
    inputs = export_inputs(loaded, settings)
    assert loaded.targets is not None  # rendered once, here
    inputs.metrics()  # computed once here too (recording.rrd and metrics.json share it)
    files = [f for f in EXPORT_FILES if f.available(inputs)]
    seconds: dict[str, list[float]] = {f.name: [] for f in files}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as folder:
        for round_number in range(config.rounds):
            shift = round_number % len(files)
            for file in files[shift:] + files[:shift]:
                path = Path(folder) / file.name
                start = time.perf_counter()
                file.write(inputs, path)
                seconds[file.name].append(time.perf_counter() - start)
                sizes[file.name] = path.stat().st_size
                path.unlink()
    median = {name: statistics.median(times) for name, times in seconds.items()}
    print(f"scene {config.scene}, {loaded.layers.num_views} views at "
          f"{loaded.layers.image_shape[1]} x {loaded.layers.image_shape[0]}, {config.rounds} "
          f"rounds, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    print(f"  {'file':<16} {'median s':>9} {'min s':>7} {'max s':>7} {'MB':>6}")
    for name, times in seconds.items():
        print(f"  {name:<16} {median[name]:9.3f} {min(times):7.3f} {max(times):7.3f} "
              f"{sizes[name] / 1e6:6.2f}")  # fmt: skip
    base = sum(s for name, s in median.items() if name not in (GLB_FILE, RERUN_FILE))
    print(f"  all files without {GLB_FILE} and {RERUN_FILE}: {base:.3f} s; with {GLB_FILE}: "
          f"{base + median[GLB_FILE]:.3f} s (+{100 * median[GLB_FILE] / base:.0f}%); with both: "
          f"{base + median[GLB_FILE] + median[RERUN_FILE]:.3f} s "
          f"(+{100 * (median[GLB_FILE] + median[RERUN_FILE]) / base:.0f}%)")  # fmt: skip
    print(f"  (not counted: the model run {loaded.seconds.get('predict', float('nan')):.2f} s, "
          "the analysis, the target render and the metrics, shared by every file)")


if __name__ == "__main__":
    main(tyro.cli(BenchConfig))
