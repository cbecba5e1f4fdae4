"""Synthetic caption generator: realistic, unique, deterministic rows at millions per minute.

``generate(rows, shards, output, fmt, seed)`` is the API; ``charmeta synth`` the CLI.
"""

from charmeta.synth.runner import SynthSummary, generate, shard_plan

__all__ = ["SynthSummary", "generate", "shard_plan"]
