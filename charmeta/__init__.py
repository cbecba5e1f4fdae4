"""charmeta: noisy character entries in, a clean schema-true attribute dataset out.

The core (this package) is Dagster-free; ``charmeta_dagster`` wraps it.
"""

__version__ = "0.1.0"
