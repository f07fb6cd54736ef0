"""End to end in a real headless Chromium: ``dsviewer --demo`` (the bundled model), a page.

The viewer is started through the CLI's own code path (``viewer.cli.parse`` + ``viewer.cli.start``)
in this process, so the test can look at the server-side handles while Playwright drives the page.
Set ``DSVIEWER_SCREENSHOT=path.png`` to keep the screenshot (the README uses it).
"""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
    "--use-angle=swiftshader", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
VIEWPORT = {"width": 1280, "height": 800}
PANEL_LEFT = 930  # the GUI panel covers x >= this at 1280 px; the canvas is to its left
GUI_LABELS = ("Coarse MVS depth", "Final depth", "Mono residual", "Ground truth",
              "Gaussian splats", "Colour by", "Point size (px)", "Subsampling",
              "Min confidence (pct)", "Load scene", "Reset view")  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as playwright:
        # Playwright gives each launch its own throw-away profile (no --user-data-dir here).
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def viewer():
    """``dsviewer --demo`` through the CLI's own code path: the bundled model and scenes."""
    from rich.console import Console

    from viewer import cli

    port = free_port()
    log = io.StringIO()
    options = cli.parse(["--demo", "--port", str(port), "--device", "cpu"])
    server, app = cli.start(options, console=Console(file=log, width=200))
    assert "Scene ready" in log.getvalue() and f"http://127.0.0.1:{port}" in log.getvalue()
    yield app, f"http://127.0.0.1:{port}"
    server.stop()


def canvas_stats(png: bytes) -> tuple[float, float]:
    """(share of canvas pixels that differ from the background, their std) of a screenshot."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)
    canvas = pixels[150:, :PANEL_LEFT]  # below the notification toast, left of the panel
    background = np.median(canvas.reshape(-1, 3), axis=0)
    differs = np.abs(canvas - background).sum(axis=-1) > 30
    return float(differs.mean()), float(canvas.std())


def open_page(browser, url: str):
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url)
    page.get_by_label("Final depth", exact=True).wait_for(timeout=60_000)
    return page


def rendered_screenshot(page, timeout: float = 40.0) -> bytes:
    """A screenshot once the canvas shows something (software WebGL takes a few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        png = page.screenshot()
        share, spread = canvas_stats(png)
        if (share > 0.03 and spread > 10) or time.monotonic() > deadline:
            return png
        time.sleep(1.0)


def look_from_above_right(app) -> None:
    """Put each page's camera above, right of and behind context camera 0, looking a little to
    the right of its view centre, so that the scene sits left of the GUI panel."""
    state = app.state
    T = state.loaded.scene.context.extrinsics[0].double().numpy()  # camera-to-world (model frame)
    M = state.loaded.scene.world_from_model.matrix.numpy()
    centre, right, down, forward = T[:3, 3], T[:3, 0], T[:3, 1], T[:3, 2]
    depth = state.median_depth
    position = centre + depth * (-1.3 * forward + 1.0 * right - 0.7 * down)
    look_at = centre + depth * (forward + 0.5 * right)
    for client in app.server.get_clients().values():
        client.camera.position = M[:3, :3] @ position + M[:3, 3]
        client.camera.look_at = M[:3, :3] @ look_at + M[:3, 3]


def wait_until(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_page_shows_scene_and_controls_and_toggles_a_layer(browser, viewer):
    app, url = viewer
    page = open_page(browser, url)
    for label in GUI_LABELS:  # each control is on the page (raises on a 15 s timeout)
        page.get_by_text(label, exact=True).first.wait_for(timeout=15_000)
    png = rendered_screenshot(page)
    share, spread = canvas_stats(png)
    assert share > 0.03 and spread > 10, (share, spread)  # points and frustums, not a blank canvas

    # Toggle the residual layer in the page: the server-side layer node becomes visible and its
    # points are sent (first show).
    assert app.layer_frames["residual"].visible is False
    page.get_by_label("Mono residual", exact=True).click()
    assert wait_until(lambda: app.layer_frames["residual"].visible is True)
    assert wait_until(lambda: len(app.point_handles.get("residual", [])) == 2)
    page.get_by_label("Final depth", exact=True).click()
    assert wait_until(lambda: app.layer_frames["final"].visible is False)
    # The README shot: the residual alone, from above and beside the context cameras, without
    # the target frustums and the "software WebGL" toast.
    assert app.frustums["target"] and app.frustums["target"][0].visible
    page.get_by_label("Target cameras", exact=True).click()
    assert wait_until(lambda: not any(f.visible for f in app.frustums["target"]))
    page.add_style_tag(content=".mantine-Notifications-root { display: none !important; }")
    look_from_above_right(app)
    time.sleep(2)  # let the residual colours and the camera arrive and render
    residual_png = rendered_screenshot(page)
    target = os.environ.get("DSVIEWER_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(target).with_suffix(".tmp.png")
        tmp.write_bytes(residual_png)
        shutil.move(tmp, target)
    share, spread = canvas_stats(residual_png)
    assert share > 0.03 and spread > 10, (share, spread)

    # Switch to the next demo scene from the page: the model runs in the worker thread, nothing
    # restarts.
    from viewer.assets import demo_scene_keys

    first, second = demo_scene_keys()[:2]
    shown = app.scenes_shown
    assert app.state.loaded.scene.key == first
    first_frames = app.state.loaded.scene.context.index.tolist()
    # With several specs the scene box is a dropdown (a Mantine Select): open it, pick one.
    page.locator(f"input[value='{first}']").first.click()
    page.get_by_role("option", name=second, exact=True).click()
    assert wait_until(lambda: app.controls.scene_spec.value == second)
    page.get_by_role("button", name="Load scene").click()
    assert wait_until(lambda: app.scenes_shown > shown, timeout=90)
    assert app.state.loaded.scene.key == second
    assert app.layer_frames["residual"].visible is True  # the layer choice survives the switch
    assert len(app.view_toggles) == len(first_frames)
    page.get_by_text(second, exact=False).first.wait_for(timeout=20_000)
    page.close()


def test_server_keeps_serving_when_a_client_leaves_mid_upload(browser, viewer):
    from viewer_scenes import make_loaded

    app, url = viewer
    app.show(make_loaded(2, 192, 192))  # 74k points per layer, three layers: MBs to send
    for layer in ("coarse", "residual", "final"):
        app.controls.layer_toggles[layer].value = True
        app._on_layer_toggle(layer)
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url, wait_until="commit")
    time.sleep(0.3)
    page.close()  # the websocket drops while the scene streams
    page = open_page(browser, url)
    share, spread = canvas_stats(rendered_screenshot(page))
    assert share > 0.03 and spread > 10, (share, spread)
    assert app.state is not None and app.state.arrays.image_shape == (192, 192)
    page.close()


def test_clicking_a_point_fills_the_inspector_and_renders_at_the_camera(browser, viewer):
    """A real click in the WebGL canvas -> the server picks the nearest shown point -> the
    Inspector folder in the page shows that pixel; then "Render at my camera" renders the
    Gaussians at this page's camera."""
    from viewer_scenes import make_loaded

    app, url = viewer
    app.show(make_loaded(2, 48, 64))  # small: its analysis and CPU render take little time
    app.controls.layer_toggles["final"].value = True
    page = open_page(browser, url)
    rendered_screenshot(page)
    assert app.wait_idle(60)  # the analysis of the shown scene is done
    app.inspected = None
    for x, y in ((465, 450), (350, 400), (600, 350), (465, 250), (250, 550)):  # canvas spots
        page.mouse.click(x, y)
        if wait_until(lambda: app.inspected is not None, timeout=5):
            break
    report = app.inspected
    assert report is not None, "no click on the canvas reached a point"
    assert 0 <= report.view < len(app.view_toggles)
    page.get_by_text("Inspector", exact=True).first.click()  # the folder starts collapsed
    pixel = f"{report.view}, ({report.u}, {report.v})"
    page.get_by_text(pixel, exact=True).first.wait_for(timeout=15_000)
    depth = f"{report.final_depth * app.state.root_scale:.4g}"
    page.get_by_text(depth, exact=True).first.wait_for(timeout=15_000)
    target = os.environ.get("DSVIEWER_INSPECTOR_SCREENSHOT")
    if target:
        page.screenshot(path=target)

    if app.state.loaded.layers.gaussians is not None:
        app.last_camera_render = None
        page.get_by_text("Target views", exact=True).first.click()
        page.get_by_role("button", name="Render at my camera").click()
        assert wait_until(lambda: app.last_camera_render is not None, timeout=60)
        image = app.last_camera_render
        assert image.shape[0] == 256 and image.shape[2] == 3
    page.close()
