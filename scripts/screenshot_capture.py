"""Screenshot of the live viewer on a real capture: the SfM points coloured by "Error vs SfM".

    python scripts/screenshot_capture.py CAPTURE OUT.png [--ckpt FILE] [--point-size PX]
        [--zoom STEPS]

Starts ``dsviewer --ckpt FILE --scene CAPTURE`` through the CLI's own code path (as
``tests/test_browser.py`` does; default FILE: the bundled demo checkpoint), opens the page in
headless Chromium (``/usr/bin/chromium`` through Playwright), shows the "SfM points" layer
alone, picks the "Error vs SfM" colour mode so its legend is in the panel, zooms in a few
mouse-wheel steps, and saves the page. README's ``docs/sfm.png`` was made this way (see
README, "Your own capture"). Not a test: the capture is not part of the repository. Run it
with the Python that has dsviewer and Playwright.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

from headless import CHROMIUM, CHROMIUM_FLAGS, free_port  # scripts/headless.py

VIEWPORT = {"width": 1280, "height": 800}



def wait_until(condition, what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds; otherwise stop, saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshot_capture: {what} did not happen in {timeout:.0f} s")
        time.sleep(0.2)


def start(capture: str, ckpt: Path):
    """The viewer on ``capture``; returns ``(server, app, url)``."""
    from rich.console import Console

    from dsviewer.viewer import cli

    port = free_port()
    log = io.StringIO()
    options = cli.parse(["--ckpt", str(ckpt), "--scene", capture, "--port", str(port),
                         "--device", "cpu"])  # fmt: skip
    server, app = cli.start(options, console=Console(file=log, width=200))
    print(log.getvalue())
    return server, app, f"http://127.0.0.1:{port}"


def show_sfm_error(page, app, point_size: float) -> None:
    """In the page: the SfM points layer alone, coloured by Error vs SfM, no camera frustums.

    Only the GUI handles (their ``.value``) are read on the server side: they are what the page
    changes, whatever the app keeps behind them.
    """
    toggles = app.layers_panel.toggles
    # Cameras hidden too: their frustums carry the capture's photos, which stay out of the docs.
    for label in ("SfM points", "Final depth", "Target cameras", "Context cameras"):
        page.get_by_label(label, exact=True).click()
    wait_until(lambda: toggles["sfm"].value and not toggles["final"].value, "the layer toggles")
    # The colour dropdown is a Mantine Select: open it from its current value, pick the mode.
    page.locator("input[value='Image']").first.click()
    page.get_by_role("option", name="Error vs SfM", exact=True).click()
    page.locator("input[value='Error vs SfM']").first.wait_for(timeout=30_000)
    # Sparse points need more than the dense layers' size to be seen at this framing.
    app.points_panel.size.value = point_size
    wait_until(lambda: app.wait_idle(1), "the analysis and the colours", timeout=120)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture")
    parser.add_argument("out", type=Path)
    parser.add_argument("--ckpt", type=Path, default=None, help="default: the bundled demo")
    parser.add_argument("--point-size", type=float, default=2.5)
    parser.add_argument(
        "--zoom",
        type=int,
        default=9,
        help="mouse-wheel steps towards the scene after the start framing",
    )
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from dsviewer.viewer.assets import CHECKPOINT_NAME, DEMO_DIR

    server, app, url = start(args.capture, args.ckpt or DEMO_DIR / CHECKPOINT_NAME)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url)
            page.get_by_label("Final depth", exact=True).wait_for(timeout=60_000)
            show_sfm_error(page, app, args.point_size)
            page.add_style_tag(content=".mantine-Notifications-root { display: none !important; }")
            canvas = page.locator("canvas").first.bounding_box()
            page.mouse.move(canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2)
            for _ in range(args.zoom):
                page.mouse.wheel(0, -100)
                time.sleep(0.2)
            time.sleep(6)  # software WebGL: let the new colours arrive and render
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
    finally:
        app.close()
        server.stop()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
