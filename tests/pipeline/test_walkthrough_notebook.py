"""``notebooks/walkthrough.ipynb`` is committed without outputs and executes top to bottom.

The execution test runs the real pipeline (``charmeta run`` on the bundled sample) inside
the notebook's kernel, so it is marked slow; CI runs it. The stripped-outputs check is
fast and runs everywhere, so a notebook saved with outputs fails the default suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "walkthrough.ipynb"


def test_notebook_is_committed_without_outputs() -> None:
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) >= 10
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"cells {dirty} carry outputs: clear them (jupyter nbconvert --clear-output --inplace {NOTEBOOK})"


@pytest.mark.slow
def test_notebook_executes_and_shows_each_stage(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("matplotlib")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError with the failing cell's traceback
    text = "\n".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "exit code 0" in text
    for stage in ("raw_shards", "normalized_records", "attribute_predictions", "validated_records"):
        assert stage in text, stage
    assert "broken JSON line" in text  # the bad row of the sample, kept with its reason
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3, "the status / distribution / storage plots were not rendered"
    (tmp_path / "walkthrough.executed.ipynb").write_text(nbformat.writes(nb))
