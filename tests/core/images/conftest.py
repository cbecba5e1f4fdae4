"""The image tests' fixtures and helpers live in ``tests/imagekit.py`` (the Dagster image test uses them too)."""

from imagekit import COUNT_TAGS, STUB_TAGS, solid, stub_extract, tiny_clip, tiny_siglip  # noqa: F401
