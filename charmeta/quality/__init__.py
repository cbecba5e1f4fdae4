"""Data-quality measures over partitions (Dagster-free): distribution drift against a reference."""
