"""``ImageEmbedder`` resource: which vision-language model embeds the images, by config or env.

``backend``: ``none`` (default: images are decoded, validated and counted, and
image rows get their caption's attributes, but no model is loaded), ``clip``,
``siglip``, ``open_clip`` or ``auto`` (from the model's config.json). ``model``
is a Hugging Face id (offline cache unless ``allow_download``) or a local
folder. Empty fields fall back to ``CHARMETA_IMAGE_*`` (see
``charmeta.images.config``); the embedding cache defaults to
``~/.cache/charmeta/embeddings`` and the heads to ``<output>/attribute_heads``.

Swapping the backend is a run-config change (launchpad / ``charmeta run
--embedder``) or ``CHARMETA_EMBEDDER=...``; no code edit. The resource only
builds a spec string; nothing here imports torch.
"""

from __future__ import annotations

from dagster import ConfigurableResource

from charmeta_dagster.image_stages import embedder_config_from_env, make_spec


class ImageEmbedderResource(ConfigurableResource):
    """Image embedder backend + model for ``normalized_images`` / ``embeddings`` / ``attribute_heads``."""

    backend: str = "none"
    model: str = ""
    revision: str = ""
    device: str = ""
    cache_dir: str = ""
    heads_dir: str = ""
    counter: str = ""
    batch_size: int = 32
    #: WD tagger (local folder with model.onnx + selected_tags.csv, or HF id); "" = none (or CHARMETA_TAGGER_MODEL)
    tagger: str = ""
    tagger_revision: str = ""

    def spec(self) -> str:
        """The embedder spec the Dagster-free stages take (also part of the fingerprints)."""
        return make_spec(
            self.backend,
            model=self.model,
            revision=self.revision,
            device=self.device,
            cache_dir=self.cache_dir,
            heads_dir=self.heads_dir,
            counter=self.counter,
            batch_size=self.batch_size if self.batch_size != 32 else None,
            tagger=self.tagger,
            tagger_revision=self.tagger_revision,
        )


def image_embedder_from_env(backend: str | None = None) -> ImageEmbedderResource:
    return ImageEmbedderResource(**embedder_config_from_env(backend))  # type: ignore[arg-type]


def embedder_spec(image_embedder: ImageEmbedderResource | None, legacy: str = "none") -> str:
    """The resource's spec; ``ExtractorResource.embedder`` (a backend name) when the resource says none."""
    if image_embedder is not None and (image_embedder.backend != "none" or image_embedder.tagger):
        return image_embedder.spec()
    return legacy or "none"
