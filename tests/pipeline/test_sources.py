"""Sources: every shard format, fixed-size row shards, hf:// through a local stand-in."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.dirfs import DirFileSystem

from charmeta.errors import SourceError
from charmeta.pipeline.stages import Store
from charmeta.sources import RAW_SCHEMA, Source, iter_shard, partition_key


def read_all(source: Source) -> tuple[list, pa.Table]:
    shards = source.discover()
    tables = [pa.Table.from_batches(list(iter_shard(s)), schema=RAW_SCHEMA) for s in shards]
    return shards, pa.concat_tables(tables)


def test_bundled_sample_every_format_one_row_per_input(sample_dir: Path) -> None:
    shards, table = read_all(Source(str(sample_dir)))
    assert {s.fmt for s in shards} == {"json", "jsonl", "parquet", "csv", "txt", "tar"}
    assert table.num_rows == 44
    by_file: dict[str, list[int]] = {}
    for shard, pos in zip(table.column("source_shard").to_pylist(), table.column("source_position").to_pylist()):
        by_file.setdefault(shard, []).append(pos)
    assert all(len(p) == len(set(p)) for p in by_file.values())  # no duplicated positions
    reasons = {r for r in table.column("reason").to_pylist() if r}
    assert any(r.startswith("broken JSON line") for r in reasons)
    assert any("CSV row has 3 fields" in r for r in reasons)
    assert any("no text member" in r for r in reasons)
    assert any("is null" in r for r in reasons)
    ids = table.column("id").to_pylist()
    assert "dev-0016" in ids  # ids are taken from the records when present
    # text auto-detection: ordered_tags (json), text (jsonl), tag_string (parquet), caption (csv)
    assert table.filter(pa.compute.is_valid(table.column("text"))).num_rows >= 38


def test_jsonl_fixed_size_shards_cover_every_line_once(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    lines = [json.dumps({"id": f"r{i}", "text": f"1girl, tag{i}"}) for i in range(95)]
    lines[50] = "{not json"
    path.write_text("\n".join(lines) + "\n")
    shards, table = read_all(Source(str(path), shard_rows=20))
    assert len(shards) == 5
    assert [s.start for s in shards] == [0, 20, 40, 60, 80]
    assert table.column("source_position").to_pylist() == list(range(95))
    assert table.column("reason").to_pylist()[50].startswith("broken JSON line")
    assert len({s.key for s in shards}) == 5


def test_parquet_row_groups_are_packed_and_text_column_configurable(tmp_path: Path) -> None:
    path = tmp_path / "posts.parquet"
    n = 1000
    pq.write_table(
        pa.table(
            {"post_id": list(range(n)), "my_caption": [f"1girl, tag{i}" for i in range(n)], "tags": [["ignored"]] * n}
        ),
        path,
        row_group_size=100,
    )
    shards, table = read_all(Source(str(path), shard_rows=250, text_field="my_caption"))
    assert len(shards) == 5  # 100-row groups packed to <= 250 rows
    assert table.num_rows == n and table.column("source_position").to_pylist() == list(range(n))
    assert table.column("text").to_pylist()[7] == "1girl, tag7"
    assert table.column("id").to_pylist()[7] == "7"
    # auto-detection picks the list column `tags` and joins it
    _, auto = read_all(Source(str(path), shard_rows=10_000))
    assert auto.column("text").to_pylist()[0] == "ignored"


def test_huge_parquet_row_group_is_split(tmp_path: Path) -> None:
    path = tmp_path / "one_group.parquet"
    pq.write_table(pa.table({"text": [f"t{i}" for i in range(1000)]}), path, row_group_size=1000)
    shards, table = read_all(Source(str(path), shard_rows=300))
    assert len(shards) >= 3
    assert table.column("source_position").to_pylist() == list(range(1000))


def test_csv_and_tar_and_pretty_json_objects(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text('id,caption\n1,"1girl, red hair"\n2,"multi\nline"\n')
    # concatenated pretty-printed objects (not an array)
    (tmp_path / "b.json").write_text(
        json.dumps({"id": "x", "ordered_tags": ["1girl", "solo"]}, indent=2)
        + "\n"
        + json.dumps({"id": "y", "ordered_tags": "1boy"}, indent=2)
    )
    with tarfile.open(tmp_path / "c.tar", "w") as tar:
        for name, data in [("k1.jpg", b"\xff\xd8"), ("k1.txt", b"1girl, smile"), ("k2.json", b'{"caption": "1boy"}')]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    _, table = read_all(Source(str(tmp_path)))
    rows = {r["id"]: r for r in table.to_pylist()}
    assert rows["2"]["text"] == "multi\nline"  # quoted newline stays one CSV record
    assert rows["x"]["text"] == "1girl, solo" and rows["y"]["text"] == "1boy"
    assert rows["k1"]["image_member"] == "k1.jpg" and rows["k1"]["text"] == "1girl, smile"
    assert rows["k2"]["text"] == "1boy"


def test_unreadable_file_becomes_one_invalid_row(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    shards, table = read_all(Source(str(tmp_path)))
    assert [s.fmt for s in shards] == ["broken"]
    assert table.num_rows == 1 and "cannot read parquet" in table.column("reason")[0].as_py()


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        Source(str(tmp_path / "nope")).discover()


class _HubStandIn(DirFileSystem):
    """Local stand-in for HfFileSystem: same URL form, files from a temp folder."""

    protocol = "hf"
    root_marker = ""

    def __init__(self, *args, **kwargs):  # noqa: ANN002, ANN003
        super().__init__(path=_HubStandIn.base, fs=fsspec.filesystem("file"))

    @classmethod
    def _strip_protocol(cls, path):  # noqa: ANN001, ANN206
        path = path[len("hf://") :] if path.startswith("hf://") else path
        return path.rstrip("/")

    def unstrip_protocol(self, name: str) -> str:
        return "hf://" + name


def test_hf_uri_glob_is_streamed_through_fsspec(tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "datasets" / "org" / "name" / "data"
    repo.mkdir(parents=True)
    for i in range(2):
        pq.write_table(
            pa.table({"ordered_tags": [f"1girl, t{i}-{j}" for j in range(30)]}),
            repo / f"train-{i}.parquet",
            row_group_size=10,
        )
    (repo / "notes.md").write_text("ignored")
    _HubStandIn.base = str(tmp_path / "hub")
    fsspec.register_implementation("hf", _HubStandIn, clobber=True)
    try:
        src = Source("hf://datasets/org/name/data/*.parquet", shard_rows=20)
        assert not src.is_local
        shards, table = read_all(src)
    finally:
        from huggingface_hub import HfFileSystem

        fsspec.register_implementation("hf", HfFileSystem, clobber=True)
    assert all(s.uri.startswith("hf://datasets/org/name/data/") for s in shards)
    assert [s.relpath for s in shards][:1] == ["train-0.parquet"]
    assert len(shards) == 4 and table.num_rows == 60


def test_partition_keys_are_safe_and_store_rejects_escapes(tmp_path: Path) -> None:
    key = partition_key("../../etc/passwd", 0)
    assert "/" not in key and ".." not in key
    assert partition_key("a/b.json", 0) != partition_key("a_b.json", 0)
    store = Store(str(tmp_path))
    assert store.path("raw_shards", key).startswith(str(tmp_path.resolve()))
    for bad in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(ValueError):
            store.path("raw_shards", bad)
