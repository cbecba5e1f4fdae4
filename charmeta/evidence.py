"""What the readers (tag path, prose path, image backends) collect before resolution.

Readers only *collect*: every observation is appended with its strength and its
source text, so the resolvers can apply the contract's rules (priorities,
conflicts, implied values) in one place and every decision can cite its evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(slots=True)
class Observation:
    value: str
    strength: float
    source: str


@dataclass(slots=True)
class Evidence:
    """Everything observed about one entry, before any rule is applied."""

    attrs: dict[str, list[Observation]] = field(default_factory=dict)
    multi: dict[str, list[str]] = field(default_factory=dict)  # attribute -> marker tags
    garments: list[tuple[tuple[int, int, int], int, str, Optional[str]]] = field(default_factory=list)
    # (rank, garment index, source, display override from prose)
    garment_colors: list[tuple[str, str, str]] = field(default_factory=list)  # (color, form, source)
    nude: list[str] = field(default_factory=list)
    dress_styles: list[tuple[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # count tag -> n (distinct tags)
    count_groups: dict[str, int] = field(default_factory=dict)  # girl/boy/other -> n
    solo: bool = False
    prose_count: Optional[int] = None  # people counted in prose
    ratings: list[str] = field(default_factory=list)
    gender_tags: list[tuple[str, str]] = field(default_factory=list)  # (value, source)
    minor: list[str] = field(default_factory=list)
    sexual: list[str] = field(default_factory=list)
    exclude: list[tuple[str, str]] = field(default_factory=list)  # (reason, source)
    lists: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    characters: list[str] = field(default_factory=list)
    copyrights: list[str] = field(default_factory=list)
    artists: list[str] = field(default_factory=list)

    def add(self, key: str, value: str, strength: float, source: str) -> None:
        obs = self.attrs.get(key)
        if obs is None:
            self.attrs[key] = [Observation(value, strength, source)]
        else:
            obs.append(Observation(value, strength, source))

    def add_list(self, key: str, value: str, source: str) -> None:
        self.lists.setdefault(key, []).append((value, source))

    def add_multi(self, key: str, source: str) -> None:
        self.multi.setdefault(key, []).append(source)
