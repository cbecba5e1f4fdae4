"""Helpers shared by the browser tests: find Chromium, GraphQL calls, DOM dumps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
STAGES = ["raw_shards", "normalized_records", "embeddings", "attribute_predictions", "validated_records"]


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but no Chromium found (.ci/run installs Debian `chromium`)")
    pytest.skip("Chromium not installed (apt-get install chromium)")


def gql(url: str, query: str, variables: dict | None = None) -> dict:
    req = urllib.request.Request(
        url + "/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        body = json.load(r)
    assert "errors" not in body, body
    return body["data"]


def dump_dom(browser: str, url: str, tmp: Path) -> str:
    res = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp / 'chrome-profile'}",
            "--window-size=1600,1000",
            "--virtual-time-budget=30000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout
