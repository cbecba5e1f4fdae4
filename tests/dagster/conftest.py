"""The image fixtures (tiny local models) for ``test_dagster_images.py``, from ``tests/imagekit.py``."""

import pytest

try:
    from imagekit import tiny_clip, tiny_siglip  # noqa: F401 - fixtures
except pytest.skip.Exception:  # no torch here: that test module skips itself
    pass
