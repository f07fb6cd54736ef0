"""Screenshot of ``dsviewer watch`` on a demo training: the timeline and the curves.

    python scripts/screenshot_watch.py OUT.png [--steps 96] [--every 12] [--scenes 48]

Renders ``--scenes`` synthetic training scenes, starts ``scripts/train_demo.py`` from scratch in
its own process (``--ckpt-every``: a Lightning checkpoint every ``--every`` steps), starts
``dsviewer watch`` on two bundled demo scenes through the command's own code path while it
trains, waits until every checkpoint has run on both scenes, opens the page in headless Chromium
(``/usr/bin/chromium`` through Playwright), puts the slider three quarters of the way and
saves the page. README's ``docs/watch.png`` was made this way (see README,
"Watch a training"). Not a test; run it with the Python that has dsviewer and Playwright.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from headless import CHROMIUM, CHROMIUM_FLAGS, free_port  # scripts/headless.py

REPO = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1280, "height": 860}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=96)
    parser.add_argument("--every", type=int, default=12)
    parser.add_argument("--scenes", type=int, default=48)
    args = parser.parse_args()

    from rich.console import Console

    from dsviewer.dataset.synthetic import write_dataset
    from dsviewer.viewer import watch_cli
    from dsviewer.viewer.assets import demo_data_root, demo_scene_keys

    work = Path(tempfile.mkdtemp(prefix="dsviewer-watch-shot-"))
    write_dataset(work / "data", args.scenes, 8, 64, 64, seed=101, progress=False)
    training = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "train_demo.py"), "train", "--data",
         str(work / "data"), "--out", str(work / "run"), "--val-data", "None",
         "--steps", str(args.steps), "--finetune-steps", "0", "--batch-size", "4",
         "--ckpt-every", str(args.every), "--threads", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    folder = work / "run" / "checkpoints"  # Lightning's layout (run/ also holds last.pth)
    while not folder.is_dir():  # the training makes it
        if training.poll() is not None:
            raise SystemExit("screenshot_watch: the training failed to start")
        time.sleep(0.5)
    keys = demo_scene_keys()[:2]
    port = free_port()
    options = watch_cli.parse([str(folder), "--scene", keys[0], "--scene", keys[1],
                               "--data-root", str(demo_data_root()), "--max-target-views", "1",
                               "--port", str(port), "--device", "cpu"])  # fmt: skip
    log = io.StringIO()
    server, app, watch = watch_cli.start(options, console=Console(file=log, width=200),
                                         wait_seconds=600)  # fmt: skip
    count = args.steps // args.every
    if training.wait() != 0:
        raise SystemExit("screenshot_watch: the training failed")
    if not watch.engine.wait_for_steps(count, timeout=1800):
        raise SystemExit(f"screenshot_watch: not every step ran: {watch.engine.notes}")
    steps = watch.timeline.steps
    shown = steps[(3 * len(steps)) // 4]
    watch.timeline.follow.value = False
    watch.timeline.slider.value = shown
    watch.wait_idle(300)

    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"http://127.0.0.1:{port}")
        page.get_by_text("Curves", exact=True).first.wait_for(timeout=60_000)
        for label in ("Coarse MVS depth", "Mono residual"):  # the final points only
            control = page.get_by_label(label, exact=True)
            if control.is_checked():
                control.uncheck()
        page.add_style_tag(content=".mantine-Notifications-root { display: none !important; }")
        box = page.locator("canvas").first.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        time.sleep(8)  # software WebGL
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out))
        browser.close()
    print(f"saved {args.out}: steps {steps}, shown {shown}")
    watch.close()
    app.close()
    server.stop()



if __name__ == "__main__":
    main()
