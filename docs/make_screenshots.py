"""Take the README's screenshots with headless Chromium: the app's tabs and Dagster's asset graph.

Why a script: the pictures in README.md must show the current app and asset graph, so they
are re-taken from running servers (both on 127.0.0.1, free ports), not edited by hand.
Needs ``make demo`` first (the Dataset tab and the asset graph read ``out/demo``).

    .venv/bin/python docs/make_screenshots.py [--out docs/img] [--output out/demo]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]


def _wait(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} not ready after {timeout}s")


def app_shots(page, url: str, out: Path, image: Path | None) -> None:
    page.goto(url)
    page.wait_for_selector("#image-status", state="attached")
    if page.locator("#image-examples").count():  # a drawing of the bundled sample, with its caption
        page.locator("#image-examples tbody tr").first.click()
        page.wait_for_selector("#image-input img")  # the example is loaded into the input
        time.sleep(1)
        page.get_by_role("button", name="Extract from image").click()
        page.wait_for_function("document.getElementById('image-status').innerText.includes('status')")
        time.sleep(1)
        page.screenshot(path=str(out / "app_image.png"), full_page=True)
    elif image is not None:  # no images in samples/: a photo, with the Haar detector
        page.locator("#image-counter input").click()
        page.get_by_role("option", name="haar", exact=True).click()
        page.locator("#image-input input[type=file]").set_input_files(str(image))
        page.get_by_label("caption (optional: fused with the pixels)").fill("1girl, solo, short hair, brown hair")
        page.get_by_role("button", name="Extract from image").click()
        page.wait_for_function("document.getElementById('image-status').innerText.includes('status')")
        time.sleep(1)
        page.screenshot(path=str(out / "app_image.png"), full_page=True)
    page.get_by_role("tab", name="Text").click()
    page.get_by_role("button", name="weighted prompt").click()
    time.sleep(0.5)
    page.locator("#text-submit").click()
    page.wait_for_function("document.getElementById('text-status').innerText.includes('status')")
    time.sleep(1)
    page.screenshot(path=str(out / "app_text.png"), full_page=True)
    page.get_by_role("tab", name="Dataset").click()
    page.wait_for_function("document.getElementById('ds-summary').innerText.includes('records')")
    time.sleep(2)
    page.screenshot(path=str(out / "app_dataset.png"), full_page=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "img"))
    ap.add_argument("--output", default=str(ROOT / "out" / "demo"), help="the charmeta run output to show")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    from charmeta_dagster.commands.ui import free_port, start_ui, wait_ready

    image = None
    try:
        from PIL import Image
        from skimage import data as skdata

        image = Path(tempfile.mkdtemp()) / "astronaut.png"
        Image.fromarray(skdata.astronaut()).save(image)
    except ImportError:
        pass
    port = free_port()
    app = subprocess.Popen(
        [sys.executable, "-m", "charmeta.cli", "app", "--port", str(port), "--dataset", a.output],
        start_new_session=True,
    )
    demo_home = Path(a.output) / ".dagster_home"  # the instance `make demo` ran on: every asset materialized
    home = str(demo_home) if demo_home.is_dir() else tempfile.mkdtemp(prefix="charmeta-shots-home-")
    ui = start_ui(home, a.output, source=str(ROOT / "samples"), env={"CHARMETA_SENSORS": "off"})
    try:
        _wait(f"http://127.0.0.1:{port}/", app)
        wait_ready(ui)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=a.chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            app_shots(page, f"http://127.0.0.1:{port}/", out, image)
            page.set_viewport_size({"width": 1300, "height": 620})
            page.goto(ui.url + "/asset-groups")
            page.wait_for_selector("text=validated_records")
            time.sleep(4)
            page.screenshot(path=str(out / "asset_graph.png"))
            browser.close()
    finally:
        app.terminate()
        app.wait(timeout=20)
        ui.stop()
    print("screenshots in", out, sorted(p.name for p in out.glob("*.png")))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    raise SystemExit(main())
