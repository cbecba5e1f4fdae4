"""What the readers (tag path, prose path, image backends) collect before resolution.

Readers only *collect*: every observation is appended with its strength and its
source text, so the resolvers can apply the contract's rules (priorities,
conflicts, implied values) in one place and every decision can cite its evidence.
"""

from __future__ import annotations

#: One observation: ``(value, strength, source)``. A plain tuple: millions are made per run.
Observation = tuple[str, float, str]


class Evidence:
    """Everything observed about one entry, before any rule is applied.

    A plain slotted class with a hand-written ``__init__``: one is built per
    entry, and dataclass default factories cost ~15 us each time.
    """

    __slots__ = (
        "attrs",
        "multi",
        "garments",
        "garment_colors",
        "nude",
        "dress_styles",
        "counts",
        "count_groups",
        "count_floors",
        "solo",
        "prose_count",
        "ratings",
        "gender_tags",
        "minor",
        "sexual",
        "exclude",
        "lists",
        "characters",
        "copyrights",
        "artists",
    )

    def __init__(self) -> None:
        self.attrs: dict[str, list[Observation]] = {}
        self.multi: dict[str, list[str]] = {}  # attribute -> marker tags
        # (rank, garment index, source, display override from prose / name_from_tag garments)
        self.garments: list[tuple[tuple[int, int, int], int, str, str | None]] = []
        self.garment_colors: list[tuple[str, str, str]] = []  # (color, form, source)
        self.nude: list[str] = []
        self.dress_styles: list[tuple[str, str]] = []
        self.counts: dict[str, int] = {}  # count tag -> n (distinct tags count once)
        self.count_groups: dict[str, int] = {}  # girl / boy / other -> n (numbered tags: their sum)
        # girl / boy / other -> at least n (``multiple_girls`` 2, ``6+girls`` 6); None until one is seen
        self.count_floors: dict[str, int] | None = None
        self.solo = False
        self.prose_count: int | None = None  # people counted in prose
        self.ratings: list[str] = []
        self.gender_tags: list[tuple[str, str]] = []  # (value, source)
        self.minor: list[str] = []
        self.sexual: list[str] = []
        self.exclude: list[tuple[str, str]] = []  # (reason, source)
        self.lists: dict[str, list[tuple[str, str]]] = {}
        self.characters: list[str] = []
        self.copyrights: list[str] = []
        self.artists: list[str] = []

    def add_count(self, tag: str, group: str, value: int) -> None:
        """One count tag, once per distinct tag: ``n`` adds to its group, ``-n`` (``multiple_*``,
        ``6+*``) says the group holds at least ``n`` (contract section 2: ``2girls, multiple_girls`` is 2)."""
        if tag in self.counts:
            return
        self.counts[tag] = value
        if value > 0:
            self.count_groups[group] = self.count_groups.get(group, 0) + value
        else:
            floors = self.count_floors
            if floors is None:
                floors = self.count_floors = {}
            floors[group] = max(floors.get(group, 0), -value)
            self.count_groups.setdefault(group, 0)

    def group_counts(self) -> dict[str, int]:
        """Characters per group: the numbered tags' sum, raised to the floor a ``multiple_*`` / ``6+*`` tag sets."""
        floors = self.count_floors
        if not floors:
            return self.count_groups
        return {g: max(n, floors.get(g, 0)) for g, n in self.count_groups.items()}

    def add(self, key: str, value: str, strength: float, source: str) -> None:
        obs = self.attrs.get(key)
        if obs is None:
            self.attrs[key] = [(value, strength, source)]
        else:
            obs.append((value, strength, source))

    def add_list(self, key: str, value: str, source: str) -> None:
        self.lists.setdefault(key, []).append((value, source))

    def add_multi(self, key: str, source: str) -> None:
        self.multi.setdefault(key, []).append(source)
