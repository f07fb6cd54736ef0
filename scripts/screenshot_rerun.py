"""Screenshot of a recording.rrd open in Rerun's web viewer, in headless Chromium.

    python scripts/screenshot_rerun.py RECORDING.rrd OUT.png [--wait SECONDS]

Serves the file with the ``rerun`` command of the rerun-sdk wheel (``rerun --serve-web``, bound
to 127.0.0.1, free ports), opens the web viewer in ``/usr/bin/chromium`` through Playwright
(software WebGL), waits for it to load and draw, and saves the page. README's
``docs/rerun.png`` was made this way from ``dsviewer export --demo --rerun``'s first scene.
Not a test. Run it with the Python that has dsviewer[rerun] and Playwright.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from headless import CHROMIUM, CHROMIUM_FLAGS, free_port  # scripts/headless.py

VIEWPORT = {"width": 1400, "height": 820}



def serve(recording: Path) -> tuple[subprocess.Popen, str]:
    """``rerun --serve-web`` on ``recording``; returns the process and the viewer's URL."""
    rerun = Path(sys.executable).with_name("rerun")
    web, grpc = free_port(), free_port()
    process = subprocess.Popen(
        [str(rerun), "--serve-web", "--bind", "127.0.0.1", "--web-viewer-port", str(web),
         "--port", str(grpc), str(recording)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "RERUN_ANALYTICS": "0"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{web}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.terminate()
                raise SystemExit("screenshot_rerun: the Rerun web viewer did not start") from None
            time.sleep(0.3)
    source = urllib.parse.quote(f"rerun+http://127.0.0.1:{grpc}/proxy", safe="")
    return process, f"{url}/?url={source}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recording", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--wait", type=float, default=60.0,
                        help="seconds to let the viewer load and draw (software WebGL is slow)")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    process, url = serve(args.recording)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url)
            page.locator("canvas").first.wait_for(timeout=120_000)
            time.sleep(args.wait)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
