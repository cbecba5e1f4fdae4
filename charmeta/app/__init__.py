"""The demo app (``charmeta app``): Gradio on 127.0.0.1 over the same core as the pipeline.

Why a package of small modules: everything the app shows is computed by plain,
Gradio-free functions (``views``, ``analyze``, ``batch``, ``dataset``) that tests
call directly; ``ui`` only lays those out in Gradio components. Nothing here
imports Dagster: the app calls ``charmeta.engine.Engine`` and
``charmeta.images.api`` exactly as ``charmeta extract`` and the pipeline stages do.
"""
