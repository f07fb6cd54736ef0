"""Comparing two runs in a real headless Chromium (issue 19, item 3).

One viewer for the module, started through the CLI's own code path with the tiny test
checkpoint (64 x 64: quick on two cores) on two demo scenes, plus a second run of it with other
near/far planes, hence other depth candidates. One page goes through a compare, the inspector,
the run list, placement, splats, a typed scene switch with the inspector filled and a wrong key,
and its console must stay free of errors throughout; a second tab sees a notice when the first
changes the shared colours.
"""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from test_browser import (  # noqa: F401 -- browser is the module's Chromium fixture
    VIEWPORT,
    browser,
    canvas_box,
    control,
    rendered_screenshot,
    start_viewer,
    wait_until,
)
from viewer_scenes import tiny_checkpoint

pytestmark = pytest.mark.browser

PLOT_TITLE = "Cost-volume probability over depth"
B_NAME = "other-planes"  # run B: the same checkpoint with other near/far planes


@pytest.fixture(scope="module")
def viewer():
    from dsviewer.viewer.assets import demo_data_root, demo_scene_keys
    from dsviewer.viewer.session.runs import Run
    from dsviewer.viewer.session.specs import RunSpec

    keys = demo_scene_keys()
    server, app, url, _ = start_viewer(["--ckpt", str(tiny_checkpoint()), "--scene", keys[0],
                                        "--scene", keys[1], "--data-root",
                                        str(demo_data_root())])  # fmt: skip
    spec = RunSpec(app.runs[0].spec.checkpoint, near=1.0, far=20.0)  # the model's own: 0.5, 100
    app.add_run(Run(B_NAME, spec, app.run_loader.load(keys[0], spec, B_NAME)))
    yield app, url, keys
    app.close()
    server.stop()


def watch_console(page, errors: list[str]) -> None:
    """Collect ``page``'s console errors and uncaught exceptions into ``errors``, from its first
    byte on (warnings are viser's and software WebGL's)."""
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))


def pick_option(page, current: str, option: str) -> None:
    """Open the first dropdown showing ``current`` and choose ``option``."""
    page.locator(f"input[value='{current}']").first.click()
    page.get_by_role("option", name=option, exact=True).click()


def width(locator) -> float:
    """A shown element's width on the page (0 while it is not laid out)."""
    box = locator.bounding_box()
    return 0.0 if box is None else box["width"]


def colour_pixels(png: bytes, rgb: tuple[int, int, int]) -> int:
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)
    return int((np.abs(pixels - np.array(rgb)).sum(axis=-1) < 40).sum())


def canvas_change(before: bytes, after: bytes, page) -> float:
    """Share of canvas pixels that differ between two screenshots."""
    from PIL import Image

    box = canvas_box(page)
    x0, x1 = int(box["x"]), int(box["x"] + box["width"])
    y0, y1 = int(box["y"]) + 160, int(box["y"] + box["height"])  # below the notification toast
    a, b = (np.asarray(Image.open(io.BytesIO(p)).convert("RGB")).astype(np.int16)[y0:y1, x0:x1]
            for p in (before, after))  # fmt: skip
    return float((np.abs(a - b).sum(axis=-1) > 30).mean())


def test_comparing_two_runs_in_the_page(browser, viewer):  # noqa: F811
    from dsviewer.viewer.colormaps import CATEGORY_COLORS
    from dsviewer.viewer.session.runs import Run

    app, url, keys = viewer
    page, other = browser.new_page(viewport=VIEWPORT), browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    watch_console(page, errors)
    watch_console(other, errors)
    for tab in (page, other):  # both load at once
        tab.goto(url, wait_until="commit")
    for tab in (page, other):
        tab.get_by_label("Final depth", exact=True).wait_for(timeout=60_000)
    assert [run.name for run in app.runs] == [tiny_checkpoint().stem, B_NAME]
    pick_option(page, "Image", "B - A")  # the compare; the other tab is told
    assert wait_until(lambda: app.state.color_mode == "difference")
    other.get_by_text("Colours changed in another tab", exact=True).wait_for(timeout=15_000)
    assert page.get_by_text("Colours changed in another tab", exact=True).count() == 0
    other.close()
    assert app.wait_idle(120)

    # The target column spans the panel; Render at my camera says it is working at once.
    box = canvas_box(page)
    panel_width = VIEWPORT["width"] - (box["x"] + box["width"])
    page.get_by_text("Target views", exact=True).first.click()
    image = page.locator("xpath=//*[text()='rendered, GT, error']/following::img[1]")
    assert wait_until(lambda: width(image) >= 0.8 * panel_width)
    gate = threading.Event()  # a job ahead of the render: what a page sees while it waits
    app.jobs.submit("Analysis", lambda: gate.wait(30))
    page.get_by_role("button", name="Render at my camera").click()
    page.get_by_text("Rendering at your camera", exact=False).first.wait_for(timeout=15_000)
    assert page.get_by_role("button", name="Render at my camera").is_disabled()
    gate.set()
    assert wait_until(lambda: app.targets_panel.last_camera_render is not None, timeout=60)
    assert not app.targets_panel.camera_progress.visible

    # The inspector: both runs' curves drawn on one depth axis, B - A filled.
    page.get_by_text("Inspector", exact=True).first.click()
    report = app.inspector_panel.inspect_pixel(0, 32, 32)
    value = report.mode_values["difference"]
    assert value is not None
    page.get_by_text(f"{value:.4g}", exact=True).first.wait_for(timeout=15_000)
    plot = page.locator(".uplot", has_text=PLOT_TITLE).locator("canvas").first
    assert wait_until(lambda: min(colour_pixels(plot.screenshot(), CATEGORY_COLORS[i])
                                  for i in range(2)) > 20, timeout=15)  # fmt: skip

    # Three runs: every table of the inspector fits the docked panel.
    app.add_run(Run("copy", app.runs[0].spec, app.runs[0].loaded))
    app.inspector_panel.inspect_pixel(0, 32, 32)
    tables = page.locator("table", has_text="view, pixel (u, v)")
    assert wait_until(lambda: tables.count() == 2)
    assert wait_until(lambda: all(0 < width(tables.nth(i)) <= panel_width for i in range(2)))
    # Remove B from the page; a New run that repeats A is refused with a message.
    assert app.runs_panel.b.value == "copy"
    page.get_by_role("button", name="Remove B").click()
    assert wait_until(lambda: len(app.runs) == 2)
    page.get_by_text("New run", exact=True).first.click()
    assert wait_until(lambda: app.runs_panel.context_frames.value != "", timeout=30)
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("is this run already", exact=False).first.wait_for(timeout=15_000)
    assert len(app.runs) == 2 and app.wait_idle(60)

    # Side by side: the page's camera frames both clusters, each under its A/B label.
    pick_option(page, "overlaid", "side by side")
    client = next(iter(app.server.get_clients().values()))

    def both_in_view() -> bool:
        camera = client.camera
        forward = np.asarray(camera.look_at) - np.asarray(camera.position)
        forward /= np.linalg.norm(forward)
        for slot in app.clouds.slots[:2]:
            final = slot.run.loaded.flat("final")
            centre = np.median(final.points[final.valid], axis=0) + np.asarray(slot.root.position)
            ray = centre - np.asarray(camera.position)
            if np.arccos(ray @ forward / np.linalg.norm(ray)) > 0.5 * camera.fov:
                return False
        return True

    assert wait_until(both_in_view)
    texts = [slot.label.text for slot in app.clouds.slots[:2]]
    assert texts == [f"A: {tiny_checkpoint().stem}", f"B: {B_NAME}"]

    # Overlaid splats change what is seen (the points step aside).
    pick_option(page, "side by side", "overlaid")
    page.get_by_text("Gaussians", exact=True).first.click()
    page.mouse.move(box["x"] + 5, box["y"] + box["height"] - 5)  # no tooltip on the canvas
    before = rendered_screenshot(page)
    page.get_by_label("Gaussian splats", exact=True).check()
    assert wait_until(lambda: app.gaussians_panel.handle is not None)
    assert wait_until(lambda: canvas_change(before, page.screenshot(), page) > 0.05, timeout=10)
    page.get_by_label("Gaussian splats", exact=True).uncheck()

    # A typed key loads that scene (with the inspector filled); a wrong one says the closest.
    shown = app.scenes_shown
    field = control(page, "Scene spec")
    field.fill(keys[2])
    field.press("Enter")
    page.get_by_role("button", name="Load scene").click()
    assert wait_until(lambda: app.scenes_shown > shown, timeout=120)
    assert app.loaded.scene.key == keys[2] and app.wait_idle(120)
    field.fill(keys[2] + "9")
    field.press("Enter")
    page.get_by_role("button", name="Load scene").click()
    page.get_by_text("closest keys", exact=False).first.wait_for(timeout=30_000)
    time.sleep(0.5)
    assert not errors, errors
    page.close()
