"""Remote containers are read by ranges, never downloaded whole: a loopback HTTP server with
Range support (Python's http.server) serves a zip and a Parquet file to fsspec's HTTP
filesystem and counts every byte it sends."""

from __future__ import annotations

import http.server
import io
import os
import random
import re
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from charmeta.sources import RAW_SCHEMA, Source, iter_shard
from charmeta.sources.image_bytes import iter_image_bytes

pytest.importorskip("aiohttp")  # fsspec's HTTP filesystem

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    sent = 0
    full_gets = 0


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    root: Path

    def log_message(self, *args) -> None:  # noqa: ANN002 - quiet
        pass

    def _file(self) -> Path | None:
        p = (self.root / self.path.lstrip("/").split("?")[0]).resolve()
        return p if p.is_file() and self.root in p.parents else None

    def do_HEAD(self) -> None:
        p = self._file()
        if p is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(p.stat().st_size))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self) -> None:
        p = self._file()
        if p is None:
            self.send_error(404)
            return
        size = p.stat().st_size
        m = _RANGE.fullmatch(self.headers.get("Range", ""))
        start, end = 0, size - 1
        if m:
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.server.full_gets += 1  # type: ignore[attr-defined]
            self.send_response(200)
        body = b""
        if start <= end:
            with open(p, "rb") as fh:
                fh.seek(start)
                body = fh.read(end - start + 1)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(body)
        self.server.sent += len(body)  # type: ignore[attr-defined]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, _Server]]:
    root = tmp_path.resolve()
    handler = type("H", (_RangeHandler,), {"root": root})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 40, 40)).save(buf, format="PNG")
    return buf.getvalue()


def _noise(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def test_zip_member_is_read_by_ranges(tmp_path: Path, served) -> None:
    pytest.importorskip("PIL")
    url, server = served
    png = _png()
    with zipfile.ZipFile(tmp_path / "pairs.zip", "w", zipfile.ZIP_STORED) as zf:
        for i in range(48):  # ~12 MB of (incompressible) image payloads
            zf.writestr(f"{i:04d}.webp", _noise(256 * 1024, i))
            zf.writestr(f"{i:04d}.txt", f"1girl, tag{i}")
        zf.writestr("0048.png", png)
        zf.writestr("0048.txt", "1girl, red_hair")
    size = os.path.getsize(tmp_path / "pairs.zip")

    (spec,) = Source(f"{url}/pairs.zip").discover()  # central directory only
    assert spec.fmt == "zip" and server.full_gets == 0
    after_discovery = server.sent
    assert after_discovery < size / 8, (after_discovery, size)

    rows = [
        {"id": "0048", "text": "1girl, red_hair", "source_position": 48, "reason": None, "image_member": "0048.png"},
        {"id": "0024", "text": "1girl, tag24", "source_position": 24, "reason": None, "image_member": "0024.webp"},
    ]
    server.sent = 0
    (ib,) = list(iter_image_bytes(spec, rows[:1]))
    assert ib.data == png and ib.reason is None
    server.sent = 0
    (ib,) = list(iter_image_bytes(spec, rows[1:]))  # a member in the middle of the archive
    assert ib.data == _noise(256 * 1024, 24)
    assert server.sent < size / 8, (server.sent, size)  # one member: ~1 MiB block + the directory, not 12 MB
    print(f"zip {size} bytes: discovery read {after_discovery}, one member read {server.sent}")
    assert server.full_gets == 0


def test_one_parquet_row_group_is_read_by_ranges(tmp_path: Path, served) -> None:
    url, server = served
    n = 40
    img_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "id": [f"p{i}" for i in range(n)],
            "image": pa.array([{"bytes": _noise(256 * 1024, i), "path": f"{i}.webp"} for i in range(n)], img_t),
            "text": [f"1girl, tag{i}" for i in range(n)],
        }
    )
    pq.write_table(table, tmp_path / "imgs.parquet", row_group_size=1, compression="none")
    size = os.path.getsize(tmp_path / "imgs.parquet")

    shards = Source(f"{url}/imgs.parquet", shard_rows=1).discover()  # the footer only
    assert len(shards) == n and all(s.image_field == "image" for s in shards)
    assert server.sent < size / 8, (server.sent, size)

    spec = shards[20]
    server.sent = 0
    raw = pa.Table.from_batches(list(iter_shard(spec)), schema=RAW_SCHEMA)
    assert raw.column("id").to_pylist() == ["p20"] and raw.column("text").to_pylist() == ["1girl, tag20"]
    text_bytes = server.sent
    images = list(iter_image_bytes(spec, raw.to_pylist()))
    assert [ib.data for ib in images] == [table.column("image")[20].as_py()["bytes"]]
    assert server.sent < size / 8, (text_bytes, server.sent, size)  # one row group, not the file
    print(f"parquet {size} bytes: one row group's text {text_bytes}, + its image {server.sent}")
    assert server.full_gets == 0
