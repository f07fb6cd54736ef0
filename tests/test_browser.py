"""End to end in a real headless Chromium: ``dsviewer --demo`` (the bundled model), a page.

The viewer is started through the CLI's own code path (``dsviewer.viewer.cli.parse`` +
``dsviewer.viewer.cli.start``)
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
GUI_LABELS = ("Coarse MVS depth", "Final depth", "Mono residual", "Ground truth", "Colour by",
              "Consistency threshold", "Load scene", "Reset view", "View through camera",
              "Points", "Inspector", "Export")  # fmt: skip
PAYLOAD = '<img src=x onerror="window.__pwned=1">'  # a scene key or spec that tries to run script


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


def start_viewer(args: list[str]):
    """A viewer through the CLI's own code path; returns ``(server, app, url, log)``."""
    from rich.console import Console

    from dsviewer.viewer import cli

    port = free_port()
    log = io.StringIO()
    options = cli.parse([*args, "--port", str(port), "--device", "cpu"])
    server, app = cli.start(options, console=Console(file=log, width=200))
    assert "Scene ready" in log.getvalue() and f"http://127.0.0.1:{port}" in log.getvalue()
    return server, app, f"http://127.0.0.1:{port}", log.getvalue()


@pytest.fixture(scope="module")
def viewer():
    """``dsviewer --demo`` through the CLI's own code path: the bundled model and scenes."""
    server, app, url, _ = start_viewer(["--demo"])
    yield app, url
    app.close()
    server.stop()


def canvas_box(page) -> dict:
    return page.locator("canvas").first.bounding_box()


def canvas_center(page) -> tuple[float, float]:
    box = canvas_box(page)
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def canvas_stats(page, png: bytes) -> tuple[float, float]:
    """(share of canvas pixels that differ from the background, their std) of a screenshot."""
    from PIL import Image

    box = canvas_box(page)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)
    x0, y0 = int(box["x"]), int(box["y"]) + 60  # below the notification toast
    canvas = pixels[y0 : int(box["y"] + box["height"]), x0 : int(box["x"] + box["width"])]
    background = np.median(canvas.reshape(-1, 3), axis=0)
    differs = np.abs(canvas - background).sum(axis=-1) > 30
    return float(differs.mean()), float(canvas.std())


def open_page(browser, url: str):
    page = browser.new_page(viewport=VIEWPORT)
    page.errors = []  # console errors and page exceptions, for the tests to read
    page.on(
        "console", lambda m: page.errors.append(m.text) if m.type in ("error", "warning") else None
    )
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(url)
    page.get_by_label("Final depth", exact=True).wait_for(timeout=60_000)
    return page


def rendered_screenshot(page, timeout: float = 40.0) -> bytes:
    """A screenshot once the canvas shows something (software WebGL takes a few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        png = page.screenshot()
        share, spread = canvas_stats(page, png)
        if (share > 0.03 and spread > 10) or time.monotonic() > deadline:
            return png
        time.sleep(1.0)


def control(page, label: str):
    """The input beside a GUI label (viser's labels are not tied to their inputs by id)."""
    return page.locator(
        f"xpath=//label[text()='{label}']/ancestor::div"
        "[contains(@class, 'mantine-Flex-root')][1]//input"
    ).first


def wait_until(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def show_demo_scene(app, key: str) -> None:
    """The demo model's single run on ``key``, whatever earlier tests of the module showed (some
    show hand-built scenes, whose runs have no checkpoint to run again on another scene)."""
    loader = app.run_loader
    app.show_runs(loader.load_all(key, loader.default_specs()), scene_spec=key)
    assert app.wait_idle(120)
    assert app.loaded.scene.key == key and [r.spec for r in app.runs] == loader.default_specs()


def test_first_open_frames_the_scene_beside_the_panel_and_toggles_a_layer(browser, viewer):
    app, url = viewer
    page = open_page(browser, url)
    for label in GUI_LABELS:  # each control is on the page (raises on a 15 s timeout)
        page.get_by_text(label, exact=True).first.wait_for(timeout=15_000)
    page.get_by_text("the bundled demo", exact=False).first.wait_for(timeout=15_000)
    png = rendered_screenshot(page)
    share, spread = canvas_stats(page, png)
    assert share > 0.03 and spread > 10, (share, spread)  # points and frustums, not blank
    # The panel is docked beside the canvas: nothing the start camera frames is under it.
    panel = page.get_by_text("Colour by", exact=True).first.bounding_box()
    box = canvas_box(page)
    assert panel["x"] >= box["x"] + box["width"] - 1
    # Toggle the residual layer in the page: its points are sent on first show.
    assert app.clouds.slots[0].frames["residual"].visible is False
    page.get_by_label("Mono residual", exact=True).click()
    assert wait_until(lambda: app.clouds.slots[0].frames["residual"].visible is True)
    assert wait_until(lambda: ("residual", 1) in app.clouds.slots[0].shown)
    page.get_by_label("Final depth", exact=True).click()
    assert wait_until(lambda: app.clouds.slots[0].frames["final"].visible is False)
    # The README shot: the residual alone, without target frustums and the WebGL toast.
    page.get_by_label("Target cameras", exact=True).click()
    page.mouse.move(*canvas_center(page))  # no tooltip over the panel
    assert wait_until(lambda: not any(f.visible for f in app.cameras_panel.frustums["target"]))
    page.add_style_tag(content=".mantine-Notifications-root { display: none !important; }")
    time.sleep(2)  # let the residual colours arrive and render
    residual_png = rendered_screenshot(page)
    target = os.environ.get("DSVIEWER_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(target).with_suffix(".tmp.png")
        tmp.write_bytes(residual_png)
        shutil.move(tmp, target)
    share, spread = canvas_stats(page, residual_png)
    assert share > 0.03 and spread > 10, (share, spread)
    nan_bounds = [e for e in page.errors if "NaN" in e]
    assert not nan_bounds, nan_bounds  # e.g. computeBoundingSphere(): Computed radius is NaN
    page.close()


def test_switching_scenes_from_the_page(browser, viewer):
    from dsviewer.viewer.assets import demo_scene_keys

    app, url = viewer
    page = open_page(browser, url)
    first, second = demo_scene_keys()[:2]
    shown = app.scenes_shown
    assert app.loaded.scene.key == first
    # With several specs the scene box is a dropdown (a Mantine Select): open it, pick one.
    page.locator(f"input[value='{first}']").first.click()
    page.get_by_role("option", name=second, exact=True).click()
    assert wait_until(lambda: app.scene_panel.spec.value == second)
    page.get_by_role("button", name="Load scene").click()
    assert wait_until(lambda: app.scenes_shown > shown, timeout=90)
    assert app.loaded.scene.key == second
    page.get_by_text(second, exact=False).first.wait_for(timeout=20_000)
    page.close()


def test_server_keeps_serving_when_a_client_leaves_mid_upload(browser, viewer):
    from viewer_scenes import make_loaded

    app, url = viewer
    app.show(make_loaded(2, 192, 192))  # 74k points per layer, three layers: MBs to send
    for layer in ("coarse", "residual", "final"):
        app.layers_panel.toggles[layer].value = True
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url, wait_until="commit")
    time.sleep(0.3)
    page.close()  # the websocket drops while the scene streams
    page = open_page(browser, url)
    share, spread = canvas_stats(page, rendered_screenshot(page))
    assert share > 0.03 and spread > 10, (share, spread)
    assert app.loaded.layers.image_shape == (192, 192)
    page.close()


def test_clicking_a_point_fills_the_inspector_and_renders_at_the_camera(browser, viewer):
    """A real click in the WebGL canvas -> the server picks the nearest shown point -> the
    Inspector folder in the page shows that pixel; then "Render at my camera" renders the
    Gaussians at this page's camera."""
    from viewer_scenes import make_loaded

    app, url = viewer
    app.show(make_loaded(2, 48, 64))  # small: its analysis and CPU render take little time
    app.layers_panel.toggles["final"].value = True
    page = open_page(browser, url)
    rendered_screenshot(page)
    assert app.wait_idle(60)  # the analysis of the shown scene is done
    app.inspector_panel.report = None
    box = canvas_box(page)
    spots = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
             for fx, fy in ((0.5, 0.5), (0.4, 0.55), (0.6, 0.45), (0.5, 0.35),
                            (0.3, 0.6))]  # fmt: skip
    for x, y in spots:
        page.mouse.click(x, y)
        if wait_until(lambda: app.inspector_panel.report is not None, timeout=5):
            break
    report = app.inspector_panel.report
    assert report is not None, "no click on the canvas reached a point"
    page.get_by_text("Inspector", exact=True).first.click()  # the folder starts collapsed
    page.get_by_text(f"{report.view}, ({report.u}, {report.v})", exact=True).first.wait_for(
        timeout=15_000
    )
    page.get_by_text(f"{report.final_depth:.4g}", exact=True).first.wait_for(timeout=15_000)
    target = os.environ.get("DSVIEWER_INSPECTOR_SCREENSHOT")
    if target:
        page.screenshot(path=target)
    app.targets_panel.last_camera_render = None
    page.get_by_text("Target views", exact=True).first.click()
    page.get_by_role("button", name="Render at my camera").click()
    assert wait_until(lambda: app.targets_panel.last_camera_render is not None, timeout=60)
    image = app.targets_panel.last_camera_render
    assert image.shape[0] == 256 and image.shape[2] == 3
    page.close()


def test_script_in_a_scene_key_or_a_typed_spec_does_not_run(browser, tmp_path):
    """A chunk whose key is an HTML payload, and the same payload typed into the scene field:
    both show as text in every page; no script runs."""
    from dsviewer.dataset.chunks import write_chunk, write_index
    from dsviewer.dataset.synthetic import render_example
    from dsviewer.viewer.assets import demo_checkpoint

    example = render_example(7, 0, 8, 128, 128, key=PAYLOAD)
    write_chunk(tmp_path / "000000.torch", [example])
    write_index(tmp_path, {PAYLOAD: "000000.torch"})
    server, app, url, _ = start_viewer(["--ckpt", str(demo_checkpoint()), "--scene", PAYLOAD,
                                          "--data-root", str(tmp_path)])  # fmt: skip
    try:
        watcher = open_page(browser, url)  # a second client sees the shared status panel
        page = open_page(browser, url)
        page.get_by_text(PAYLOAD, exact=False).first.wait_for(timeout=20_000)  # shown as text
        field = control(page, "Scene spec")
        field.fill(PAYLOAD + "typed")
        field.press("Enter")
        page.get_by_role("button", name="Load scene").click()
        assert wait_until(lambda: "Could not load" in app.scene_panel.status.content, timeout=60)
        page.get_by_text("Could not load", exact=False).first.wait_for(timeout=20_000)
        time.sleep(1)
        for client in (page, watcher):
            assert client.evaluate("window.__pwned === undefined")
            assert client.locator("img[src='x']").count() == 0
        page.close()
        watcher.close()
    finally:
        app.close()
        server.stop()


def test_exported_scene_html_opens_offline_with_legend_and_layer_toggles(browser, viewer, tmp_path):
    import zipfile

    app, _ = viewer
    from dsviewer.viewer.assets import demo_data_root, demo_scene_keys

    key = demo_scene_keys()[0]
    show_demo_scene(app, key)
    app.export_panel.request_export()
    assert app.wait_idle(120)
    _, data = app.export_panel.last_export
    folder = tmp_path / "export"
    zipfile.ZipFile(io.BytesIO(data)).extractall(folder)
    html = next(folder.glob("*/scene.html"))
    page = browser.new_page(viewport=VIEWPORT)
    requests = []
    page.route("**/*", lambda route: (requests.append(route.request.url), route.continue_()
                                      if route.request.url.startswith(("file:", "data:", "blob:"))
                                      else route.abort()))  # fmt: skip
    page.goto(html.as_uri())
    page.locator("#dsviewer-legend").wait_for(timeout=30_000)
    for label in ("Final depth", "Coarse MVS depth", "Mono residual", "Context cameras"):
        page.get_by_text(label, exact=False).first.wait_for(timeout=30_000)
    assert not [r for r in requests if not r.startswith(("file:", "data:", "blob:"))]
    assert str(demo_data_root()) not in html.read_text()  # no local paths travel in the file
    page.close()


def test_new_run_and_b_minus_a_from_the_page(browser, viewer):
    """The New-run flow in the page: a third context frame for the same model becomes run B;
    the colour mode "B - A" colours run A's final points by B's depth along their rays (on
    the frames both runs have)."""
    from dsviewer.viewer.assets import demo_scene_keys

    app, url = viewer
    key = demo_scene_keys()[0]
    show_demo_scene(app, key)
    page = open_page(browser, url)
    page.get_by_label("Final depth", exact=True).check()  # an earlier test may have hidden it
    assert wait_until(lambda: app.clouds.slots[0].frames["final"].visible is True)
    page.get_by_text("New run", exact=True).first.click()  # the folder starts collapsed
    field = control(page, "Context frames")
    assert wait_until(lambda: field.input_value() != "", timeout=30)  # the strip job filled it
    planes = (app.runs_panel.near.value, app.runs_panel.far.value)
    assert planes == (1.0, 25.0)  # the chosen model's own, in its units
    field.fill("0 3 7")
    field.press("Enter")
    page.get_by_role("button", name="Run", exact=True).click()
    assert wait_until(lambda: len(app.runs) == 2, timeout=120)
    assert [int(f) for f in app.runs[1].loaded.layers.context.frames] == [0, 3, 7]
    assert app.runs[1].loaded.scene.key == key  # on the shown scene, not the last one typed
    assert app.runs_panel.b.value == app.runs[1].name  # the new run is B
    # Choosing B re-sends the Colour-by options (B - A joins them), which closes an open
    # dropdown: open it once the server has sent everything.
    assert app.wait_idle(120)
    page.locator("input[value='Image']").first.click()  # the Colour-by dropdown
    page.get_by_role("option", name="B - A", exact=True).click()
    assert wait_until(lambda: app.state.color_mode == "difference")
    assert app.wait_idle(120)
    colors = app.server.scene._handle_from_node_name["/runs/0/final/view_0"].colors
    grey = (colors == 128).all(-1).mean()
    assert grey < 0.5, grey  # most points of A are seen by B's views and coloured by B - A
    page.locator("input[value='B - A']").first.wait_for(timeout=15_000)  # the dropdown shows it
    for label in ("Coarse MVS depth", "Mono residual"):  # the shot shows the final points only
        page.get_by_label(label, exact=True).uncheck()
    page.mouse.move(*canvas_center(page))  # no tooltip over the panel
    page.add_style_tag(content=".mantine-Notifications-root { display: none !important; }")
    time.sleep(2)
    target = os.environ.get("DSVIEWER_COMPARE_SCREENSHOT")
    if target:
        Path(target).write_bytes(rendered_screenshot(page))
    page.close()


# --- maps in the viewer ---------------------------------------------------------------------


def page_client(app, known: set[int]):
    """The viser client of the page opened after the clients ``known`` were there."""
    assert wait_until(lambda: set(app.server.get_clients()) - known, timeout=20)
    return app.server.get_clients()[max(set(app.server.get_clients()) - known)]


def move_camera(client, position, look_at, up, fov: float) -> None:
    """Set the page's camera and wait until the page reports it back."""
    with client.atomic():
        client.camera.up_direction = tuple(float(x) for x in up)
        client.camera.position = tuple(float(x) for x in position)
        client.camera.look_at = tuple(float(x) for x in look_at)
        client.camera.fov = fov

    # The page reports its camera while it moves there: wait until it reports the new pose.
    def arrived() -> bool:
        camera = client.camera
        return (np.allclose(camera.position, position, atol=1e-4)
                and np.allclose(camera.look_at, look_at, atol=1e-4))  # fmt: skip

    assert wait_until(arrived)
    time.sleep(0.3)  # the report comes as the page moves: let a last one in, then check it
    assert wait_until(arrived)


def click_world_point(page, client, point: np.ndarray) -> None:
    """Click where the page's camera (OpenCV axes, vertical fov) shows world ``point``."""
    import viser.transforms as vtf

    R = vtf.SO3(np.asarray(client.camera.wxyz)).as_matrix()
    x, y, z = R.T @ (np.asarray(point, np.float64) - np.asarray(client.camera.position))
    assert z > 0, "the point is behind the page's camera"
    box = canvas_box(page)
    focal = 0.5 * box["height"] / np.tan(0.5 * client.camera.fov)  # CSS pixels
    page.mouse.click(box["x"] + 0.5 * box["width"] + focal * x / z,
                     box["y"] + 0.5 * box["height"] + focal * y / z)  # fmt: skip


def picture_world_point(T: np.ndarray, half_w: float, half_h: float, depth: float,
                        s: float, t: float) -> np.ndarray:  # fmt: skip
    """The world point at fractions (s, t) from the top-left corner of a picture that viser
    draws over [-half_w, half_w] x [-half_h, half_h] at ``depth`` (+X right, +Y down)."""
    return T[:3, :3] @ np.array([(2 * s - 1) * half_w, (2 * t - 1) * half_h, depth]) + T[:3, 3]


def save_side_by_side(page, pngs: list[bytes], path: Path) -> None:
    """The canvases of several screenshots side by side (the GUI panel left out), as one PNG."""
    from PIL import Image

    box = canvas_box(page)
    crop = (int(box["x"]), int(box["y"]), int(box["x"] + box["width"]),
            int(box["y"] + box["height"]))  # fmt: skip
    parts = [Image.open(io.BytesIO(png)).convert("RGB").crop(crop) for png in pngs]
    joined = Image.new("RGB", (sum(p.width + 8 for p in parts) - 8, parts[0].height))
    for index, part in enumerate(parts):
        joined.paste(part, (index * (part.width + 8), 0))
    scale = min(1.0, 1280 / joined.width)
    joined.resize((round(joined.width * scale), round(joined.height * scale))).save(path)


def report_numbers(report) -> tuple:
    return (report.view, report.u, report.v, report.coarse_depth, report.final_depth,
            report.residual_inv, report.confidence, report.gt_depth,
            tuple(sorted(report.mode_values.items())))  # fmt: skip


def test_clicks_on_a_frustum_map_and_on_the_grid_inspect_that_pixel_and_a_3d_click_marks_it(
    browser, viewer
):
    """Frustum map -> inspector on that pixel; grid cell -> inspector on that pixel, with the
    same numbers as a click on the pixel's 3D point; that 3D click marks the pixel on the maps.
    Set DSVIEWER_MAPS_SCREENSHOT=path.png to keep the frustum maps and grid (the README's)."""
    import viser.transforms as vtf
    from test_maps import picture_depth_and_halves

    from dsviewer.viewer.assets import demo_scene_keys
    from dsviewer.viewer.map_geometry import framing_both
    from dsviewer.viewer.maps import MARKER_COLOR

    app, url = viewer
    key = demo_scene_keys()[0]
    default = [run for run in app.runs if run.loaded.scene.key == key
               and run.spec == app.run_loader.default_specs()[0]]  # fmt: skip
    if default:  # the demo run an earlier test loaded: shown alone, without running it again
        app.show_runs(default, scene_spec=key)
        assert app.wait_idle(60)
    else:
        show_demo_scene(app, key)
    height, width = app.loaded.layers.image_shape
    known = set(app.server.get_clients())
    page = open_page(browser, url)
    client = page_client(app, known)
    page.get_by_label("Final depth", exact=True).check()  # an earlier test may have hidden it
    page.get_by_text("Maps", exact=True).first.click()  # the folder starts collapsed
    page.locator("input[value='Photo']").first.click()  # the Frustum picture dropdown
    page.get_by_role("option", name="Final depth", exact=True).click()
    assert wait_until(lambda: app.state.maps.frustum == "final_depth")

    # 1. Behind context camera 0, looking along its axis at its picture; click a pixel there.
    frustum = app.map_pictures.frustums[0]
    T = np.eye(4)
    T[:3, :3] = vtf.SO3(np.asarray(frustum.wxyz)).as_matrix()
    T[:3, 3] = frustum.position
    depth, half_w, half_h = picture_depth_and_halves(frustum.fov, frustum.aspect, frustum.scale)
    centre = picture_world_point(T, half_w, half_h, depth, 0.5, 0.5)
    back = half_h / (0.4 * np.tan(0.45))
    move_camera(client, centre - back * T[:3, 2], centre, -T[:3, 1], 0.9)
    u, v = 37, 81
    aim = picture_world_point(T, half_w, half_h, depth, (u + 0.5) / width, (v + 0.5) / height)
    click_world_point(page, client, aim)  # fmt: skip
    assert wait_until(lambda: app.state.inspected is not None
                      and (app.state.inspected.view, app.state.inspected.u,
                           app.state.inspected.v) == (0, u, v))  # fmt: skip
    page.get_by_text("Inspector", exact=True).first.click()  # the folder starts collapsed
    page.get_by_text(f"0, ({u}, {v})", exact=True).first.wait_for(timeout=15_000)
    target = os.environ.get("DSVIEWER_MAPS_SCREENSHOT")
    shots = []  # the canvas of each view, for the README's picture
    if target:  # without the target frustums' lines over the picture, nothing hovered
        app.cameras_panel.target_toggle.value = False
        page.mouse.move(canvas_box(page)["x"] + 2, canvas_box(page)["y"] + 2)
        page.add_style_tag(content=".mantine-Notifications-root { display: none !important; }")
        time.sleep(2)
        shots.append(rendered_screenshot(page))
        app.cameras_panel.target_toggle.value = True

    # 2. Open the grid from the page: it frames the scene and the grid beside it.
    page.get_by_label("Map grid", exact=True).check()
    assert wait_until(lambda: app.map_pictures.grid_picture is not None)
    grid, layout = app.map_pictures.grid_picture, app.map_pictures.layout
    framed, framed_at = framing_both(app.loaded.view.start, grid, client.camera.aspect)
    # The canvas may narrow by a scrollbar's width after the framing (the Maps folder open),
    # which moves an aspect-limited framing back by a fraction of a percent.
    distance = np.linalg.norm(framed - framed_at)
    assert wait_until(lambda: np.allclose(client.camera.position, framed, atol=2e-3 * distance))
    if target:
        time.sleep(2)
        shots.append(rendered_screenshot(page))
        save_side_by_side(page, shots, Path(target))
    # Close up on the final-depth cell of view 1 (a map pixel is then several screen pixels)
    # and click pixel (u, v) there.
    column = app.map_pictures.columns.index("final_depth")
    rows, cols = layout.shape
    u, v = 90, 30

    def on_grid(x: float, y: float) -> np.ndarray:  # grid-image pixels -> world
        return picture_world_point(grid.T_world_node, grid.half_w, grid.half_h, 0.0,
                                   x / cols, y / rows)  # fmt: skip

    # Cells: 160 px, 4 px apart, under 20 px of titles.
    cell_centre = on_grid(4 + column * 164 + 80, 20 + 1 * 164 + 80)
    cell_half_h = grid.half_h * 80 / rows
    R = grid.T_world_node[:3, :3]
    move_camera(client, cell_centre - cell_half_h / (0.8 * np.tan(0.45)) * R[:, 2], cell_centre,
                -R[:, 1], 0.9)  # fmt: skip
    click_world_point(page, client, on_grid(4 + column * 164 + (u + 0.5) * 160 / width,
                                            20 + 1 * 164 + (v + 0.5) * 160 / height))  # fmt: skip
    assert wait_until(lambda: (app.state.inspected.view, app.state.inspected.u,
                               app.state.inspected.v) == (1, u, v))  # fmt: skip
    page.get_by_text(f"1, ({u}, {v})", exact=True).first.wait_for(timeout=15_000)
    from_grid = report_numbers(app.inspector_panel.report)

    # 3. Through context camera 1 (view 0's points hidden), click the pixel's final point.
    app.views_panel.toggles[0].value = False
    app.inspector_panel.reset()
    app.cameras_panel.look_through(client, "context", 1)
    through = app.loaded.layers.context.T_world_cam[1, :3, 3].numpy()
    assert wait_until(lambda: np.allclose(client.camera.position, through, atol=1e-4))
    time.sleep(0.3)
    assert wait_until(lambda: np.allclose(client.camera.position, through, atol=1e-4))
    point = app.loaded.layers.final_points[1, v, u].double().numpy()
    click_world_point(page, client, point)
    assert wait_until(lambda: app.inspector_panel.report is not None)
    assert report_numbers(app.inspector_panel.report) == from_grid
    # The reverse: the pixel is marked on view 1's frustum picture (thumbnail = full size).
    picture = app.map_pictures.frustums[1].image
    marked = np.argwhere((picture == MARKER_COLOR).all(-1))
    assert tuple((marked.min(axis=0) + marked.max(axis=0)) // 2) == (v, u)
    assert not (app.map_pictures.frustums[0].image == MARKER_COLOR).all(-1).any()
    # ... and on the grid, in each cell of view 1's row (here: the final-depth cell).
    left, top = 4 + column * 164, 20 + 164
    cell = app.map_pictures.grid.image[top : top + 160, left : left + 160]
    marked = np.argwhere((cell == MARKER_COLOR).all(-1))
    centre = (marked.min(axis=0) + marked.max(axis=0)) / 2
    assert np.allclose(centre, ((v + 0.5) * 160 / height, (u + 0.5) * 160 / width), atol=1.0)
    app.views_panel.toggles[0].value = True
    app.maps_panel.grid.value = False
    app.maps_panel.picture.value = "Photo"
    page.close()
