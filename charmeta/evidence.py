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
        self.count_groups: dict[str, int] = {}  # girl / boy / other -> n
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
