"""Helpers of the chaos suite: run the stages without Dagster, read results back, count loss."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from charmeta.pipeline import stages as S
from charmeta.pipeline.export import export_dataset
from charmeta.sources import Source, write_registry


def run_pipeline(
    src: Path,
    out: Path,
    backend: str = "text",
    shard_rows: int = 200_000,
    text_field: str | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """discover -> every stage -> export, in-process; returns the manifest."""
    specs = Source(str(src), shard_rows=shard_rows, text_field=text_field).discover()
    write_registry(str(out), specs)
    keys = [s.key for s in specs]
    for stage in S.STAGES:
        S.run_stage(stage, str(out), keys, backend=backend, workers=workers)
    return export_dataset(str(out), keys)


def records(out: Path) -> list[dict[str, Any]]:
    """All validated rows (rich output), in partition + source order."""
    con = duckdb.connect()
    try:
        files = sorted(str(p) for p in (out / "validated_records").glob("*.parquet"))
        if not files:
            return []
        lst = "[" + ", ".join("'" + f + "'" for f in files) + "]"
        return (
            con.sql(
                f"SELECT id, status, reason, source_shard, source_position FROM read_parquet({lst}) "
                "ORDER BY source_shard, source_position"
            )
            .df()
            .to_dict("records")
        )
    finally:
        con.close()


def quarantine(out: Path) -> list[dict[str, Any]]:
    return pq.read_table(out / "export" / "quarantine.parquet").to_pylist()


def write_jsonl(path: Path, lines: list[Any]) -> None:
    """Each item: a JSON-able object, or ``bytes`` written verbatim as one line."""
    with path.open("wb") as fh:
        for item in lines:
            fh.write(item if isinstance(item, bytes) else json.dumps(item).encode("utf-8"))
            fh.write(b"\n")


def tar_add(
    tar: tarfile.TarFile, name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, linkname: str = ""
) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def lost(manifest: dict[str, Any], n_inputs: int) -> int:
    """Records lost for a case: inputs the pipeline was given minus rows it accounted for."""
    return n_inputs - int(manifest["records"])


def no_tmp_left(out: Path) -> bool:
    return not [p for p in out.rglob("*") if ".tmp-" in p.name]


def env_with_path(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parent)
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env
