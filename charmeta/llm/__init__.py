"""LLM reader of uncertain text entries (``reader``), its backends (``backends``) and contract prompt / schema (``contract``)."""
