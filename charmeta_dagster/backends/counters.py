"""Character counter backends (``charmeta.images.counter``): run on the full-resolution decode.

``auto`` (the default) is animeface when its extension loads, else the OpenCV Haar
cascade; it stays out of the spec so the default fingerprints never changed.
Haar is a photo face model: on drawings it adds false faces (issue #16), so it is
never the default when animeface works.
"""

from __future__ import annotations

from typing import Any, Literal

from charmeta_dagster.backends.base import FaceCounterResource


class AutoCounter(FaceCounterResource):
    """animeface when it loads, else Haar."""

    kind: Literal["auto"] = "auto"

    def spec_fields(self) -> dict[str, Any]:
        return {}


class _NamedCounter(FaceCounterResource):
    def spec_fields(self) -> dict[str, Any]:
        return {"counter": self.setting_name()}


class AnimeFaceCounter(_NamedCounter):
    """The animeface detector (faces, hair and eye colours) of ``charmeta.images.animeface_native``."""

    kind: Literal["animeface"] = "animeface"


class HaarCounter(_NamedCounter):
    """OpenCV's frontal-face Haar cascade (photos)."""

    kind: Literal["haar"] = "haar"


class AnimeFaceHaarCounter(_NamedCounter):
    """Both detectors, boxes merged (mixed photo / drawing sources)."""

    kind: Literal["animeface_haar"] = "animeface_haar"
    setting = "animeface+haar"


class NoCounter(FaceCounterResource):
    """No counting: ``character_count`` comes from the caption alone."""

    kind: Literal["none"] = "none"

    def spec_fields(self) -> dict[str, Any]:
        return {"counter": "none"}
