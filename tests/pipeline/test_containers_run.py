"""The 'done when' of the containers issue: the same 20 captioned images packed as a WebDataset
tar, a zip, a tgz, Parquet with image bytes, a save_to_disk Arrow folder, an imagefolder with
metadata.jsonl (and .caption sidecars) give identical records through `charmeta run`, every
image decoded by the image stage from the shard itself."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from charmeta.bench.containers import LAYOUTS, drawn_samples, write_layouts
from charmeta.cli import main

pytest.importorskip("PIL")

CAPTIONS = [
    "1girl, solo, blonde_hair, long_hair, blue_eyes, school_uniform",
    "1boy, solo, black_hair, short_hair, red_eyes",
    "1girl, solo, red_hair, green_eyes, kimono",
    "2girls, blue_hair, pink_hair",
    "1girl, white_hair, purple_eyes, smile",
]
#: Columns that name where a record came from, the only ones allowed to differ by container.
SOURCE_COLUMNS = ("source_shard",)


@pytest.mark.slow
def test_same_images_in_every_container_give_identical_records(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CHARMETA_WORKERS", "1")
    monkeypatch.delenv("CHARMETA_EMBEDDER", raising=False)
    samples = drawn_samples(20, CAPTIONS)
    src = tmp_path / "src"
    write_layouts(samples, src)
    # beside them: the same images without any caption (pixels only), and a Parquet shard
    # whose image cells are partly null (those rows keep their caption-only record)
    extra = src / "extra"
    (extra / "captionless").mkdir(parents=True)
    for key, img, _cap in samples:
        (extra / "captionless" / f"bare-{key}.png").write_bytes(img)
    img_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    pq.write_table(
        pa.table(
            {
                "id": [f"half-{k}" for k, _, _ in samples[:4]],
                "image": pa.array(
                    [{"bytes": b, "path": None} if i % 2 else None for i, (_, b, _) in enumerate(samples[:4])], img_t
                ),
                "text": [c for _, _, c in samples[:4]],
            }
        ),
        extra / "half.parquet",
    )
    out = tmp_path / "out"
    assert main(["run", "--source", str(src), "--output", str(out)]) == 0

    by_layout: dict[str, dict[str, dict]] = {}
    extras: dict[str, dict] = {}
    for f in sorted((out / "validated_records").glob("*.parquet")):
        for r in pq.read_table(f).to_pylist():
            layout = r["source_shard"].split("/", 1)[0]
            if layout == "extra":
                extras[r["id"]] = r
                continue
            by_layout.setdefault(layout, {})[r["id"]] = {k: v for k, v in r.items() if k not in SOURCE_COLUMNS}
    assert sorted(by_layout) == sorted(LAYOUTS)
    reference = by_layout["webdataset"]
    assert sorted(reference) == [k for k, _, _ in samples]  # every row accounted for, once
    for layout, records in by_layout.items():
        assert records == reference, layout
    # the records are image records: the image stage decoded every image of every container
    assert {r["input_kind"] for r in reference.values()} == {"image"}
    assert reference["000000"]["hair_color"] == "Blonde" and reference["000001"]["gender"] == "Male"
    images = 0
    for f in sorted((out / "normalized_images").glob("*.parquet")):
        t = pq.read_table(f, columns=["status", "orig_height", "sha256"])
        assert t.column("status").to_pylist() == ["ok"] * t.num_rows, f.name
        assert set(t.column("orig_height").to_pylist()) == {96}
        images += t.num_rows
    assert images == 20 * len(LAYOUTS) + 20 + 2  # + the captionless images + the 2 non-null cells

    bare = [r for k, r in extras.items() if k.startswith("bare-")]
    assert len(bare) == 20 and {r["input_kind"] for r in bare} == {"image"}  # pixels only, every one a record
    assert {r["status"] for r in bare} == {"ok"}  # no caption is not an error: the pixels are the evidence
    half = {k: r for k, r in extras.items() if k.startswith("half-")}
    assert len(half) == 4
    assert [half[f"half-{k}"]["input_kind"] for k, _, _ in samples[:4]] == ["tags", "image", "tags", "image"]
    assert half["half-000000"]["hair_color"] == "Blonde"  # a null image: the caption still counts
