"""The pipeline runtime: Dagster-free, shared by ``charmeta run``, the UI, the daemon and sensors.

* ``graph`` - the stage graph, declared once (names, versions, upstreams, lineage, schemas);
* ``layout`` - every path under the output root, the commit markers, the path guard;
* ``stages`` - the per-stage bodies; ``chain`` - one pass per text partition;
  ``image_stages`` - the image side of the graph (torch only when a model is used);
* ``engines`` - extractor backends by name;
* ``executor`` - where partition tasks run (``Executor``: local process pool today);
* ``planner`` - pending partitions, fingerprints, run ranges;
* ``check_facts`` - what the quality checks read of a validated file, once.

Kept import-light on purpose: pool workers import it without Dagster.
"""
