"""Typed errors. Each message says what went wrong and what to do about it."""

from __future__ import annotations


class CharmetaError(Exception):
    """Base class for errors the user can act on."""


class ConfigError(CharmetaError):
    """A setting is missing or wrong; the message names the setting and valid choices."""


class SourceError(CharmetaError):
    """A source path / URI / shard cannot be read as a whole (bad rows never raise this)."""


class ModelLoadError(CharmetaError):
    """A model backend could not be loaded (missing files, unsafe weights, no network)."""


class UnsafeInputError(CharmetaError):
    """Input tried to escape its folder, run code, or exceed a size limit."""
