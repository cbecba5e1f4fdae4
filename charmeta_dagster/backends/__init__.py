"""Model backends of the code location: one ``ConfigurableResource`` subclass per backend.

Each swappable model is an abstract resource in ``base.py`` with one subclass per
backend in a module of this package:

=====================  =========================  =================================================
part (abstract class)  module                     backends (``kind``)
=====================  =========================  =================================================
``ImageEmbedderResource``  ``embedders.py``       ``none``, ``auto``, ``clip``, ``siglip``, ``open_clip``
``TaggerResource``         ``taggers.py``         ``none``, ``wd`` (WD ONNX tagger)
``CaptionerResource``      ``captioners.py``      ``none``, ``transformers`` (a VLM)
``FaceCounterResource``    ``counters.py``        ``auto``, ``animeface``, ``haar``, ``animeface_haar``, ``none``
``LLMReaderResource``      ``llm_readers.py``     ``none``, ``openai`` (endpoint by URL), ``transformers``
=====================  =========================  =================================================

The image parts are fields of the ``image_models`` resource
(``charmeta_dagster.defs.resources.ImageModelsResource``), each a discriminated
union over the subclasses, so the launchpad picks the backend per run::

    resources:
      image_models:
        config:
          embedder: {clip: {model: openai/clip-vit-base-patch32}}
          tagger: {wd: {model: /models/wd-vit-tagger-v3, batch_size: 32}}
          counter: {animeface: {}}
          captioner: {transformers: {model: /models/blip-base}}

and the code location's defaults come from ``charmeta.settings.Settings``
(``charmeta run --embedder clip --tagger DIR --captioner DIR --counter animeface``, or the
``CHARMETA_*`` environment of ``charmeta ui``).

How a new backend plugs in (a file and a class):

1. In a new module of this package (every module here is imported when the package
   is, so nothing else registers it), subclass the part's abstract class with a
   ``kind: Literal["name"] = "name"`` field (a Python identifier: it is the run
   config key), the operator's fields, ``spec_fields()`` (what the Dagster-free core
   needs, as spec fields; they become part of the image stages' fingerprints) and,
   when ``Settings`` carries its fields, ``from_settings``.
2. Teach the core (``charmeta.pipeline.image_stages`` / ``charmeta.images``) to
   read those spec fields; the resource stays thin and never imports a model library.

The LLM reader is a field of the ``extractor`` resource
(``charmeta_dagster.defs.resources.ExtractorResource.llm_reader``):
``extractor: {config: {llm_reader: {openai: {url: http://127.0.0.1:8000}}}}``.

A new *part* adds an abstract class to ``base.py``, its
backends in their own module, a field on ``ImageModelsResource`` (union built
with ``one_of``) and a ``Settings`` entry choosing the default.
"""

from __future__ import annotations

import importlib
import pkgutil

from charmeta_dagster.backends.base import (
    CaptionerResource,
    FaceCounterResource,
    ImageBackend,
    ImageEmbedderResource,
    LLMReaderResource,
    TaggerResource,
    backend_for,
    backends_of,
)

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = [
    "CaptionerResource",
    "FaceCounterResource",
    "ImageBackend",
    "ImageEmbedderResource",
    "LLMReaderResource",
    "TaggerResource",
    "backend_for",
    "backends_of",
]
