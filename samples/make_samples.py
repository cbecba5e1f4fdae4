"""Rebuild the bundled demo sample from tests/data/dev_set.jsonl (real caption formats).

Why a script: the sample mixes every supported shard format, and the binary
ones (Parquet, tar) are easier to review as the code that wrote them. Run from
the repo root: ``.venv/bin/python samples/make_samples.py``. 44 records in all,
some multi-character (dev-set rows flagged ``multi_character``), some bad on
purpose (broken JSON line, empty text, a CSV row with extra fields, a tar sample
without caption, a null caption). The 15 pictures of ``drawings/`` (with their
``.txt`` captions and ``labels.toml``) are not written by this script: their
sources and licenses are listed in ``LICENSES.md``.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent
DEV = ROOT.parent / "tests" / "data" / "dev_set.jsonl"


def main() -> None:
    rows = [json.loads(line) for line in DEV.read_text("utf-8").splitlines() if line.strip()]
    by_fmt: dict[str, list[dict]] = {}
    for r in rows:
        by_fmt.setdefault(r["format"], []).append(r)
    multi = [r for r in rows if r["multi_character"]]
    v31, v30, dan, prose = by_fmt["v31"], by_fmt["v30"], by_fmt["danbooru"], by_fmt["prose"]

    # 1. pretty-printed JSON array of objects with `ordered_tags` (the 860k-json layout); 10 records
    recs = [{"id": r["id"], "ordered_tags": r["text"]} for r in v31[:7] + multi[:2]]
    recs.append({"id": "bad-null-caption", "ordered_tags": None})
    (ROOT / "ordered_tags.json").write_text(json.dumps(recs, indent=2, ensure_ascii=False) + "\n", "utf-8")

    # 2. JSON Lines with `text`; 10 records incl. one broken line and one empty text
    lines = [json.dumps({"id": r["id"], "text": r["text"]}, ensure_ascii=False) for r in v30[:5] + multi[2:4] + prose[:1]]
    lines.insert(3, '{"id": "bad-broken-json", "text": "1girl, solo, blue')
    lines.append(json.dumps({"id": "bad-empty-text", "text": "   "}))
    (ROOT / "captions.jsonl").write_text("\n".join(lines) + "\n", "utf-8")

    # 3. Parquet with raw Danbooru `tag_string` + `rating`; 8 records
    sel = dan[:7] + multi[4:5]
    table = pa.table({
        "post_id": [r["id"] for r in sel],
        "tag_string": [r["text"] for r in sel],
        "rating": ["g"] * len(sel),
    })
    pq.write_table(table, ROOT / "danbooru_posts.parquet", row_group_size=4)

    # 4. CSV with `caption` (prose); 5 records incl. a row with too many fields
    buf = io.StringIO()
    import csv

    w = csv.writer(buf)
    w.writerow(["id", "caption"])
    for r in prose[1:5]:
        w.writerow([r["id"], r["text"]])
    w.writerow(["bad-extra-fields", "a girl with red hair", "unexpected"])
    (ROOT / "prose.csv").write_text(buf.getvalue(), "utf-8")

    # 5. .txt sidecars (image + caption pairs; images omitted to keep the repo small); 3 records
    side = ROOT / "sidecars"
    side.mkdir(exist_ok=True)
    for r in v31[7:10]:
        (side / f"{r['id']}.txt").write_text(r["text"] + "\n", "utf-8")

    # 6. WebDataset tar: <key>.txt / <key>.json members; 8 samples, one without caption
    with tarfile.open(ROOT / "webdataset-000000.tar", "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))

        for i, r in enumerate(v30[5:10] + multi[5:7]):
            key = f"{i:06d}"
            if i % 2:
                add(f"{key}.json", json.dumps({"id": r["id"], "tags": r["text"]}).encode())
            else:
                add(f"{key}.txt", r["text"].encode())
        add("000099.cls", b"0")  # a sample with no text member -> invalid, not dropped
    print("samples written to", ROOT)


if __name__ == "__main__":
    main()
