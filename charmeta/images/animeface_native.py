"""animeface's detector, fed pixels in the memory layout its C extension reads - whatever Pillow is installed.

Why this module exists: ``animeface.detect(im)`` passes ``im.getdata()`` (Pillow's
internal ``ImagingCore`` object) to its C extension, which was compiled against the
Pillow headers of 2022 and reads that object's memory directly: the ``Imaging``
pointer at offset 16 of the Python object, then ``mode`` (a ``char[7]`` string at
offset 0), ``xsize``/``ysize`` (offsets 20/24) and the row pointers ``image8`` /
``image32`` (offsets 40/48) - read off the disassembly of ``_nvxs.detect`` in the
animeface 2.0.3 wheel. Pillow 12 changed ``mode`` to an enum (and later releases
moved more), so under Pillow 12.3 and 13 the extension reads garbage and silently
finds **no face at all** (measured: 0 of 15 real drawings under Pillow 12.3.0; the
same drawings give 1 face each under Pillow 11.0.0).

The fix builds that old ``Imaging`` struct with ``ctypes`` over a numpy RGBX
buffer we own and passes a ctypes object whose ``b_ptr`` field - also at offset 16
of a CPython ``CDataObject`` - points at it. The extension then reads exactly the
pixels it was written for; results are identical to ``animeface.detect`` under
Pillow 11 (boxes and likelihoods, checked on the shipped drawings). No Pillow
object ever reaches the C code, so a Pillow upgrade cannot break it again; the
guard test on ``samples/drawings`` fails if detection stops working for any reason.

Colors: the extension's per-face hair / eye / skin colors come from a k-means with
a global random state (the same image gave hair (157,76,109) then (210,117,66)).
``detect`` seeds it (``nv_srand``) before every call, so a record's colors are
reproducible, and serialises calls with a lock (the state is process-global).
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from PIL import Image

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]  # x, y, w, h

_LOCK = threading.Lock()
SEED = 20130101  # any fixed value: it only makes the colour k-means reproducible
#: The animeface releases whose ``_nvxs`` was checked to read the struct below (disassembly of 2.0.3).
#: Another release goes through its own ``animeface.detect`` (it may have fixed the Pillow problem
#: differently, and feeding it this struct could crash); the guard test then says whether it detects.
VERIFIED_VERSIONS = ("2.0.3",)


class _Imaging(ctypes.Structure):
    """``struct ImagingMemoryInstance`` as animeface 2.0.3 was compiled against it (Pillow <= 11 headers)."""

    _fields_ = [
        ("mode", ctypes.c_char * 7),  # IMAGING_MODE_LENGTH = 6 + 1
        ("type", ctypes.c_int),
        ("depth", ctypes.c_int),
        ("bands", ctypes.c_int),
        ("xsize", ctypes.c_int),  # offset 20
        ("ysize", ctypes.c_int),  # offset 24
        ("palette", ctypes.c_void_p),
        ("image8", ctypes.c_void_p),  # offset 40: rows of 1-byte pixels ("L")
        ("image32", ctypes.c_void_p),  # offset 48: rows of 4-byte pixels ("RGB" is stored RGBX)
        ("image", ctypes.c_void_p),
    ]


def _check_layout() -> None:
    """The offsets the extension reads (see module docstring); a different ABI must fail loudly, not read garbage."""
    offsets = {name: getattr(_Imaging, name).offset for name in ("xsize", "ysize", "image8", "image32")}
    if offsets != {"xsize": 20, "ysize": 24, "image8": 40, "image32": 48} or ctypes.sizeof(ctypes.c_void_p) != 8:
        raise RuntimeError(f"unexpected Imaging struct layout on this platform: {offsets}")


@dataclass(frozen=True)
class FaceHit:
    """One detected face with the colours animeface samples around it (RGB)."""

    box: Box
    likelihood: float
    hair: RGB
    left_eye: RGB
    right_eye: RGB
    skin: RGB
    left_eye_box: Box
    right_eye_box: Box


@cache
def _modules() -> tuple[Any, Any]:
    """(the ``_nvxs`` extension, its bundled ``libnvxs`` for seeding); ImportError when animeface is absent."""
    from importlib.metadata import version

    import animeface
    from animeface import _nvxs

    if version("animeface") not in VERIFIED_VERSIONS:
        return None, None
    _check_layout()
    if not hasattr(_nvxs, "__file__") or not str(_nvxs.__file__).endswith((".so", ".pyd")):
        raise ImportError("animeface._nvxs C extension is missing (pure-Python stub installed)")
    site = os.path.dirname(os.path.dirname(animeface.__file__))
    libs = sorted(glob.glob(os.path.join(site, "animeface.libs", "libnvxs*")))
    lib = None
    if libs:
        lib = ctypes.CDLL(libs[0])  # the copy the extension already loaded: same global random state
        lib.nv_srand.argtypes = [ctypes.c_ulong]
        lib.nv_srand.restype = None
    return _nvxs, lib


def available() -> bool:
    try:
        _modules()
        return True
    except Exception:
        return False


def _as_hit(r: dict[str, Any]) -> FaceHit:
    def box(v: Any) -> Box:
        return tuple(int(x) for x in v)  # type: ignore[return-value]

    def rgb(v: Any) -> RGB:
        return tuple(int(x) for x in v)  # type: ignore[return-value]

    return FaceHit(
        box=box(r["face_box"]),
        likelihood=float(r["likelihood"]),
        hair=rgb(r["hair_color"]),
        left_eye=rgb(r["left_eye_color"]),
        right_eye=rgb(r["right_eye_color"]),
        skin=rgb(r["skin_color"]),
        left_eye_box=box(r["left_eye_box"]),
        right_eye_box=box(r["right_eye_box"]),
    )


def detect(img: Image.Image) -> list[FaceHit]:
    """Anime faces in ``img`` (any mode; alpha is dropped, so flatten transparent images first)."""
    nvxs, lib = _modules()
    if nvxs is None:  # unverified animeface release: its own entry point
        import animeface

        return [
            FaceHit(
                box=(f.face.pos.x, f.face.pos.y, f.face.pos.width, f.face.pos.height),
                likelihood=float(f.likelihood),
                hair=(f.hair.color.r, f.hair.color.g, f.hair.color.b),
                left_eye=(f.left_eye.color.r, f.left_eye.color.g, f.left_eye.color.b),
                right_eye=(f.right_eye.color.r, f.right_eye.color.g, f.right_eye.color.b),
                skin=(f.skin.color.r, f.skin.color.g, f.skin.color.b),
                left_eye_box=(f.left_eye.pos.x, f.left_eye.pos.y, f.left_eye.pos.width, f.left_eye.pos.height),
                right_eye_box=(f.right_eye.pos.x, f.right_eye.pos.y, f.right_eye.pos.width, f.right_eye.pos.height),
            )
            for f in animeface.detect(img.convert("RGB"))
        ]
    rgbx = np.ascontiguousarray(np.asarray(img.convert("RGB").convert("RGBX"), dtype=np.uint8))
    h, w = rgbx.shape[:2]
    base = rgbx.ctypes.data
    rows = (ctypes.c_void_p * h)(*range(base, base + h * w * 4, w * 4))
    im = _Imaging(b"RGB", 0, 8, 3, w, h, None, None, ctypes.addressof(rows), ctypes.addressof(rows))
    with _LOCK:
        if lib is not None:
            lib.nv_srand(SEED)
        results = nvxs.detect(im)  # the ctypes object's b_ptr (offset 16) is read as the Imaging pointer
    del rows, rgbx  # kept alive until here: the extension reads them during detect
    return [_as_hit(r) for r in results]
