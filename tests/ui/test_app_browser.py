"""``charmeta app`` in a real browser: each tab driven by headless Chromium, plus ``gradio_client``.

The app runs as its own process (``python -m charmeta.cli app``) on a free loopback
port, with its Dataset tab on an export that ``charmeta run`` built from a copy of
the bundled sample. Each tab: submit an example, upload a bad file, read the JSON
or tables shown. Screenshots go to the test's tmp dir. Marked slow (CI runs it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from charmeta.app.analyze import AppCore, image_examples, text_examples
from charmeta.netutil import free_port

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]


def _chromium() -> str:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but /usr/bin/chromium is missing (.ci/run installs Debian `chromium`)")
    pytest.skip("Chromium not installed (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``charmeta run`` on a copy of the bundled sample (a real export for the Dataset tab)."""
    import shutil

    base = tmp_path_factory.mktemp("export")
    src = base / "samples"
    shutil.copytree(Path(__file__).resolve().parents[2] / "samples", src, ignore=shutil.ignore_patterns("*.py"))
    out = base / "out"
    env = {**os.environ, "DAGSTER_HOME": str(base / "home"), "CHARMETA_WORKERS": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "charmeta.cli", "run", "--source", str(src), "--output", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "export" / "manifest.json").is_file()
    return out


@pytest.fixture(scope="module")
def app_url(export_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("applog") / "app.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "charmeta.cli", "app", "--port", str(port), "--dataset", str(export_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"charmeta app exited with {proc.returncode}; see {log.name}"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        pytest.fail(f"app not ready at {url}")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    log.close()


@pytest.fixture(scope="module")
def page(app_url: str):
    from playwright.sync_api import sync_playwright

    exe = _chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=LAUNCH_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1100})
        pg.set_default_timeout(90_000)
        pg.goto(app_url)
        pg.wait_for_selector("#image-status", state="attached")
        yield pg
        browser.close()


def _json_shown(page, elem_id: str) -> dict:
    """The value a ``gr.JSON`` shows: its rendered tree's text minus the label, parsed back."""
    text = page.inner_text(f"#{elem_id}")
    body = "".join(text.split("\n")[1:])
    return json.loads(body)


def _wait_text(page, elem_id: str, needle: str) -> str:
    page.wait_for_function(
        "([id, s]) => { const e = document.getElementById(id); return e && e.innerText.includes(s); }",
        arg=[elem_id, needle],
    )
    return page.inner_text(f"#{elem_id}")


def _astronaut(tmp: Path) -> Path:
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    p = tmp / "astronaut.png"
    Image.fromarray(skdata.astronaut()).save(p)
    return p


def test_image_tab_boxes_a_face_and_turns_a_bad_file_into_an_invalid_record(page, tmp_path: Path) -> None:
    page.get_by_role("tab", name="Image").click()
    page.locator("#image-counter input").click()  # a photo: OpenCV's Haar cascade (animeface is for drawings)
    page.get_by_role("option", name="haar", exact=True).click()
    page.locator("#image-input input[type=file]").set_input_files(str(_astronaut(tmp_path)))
    page.get_by_label("caption (optional: fused with the pixels)").fill("1girl, solo, short hair, brown hair")
    page.get_by_role("button", name="Extract from image").click()
    status = _wait_text(page, "image-status", "status:")
    record = _json_shown(page, "image-record")
    assert record["status"] == "ok" and "status: ok" in status, record
    assert record["input_kind"] == "image" and record["character_count"] == 1
    assert record["attributes"]["Hair Color"] == "Brown" and "tag:brown hair" in record["evidence"]["Hair Color"]
    assert _json_shown(page, "image-clean")["Hair Length"] == "Short"
    assert "face detector: haar" in page.inner_text("#image-backends")
    faces = page.locator("#image-faces img")
    assert faces.count() == 1 and faces.first.get_attribute("src")
    page.screenshot(path=str(tmp_path / "image_tab.png"), full_page=True)

    bad = tmp_path / "page.png"
    bad.write_bytes(b"<html><body>not an image</body></html>")
    page.locator("#image-input input[type=file]").set_input_files(str(bad))
    page.get_by_role("button", name="Extract from image").click()
    _wait_text(page, "image-status", "status: invalid")
    record = _json_shown(page, "image-record")
    assert record["status"] == "invalid" and "not an image" in record["reason"], record
    assert "Traceback" not in page.content()
    page.screenshot(path=str(tmp_path / "image_tab_bad.png"), full_page=True)


def test_image_tab_example_from_the_sample_shows_what_the_core_computes(page, tmp_path: Path) -> None:
    examples = image_examples()
    if not examples:
        pytest.skip("the bundled sample holds no images")
    path, caption = examples[0]
    want = AppCore().analyze_image(path, caption).view.record  # same core, same defaults (auto, none)
    page.reload()
    page.wait_for_selector("#image-examples")
    page.locator("#image-examples tbody tr").first.click()
    page.wait_for_function(
        "c => [...document.querySelectorAll('textarea')].some(t => t.value === c)",
        arg=caption,
    )  # the example filled the caption box (and the image)
    page.get_by_role("button", name="Extract from image").click()
    _wait_text(page, "image-status", f"status: {want['status']}")
    shown = _json_shown(page, "image-record")
    assert shown["attributes"] == want["attributes"] and shown["character_count"] == want["character_count"]
    assert page.locator("#image-faces img").first.get_attribute("src")
    page.screenshot(path=str(tmp_path / "image_tab_example.png"), full_page=True)


def test_text_tab_examples_and_empty_input(page, tmp_path: Path) -> None:
    page.get_by_role("tab", name="Text").click()
    for label, want in (
        ("excluded (safety rule)", "excluded"),
        ("weighted prompt", "ok"),
        ("multi-character", "multi_character"),
    ):
        text = next(e["text"] for e in text_examples() if e["label"] == label)
        page.get_by_role("button", name=label).click()
        page.wait_for_function(
            "t => document.querySelector('#text-input textarea').value === t", arg=text
        )  # the example filled the box
        page.locator("#text-submit").click()
        status = _wait_text(page, "text-status", f"status: {want}")
        record = _json_shown(page, "text-record")
        assert record["status"] == want, (label, record)
        assert f"status: {want}" in status
        if want == "excluded":
            assert record["reason"].startswith("safety:")
            assert _json_shown(page, "text-clean")["exported"] is False
        if label == "weighted prompt":
            assert record["attributes"]["Hair Color"] == "Grey" and record["evidence"]["Hair Color"] == ["silver hair"]
            page.screenshot(path=str(tmp_path / "text_tab.png"), full_page=True)
    page.locator("#text-input textarea").fill("   ")
    page.locator("#text-submit").click()
    assert "error" in _wait_text(page, "text-status", "nothing to extract")


def test_batch_tab_sample_file_and_bad_file(page, tmp_path: Path) -> None:
    page.get_by_role("tab", name="Batch").click()
    sample = Path(__file__).resolve().parents[2] / "samples" / "captions.jsonl"
    page.locator("#batch-file input[type=file]").set_input_files(str(sample))
    page.locator("#batch-submit").click()
    msg = _wait_text(page, "batch-status", "records")
    assert "10 records" in msg and "ok 5" in msg and "invalid 2" in msg, msg
    assert "records_clean.jsonl" in page.inner_text("#batch-clean").replace("\n", "")
    assert "records_rich.parquet" in page.inner_text("#batch-rich").replace("\n", "")
    href = page.locator("#batch-clean a[download]").first.get_attribute("href")
    with urllib.request.urlopen(urllib.parse.urljoin(page.url, href), timeout=30) as r:  # the download itself
        clean = [json.loads(line) for line in r.read().decode().splitlines()]
    assert len(clean) == 5 and all(c["Gender"] for c in clean) and "bad-empty-text" not in {c["id"] for c in clean}
    assert "bad-empty-text" in page.inner_text("#batch-results")
    page.screenshot(path=str(tmp_path / "batch_tab.png"), full_page=True)

    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"this is not parquet" * 20)
    page.locator("#batch-file button[aria-label='Clear']").click()  # the upload box is back
    page.locator("#batch-file input[type=file]").set_input_files(str(bad))
    page.locator("#batch-submit").click()
    msg = _wait_text(page, "batch-status", "no usable record")
    assert "no usable record" in msg and "parquet" in msg.lower(), msg
    assert "Traceback" not in page.content()


def test_dataset_tab_counts_plots_quarantine_and_a_bad_folder(page, export_dir: Path, tmp_path: Path) -> None:
    manifest = json.loads((export_dir / "export" / "manifest.json").read_text())
    page.get_by_role("tab", name="Dataset").click()
    summary = _wait_text(page, "ds-summary", "records")
    assert f"{manifest['records']:,} records" in summary and f"ok {manifest['status_counts']['ok']:,}" in summary
    page.wait_for_selector("#ds-status-plot canvas, #ds-status-plot svg", state="attached")
    quarantine = page.inner_text("#ds-quarantine")
    for reason in manifest["quarantine"]["by_reason"]:
        assert reason.split(" (")[0][:30] in quarantine, reason
    assert "not built yet" in page.inner_text("#ds-profiles-note") or page.locator("#ds-profiles").is_visible()
    page.screenshot(path=str(tmp_path / "dataset_tab.png"), full_page=True)

    page.locator("#ds-folder textarea, #ds-folder input").first.fill(str(tmp_path / "missing"))
    page.locator("#ds-open").click()
    assert "error" in _wait_text(page, "ds-summary", "does not exist")
    assert "Traceback" not in page.content()


def test_gradio_client_calls_the_same_endpoints(app_url: str, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    status, backends, record, clean, _table = client.predict(
        "1girl, solo, blue eyes, long hair, green kimono", api_name="/extract_text"
    )
    assert record["attributes"]["Dress"] == "Green Kimono" and clean["Eye Color"] == "Blue"
    assert "text extractor" in backends
    out = client.predict(
        handle_file(str(_astronaut(tmp_path))), "1boy, solo", "haar", "none", api_name="/extract_image"
    )
    record = out[3]
    assert record["character_count"] == 1 and record["attributes"]["Gender"] == "Male"
    msg, _rows, clean_path, rich_path = client.predict(
        handle_file(str(Path(__file__).resolve().parents[2] / "samples" / "prose.csv")),
        "auto",
        "none",
        api_name="/batch",
    )
    assert "5 records" in msg and "invalid 1" in msg
    lines = Path(clean_path).read_text().splitlines()
    assert lines and all(json.loads(x)["id"].startswith("dev-prose") for x in lines)
    import pyarrow.parquet as pq

    assert pq.read_table(rich_path).num_rows == 5
    summary = client.predict("/definitely/not/here", api_name="/dataset")[0]
    assert summary.startswith("**error:**") and "does not exist" in summary
