"""Benchmark machinery for ``charmeta bench``.

One job per module: ``data`` (synthetic input, reused between runs),
``ontology`` (a tolerant tag -> attribute table for the floor), ``floor`` (the
bare DuckDB query every pipeline is compared with), ``worker`` (stages run in a
child process so each has its own peak RSS), ``rss`` (process-tree sampling),
``stages`` (run and time one stage), ``machine`` and ``report`` (what ran where).
"""
