"""Publish a run's outputs to object storage (``s3://``, ``gs://``, any fsspec URL).

Why publish instead of writing stages straight to the bucket: every stage file is committed by
``os.replace`` of a temp file plus a marker, which is what makes kill -9 and disk-full safe;
object stores have no rename. So the pipeline works on a POSIX output root (a local disk, or a
shared volume on a cluster) and this copies the finished results - the validated partitions and
the export - to the bucket, objects first and ``export/manifest.json`` last: a reader that sees
the new manifest sees every object it lists. Unchanged files are not sent again (a ledger of
sha256 per destination under ``<output>/.published/``), so publishing after 10 new shards sends
10 partitions and the export. Sources can already be ``s3://`` URLs (read through fsspec).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

log = logging.getLogger("charmeta.publish")

#: What is published, in order; the manifest goes last (see module doc).
_DIRS = ("validated_records",)
_EXPORT = ("records.jsonl", "quarantine.parquet")
_LAST = "manifest.json"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _plan(output: str) -> list[str]:
    rel: list[str] = []
    for d in _DIRS:
        folder = os.path.join(output, d)
        if os.path.isdir(folder):
            names = sorted(os.listdir(folder))
            rel += [f"{d}/{n}" for n in names if n.endswith(".parquet")]
            rel += [f"{d}/{n}" for n in names if n.endswith(".json")]  # markers after their data
    rel += [f"export/{n}" for n in _EXPORT if os.path.exists(os.path.join(output, "export", n))]
    if os.path.exists(os.path.join(output, "export", _LAST)):
        rel.append(f"export/{_LAST}")
    return rel


def publish(output: str, dest: str, storage_options: dict[str, Any] | None = None) -> dict[str, int]:
    """Copy ``output``'s validated partitions and export to ``dest``; returns sent/unchanged counts."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(dest, **(storage_options or {}))
    ledger_path = os.path.join(output, ".published", hashlib.sha1(dest.encode()).hexdigest()[:16] + ".json")
    try:
        with open(ledger_path, encoding="utf-8") as fh:
            ledger: dict[str, str] = json.load(fh)
    except (FileNotFoundError, ValueError):
        ledger = {}
    sent = unchanged = 0
    for rel in _plan(output):
        local = os.path.join(output, rel)
        digest = _sha256(local)
        remote = f"{root.rstrip('/')}/{rel}"
        if ledger.get(rel) == digest and fs.exists(remote):
            unchanged += 1
            continue
        fs.put_file(local, remote)
        ledger[rel] = digest
        sent += 1
    os.makedirs(os.path.dirname(ledger_path), exist_ok=True)
    with open(ledger_path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(ledger, fh, sort_keys=True)
    os.replace(ledger_path + ".tmp", ledger_path)
    log.info(json.dumps({"event": "published", "dest": dest, "sent": sent, "unchanged": unchanged}))
    return {"sent": sent, "unchanged": unchanged}
