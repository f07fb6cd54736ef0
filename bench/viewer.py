"""Viewer benchmark: time to a ready scene, unprojection throughput, bytes per point, memory.

Cases
  small: 2 context views at 256x256 through the real pipeline -- ``load_scene("synthetic:0")``,
         a randomly initialised *reduced-width* DepthSplat (``tests/viewer_scenes.py``
         ``tiny_checkpoint`` widths, 256x256 input; timings are not those of a released model),
         ``build_layers``, then the viewer app on a live viser server.
  large: 6 context views at 512x960 with a *synthetic* Prediction (the model on CPU would take
         minutes): the synthetic scene's GT depth is the final depth, the coarse inverse depth
         is the truth minus a smooth residual.

  maps:  the bundled demo (2 views at 128x128) through ``dsviewer --demo``'s own start-up, the
         map grid open: the time of a frustum-map switch and the bytes a connected client
         receives for it, in the same run as colour-mode switches (ratios printed), with the
         load average (timings on a shared machine follow it).

Run: ``python bench/viewer.py [--case small|large|both|maps]``. Prints one table per case;
asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import resource
import socket
import sys
import time
import tracemalloc
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))


def rss_mib() -> float:
    """Peak resident set size of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings(views: int, height: int, width: int):
    from dsviewer.dataset.preprocess import PreprocessSettings

    return PreprocessSettings(image_shape=(height, width), near=0.5, far=100.0,
                              num_context_views=views)  # fmt: skip


def synthetic_prediction(scene):
    """A Prediction with exact final depth (the GT) and a known smooth residual."""
    import torch

    from dsviewer.model.types import Prediction

    ctx = scene.context
    V = ctx.num_views
    H, W = ctx.image_shape
    gt = ctx.depth.clamp(min=0.5, max=100.0)  # [V, H, W]
    u = torch.linspace(-1, 1, W)[None, None, :]
    residual = 0.01 * u * torch.linspace(0.5, 1.5, V)[:, None, None]  # [V, 1, W]
    residual = residual.expand(V, H, W).contiguous()
    h, w = H // 4, W // 4
    return Prediction(
        coarse_inv_depth=1.0 / gt - residual,
        mono_inv_residual=residual,
        final_depth=gt,
        confidence=torch.rand(V, h, w),
        match_probs=torch.rand(V, 2, h, w),
        inv_depth_candidates=torch.rand(V, 2, h, w),
        near=ctx.near,
        far=ctx.far,
    )


def bytes_per_point(server) -> tuple[int, int]:
    """(points, serialized bytes) of every point cloud in the server's outgoing buffer."""
    import msgspec
    from viser import _messages

    buffer = server._websock_server._broadcast_buffer
    points = size = 0
    with buffer.buffer_lock:
        messages = list(buffer.message_from_id.values())
    for message in messages:
        if isinstance(message, _messages.PointCloudMessage):
            points += message.props.points.shape[0]
            size += len(msgspec.msgpack.encode(message.as_serializable_dict()))
    return points, size


def run_case(name: str, views: int, height: int, width: int, use_model: bool) -> dict:
    import viser

    from dsviewer.dataset import load_scene
    from dsviewer.viewer.gui.app import ViewerApp
    from dsviewer.viewer.layers import build_layers
    from dsviewer.viewer.session.loaded import run_prediction

    gc.collect()
    start = time.perf_counter()
    scene = load_scene("synthetic:0", settings=settings(views, height, width),
                       context=list(range(0, 4 * views, 4)))  # fmt: skip
    t_scene = time.perf_counter() - start
    if use_model:
        from viewer_scenes import tiny_checkpoint

        from dsviewer.model import load_model, predict

        model = load_model(tiny_checkpoint(), config=None)
        def predict_fn(views):
            return predict(model, views.context)

        source = "tiny random-weight model"
    else:
        predict_fn = synthetic_prediction
        source = "synthetic Prediction"
    loaded = run_prediction(scene, predict_fn)
    # Unprojection throughput, measured on its own (coarse + final + GT maps).
    reps = 3
    t0 = time.perf_counter()
    for _ in range(reps):
        build_layers(scene, loaded.prediction)
    t_unproject = (time.perf_counter() - t0) / reps
    pixels = views * height * width * (3 if scene.context.depth is not None else 2)

    server = viser.ViserServer(host="127.0.0.1", port=free_port(), verbose=False)
    app = ViewerApp(server, scene_specs=["synthetic:0"])
    tracemalloc.start()  # only here: it slows every allocation (numpy buffers are traced)
    t0 = time.perf_counter()
    app.show(loaded)
    t_show = time.perf_counter() - t0
    ready = time.perf_counter() - start
    points, size = bytes_per_point(server)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    # Memory across scene switches: show the same-sized scene again several times.
    rss = [current_rss_mib()]
    switch_seconds = []
    for _ in range(4):
        again = run_prediction(scene, predict_fn)
        t0 = time.perf_counter()
        app.show(again)
        switch_seconds.append(time.perf_counter() - t0)
        gc.collect()
        rss.append(current_rss_mib())
    server.stop()
    return {
        "case": f"{name}: {views} views {height}x{width} ({source})",
        "scene ready (s)": f"{ready:.2f}",
        "  load_scene / predict / show (s)":
            f"{t_scene:.2f} / {loaded.seconds['predict']:.2f} / {t_show:.2f}",
        "show on a scene switch, median (s)": f"{sorted(switch_seconds)[1]:.2f}",
        "unprojection (Mpx/s)": f"{pixels / t_unproject / 1e6:.1f}",
        "points sent (default budget)": f"{points:,}",
        "bytes per point (msgpack)": f"{size / max(points, 1):.2f}",
        "tracemalloc peak in show (MiB)": f"{traced_peak / 2**20:.0f}",
        "ru_maxrss so far (MiB)": f"{rss_mib():.0f}",
        "RSS over 5 scene switches (MiB)": " ".join(f"{r:.0f}" for r in rss),
    }


class WireBytes:
    """A websocket client of the viser server that counts the bytes it receives."""

    def __init__(self, port: int) -> None:
        import threading

        import viser
        from websockets.sync.client import connect

        self.total = 0
        self.last = time.monotonic()
        self.socket = connect(f"ws://127.0.0.1:{port}", max_size=None,
                              subprotocols=[f"viser-v{viser.__version__}"])  # fmt: skip
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):  # the bench or the server closed it
            for message in self.socket:
                self.total += len(message)
                self.last = time.monotonic()

    def settled(self, quiet: float = 0.5, timeout: float = 30.0) -> int:
        """The bytes received so far, once nothing came for ``quiet`` seconds from now."""
        start = time.monotonic()
        deadline = start + timeout
        while time.monotonic() - max(self.last, start) < quiet and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.total


def switches(wire: WireBytes, choose, keys: list[str]) -> tuple[list[float], list[int]]:
    """Seconds each ``choose(key)`` takes in the server and the bytes the client gets for it
    (a map's pictures are computed once per colouring: the first switch to a map computes them,
    later ones to it reuse them)."""
    seconds, sizes = [], []
    for key in keys:
        before = wire.settled()
        t0 = time.perf_counter()
        choose(key)
        seconds.append(time.perf_counter() - t0)
        sizes.append(wire.settled() - before)
    return seconds, sizes


def run_maps() -> dict:
    import io
    import os
    import statistics

    from rich.console import Console

    from dsviewer.viewer import cli
    from dsviewer.viewer.maps import MAPS

    port = free_port()
    options = cli.parse(["--demo", "--port", str(port), "--device", "cpu"])
    server, app = cli.start(options, console=Console(file=io.StringIO()))
    assert app.wait_idle(120)
    wire = WireBytes(port)
    before = wire.settled(quiet=1.0)
    t0 = time.perf_counter()
    app.maps_panel.grid.value = True  # what the checkbox does (framing needs a page: none here)
    grid_open = time.perf_counter() - t0
    grid_bytes = wire.settled() - before
    maps = ["final_depth", "confidence", "residual", "coarse_depth", "gt_error", "photo"] * 2
    modes = ["depth", "confidence", "residual", "gt_error", "rgb"] * 2

    def choose_map(key: str) -> None:
        app.maps_panel.picture.value = MAPS[key].label

    rounds = {"map": ([], []), "colour": ([], [])}
    for _ in range(2):  # alternating, so that both see the same load
        for name, choose, keys in (("map", choose_map, maps),
                                   ("colour", app.colours_panel.set_mode, modes)):  # fmt: skip
            seconds, sizes = switches(wire, choose, keys)
            rounds[name][0].extend(seconds)
            rounds[name][1].extend(sizes)
    load = os.getloadavg()
    wire.socket.close()
    app.close()
    server.stop()
    map_s, map_b = (statistics.median(x) for x in rounds["map"])
    first = statistics.median(rounds["map"][0][: len(set(maps))])  # not yet cached
    colour_s, colour_b = (statistics.median(x) for x in rounds["colour"])
    return {
        "case": "maps: demo, 2 views 128x128, map grid open (2 x 5 maps)",
        "open the grid (s, bytes received)": f"{grid_open:.3f}, {grid_bytes:,}",
        "map switch, median (s)": f"{map_s:.3f}",
        "  first switch to each map, median (s)": f"{first:.3f}",
        "colour-mode switch, median (s)": f"{colour_s:.3f}",
        "  ratio map / colour (time)": f"{map_s / colour_s:.2f}",
        "bytes received per map switch, median": f"{map_b:,.0f}",
        "bytes received per colour switch, median": f"{colour_b:,.0f}",
        "  ratio map / colour (bytes)": f"{map_b / max(colour_b, 1):.2f}",
        "switches timed (each kind)": str(len(rounds["map"][0])),
        "load average 1/5/15 min": " ".join(f"{x:.1f}" for x in load),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("small", "large", "both", "maps"), default="both")
    args = parser.parse_args()
    rows = []
    if args.case in ("small", "both"):
        rows.append(run_case("small", 2, 256, 256, use_model=True))
    if args.case in ("large", "both"):
        rows.append(run_case("large", 6, 512, 960, use_model=False))
    if args.case == "maps":
        rows.append(run_maps())
    for row in rows:
        print()
        for key, value in row.items():
            print(f"{key:<38} {value}")


if __name__ == "__main__":
    main()
