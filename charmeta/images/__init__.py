"""Image path of charmeta: ingest, guarded decode, normalize, embed, predict, count characters.

Each module does one job and heavy dependencies (torch, transformers, opencv)
are imported inside the modules that need them, so ``import charmeta.images``
stays cheap and the text path keeps working on machines without the
``images`` extra.

Dagster-facing entry points are plain functions over Arrow tables:
``normalize.normalize_batch``, ``embed.embed_table``, ``predict.predict_table``,
``heads.train_heads``; the one-image entry point is ``api.extract_image``.
"""
