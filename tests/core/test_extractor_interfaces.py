"""The extractors meet through the protocols of ``charmeta.extractors.base`` (issue #13).

The columnar modules read the tag extractor only through ``TagReader`` and never import
``charmeta.extractors.text``; ``caption_arrays`` never imports ``columnar`` (which imports
it): no import cycle among the three, type-checking and function-local imports included
(the import-linter contracts leave type-checking imports out, so this test reads the source).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from charmeta.engine import Engine
from charmeta.extractors import base, caption_arrays, columnar
from charmeta.extractors.text import TextExtractor
from charmeta.records import Extraction

FORBIDDEN = {
    columnar: {"charmeta.extractors.text"},
    caption_arrays: {"charmeta.extractors.text", "charmeta.extractors.columnar"},
    base: {"charmeta.extractors.text", "charmeta.extractors.columnar", "charmeta.extractors.caption_arrays"},
}


def _imported_modules(module) -> set[str]:
    """Every module an ``import`` / ``from ... import`` anywhere in the file names (any depth)."""
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", list(FORBIDDEN), ids=lambda m: m.__name__)
def test_no_import_back_into_the_extractor(module) -> None:
    assert not (_imported_modules(module) & FORBIDDEN[module])


def test_the_text_extractor_meets_every_protocol() -> None:
    ex = TextExtractor.default()
    assert isinstance(ex, base.AttributeExtractor)
    assert isinstance(ex, base.ColumnarCapable)
    assert isinstance(ex, base.TagReader)
    assert isinstance(ex.columnar, base.ColumnarPath)
    assert isinstance(ex.columnar.items, caption_arrays.ItemTable)
    # the reader the columnar path uses is the per-entry one: same readings, same memo
    t, hits, single = ex.read_item("Blue_Eyes ")
    assert t == "blue eyes" and hits and ex.read_item("Blue_Eyes ") is ex.read_item("Blue_Eyes ")
    ex.forget_items(0)
    assert ex.read_item("Blue_Eyes ") == (t, hits, single)


class _PlainExtractor:
    """An extractor without a columnar path (an image or LLM backend, say)."""

    name = "plain"

    def extract(self, item):
        return Extraction(reason=f"read {item}")

    def extract_batch(self, items):
        return [self.extract(i) for i in items]


def test_extract_texts_without_a_columnar_path_reads_per_entry() -> None:
    engine = Engine(text_extractor=_PlainExtractor())
    assert not isinstance(engine.text_extractor, base.ColumnarCapable)
    engine.prepare_batches()  # nothing to build
    out = engine.extract_texts(["a", None, "b"])
    assert [e.reason for e in out] == ["read a", "missing text (null)", "read b"]
    assert [e.status for e in out] == ["ok", "invalid", "ok"]
