"""The contract's resolution rules, one class per kind of rule.

Each attribute file in ``data/ontology`` names its resolver (``"resolver":
"priority"``); ``RESOLVERS`` maps that name to a class here. A resolver turns
the observations of one attribute into one ``Decision`` (value, confidence,
evidence, conflict). A new attribute with an existing kind of rule needs no
code; a new kind of rule is a new class registered in ``RESOLVERS``.
"""

from __future__ import annotations

from operator import itemgetter

from charmeta.contract import UNKNOWN
from charmeta.evidence import Evidence, Observation
from charmeta.ontology import EXPLICIT, AttributeRules, Garment, Ontology
from charmeta.records import Decision

#: Confidence of a value read from an exact tag / an implied tag / prose.
CONF_EXPLICIT = 0.95
CONF_IMPLIED = 0.75
CONF_CONFLICT = 0.5
#: Factor applied when the character count is unknown (no count tag, no `solo`).
UNKNOWN_COUNT_FACTOR = 0.9


def _sources(obs: list[Observation]) -> list[str]:
    seen: dict[str, None] = {}
    for o in obs:
        seen.setdefault(o[2], None)
    return list(seen)


def _conf(strength: float) -> float:
    return CONF_EXPLICIT if strength >= EXPLICIT else CONF_IMPLIED


def _unknown_conflict(obs: list[Observation]) -> Decision:
    return Decision(UNKNOWN, 0.0, _sources(obs), True)


class Resolver:
    """Base: observations of one attribute -> one decision (``None`` = no evidence)."""

    def __init__(self, rules: AttributeRules, ontology: Ontology) -> None:
        self.rules = rules
        self.key = rules.key
        self.order = {v: i for i, v in enumerate(rules.order)}

    def resolve(self, ev: Evidence) -> Decision | None:
        """Template: no observation -> None; one -> it; several -> ``resolve_many``."""
        obs = ev.attrs.get(self.key)
        if not obs:
            return None
        if len(obs) == 1:  # the common case, without building sets
            v, st, src = obs[0]
            return Decision(v, _conf(st), [src], False)
        return self.resolve_many(obs, ev)

    def resolve_many(self, obs: list[Observation], ev: Evidence) -> Decision | None:
        raise NotImplementedError


def _strongest(obs: list[Observation]) -> tuple[float, list[Observation], set[str]]:
    """The top strength, the observations that have it, and their distinct values."""
    top = max(o[1] for o in obs)
    strong = [o for o in obs if o[1] >= top]
    return top, strong, {o[0] for o in strong}


class PriorityResolver(Resolver):
    """Several values: the first in ``order`` wins; conflicting if the file says so."""

    def resolve_many(self, obs: list[Observation], ev: Evidence) -> Decision | None:
        top, strong, values = _strongest(obs)
        best = min(values, key=lambda v: self.order.get(v, len(self.order)))
        conflict = len(values) > 1 and self.rules.conflict_on_multiple
        conf = CONF_CONFLICT if conflict else _conf(top)
        return Decision(best, conf, _sources([o for o in strong if o[0] == best] if not conflict else strong), conflict)


class ExpressionResolver(PriorityResolver):
    """Like priority, but weak cues (`blush`) only count when nothing stronger is present."""

    def resolve_many(self, obs: list[Observation], ev: Evidence) -> Decision | None:
        weak = self.rules.extra.get("weak", ())
        strong = [o for o in obs if o[2] not in weak]
        if len(strong) == 1:
            v, st, src = strong[0]
            return Decision(v, _conf(st), [src], False)
        return super().resolve_many(strong or obs, ev)


class ColorResolver(Resolver):
    """One color -> it; a marker or two colors -> the multicolor value.

    Two hair colors in a single-character entry are marked conflicting (the
    contract says so); two eye colors are plain heterochromia unless the file
    sets ``conflict_on_multiple``.
    """

    def resolve(self, ev: Evidence) -> Decision | None:
        markers = ev.multi.get(self.key)
        if markers:
            obs = ev.attrs.get(self.key) or []
            return Decision(
                self.rules.extra["multicolor_value"], CONF_EXPLICIT, list(dict.fromkeys(markers)) + _sources(obs), False
            )
        return super().resolve(ev)

    def resolve_many(self, obs: list[Observation], ev: Evidence) -> Decision | None:
        if len({o[0] for o in obs}) == 1:
            return Decision(obs[0][0], _conf(max(o[1] for o in obs)), _sources(obs), False)
        conflict = self.rules.conflict_on_multiple
        return Decision(
            self.rules.extra["multicolor_value"], CONF_CONFLICT if conflict else CONF_EXPLICIT, _sources(obs), conflict
        )


class LengthResolver(Resolver):
    """Explicit lengths decide; implied ones (bob cut -> Short) only without them; two lengths -> Unknown."""

    def resolve_many(self, obs: list[Observation], ev: Evidence) -> Decision | None:
        explicit = [o for o in obs if o[1] >= EXPLICIT]
        use = explicit or obs
        if len({o[0] for o in use}) == 1:
            return Decision(use[0][0], _conf(use[0][1]), _sources(use), False)
        # Short and Long together without a qualifier: a conflict -> Unknown.
        return _unknown_conflict(use)


class AgeResolver(Resolver):
    """The most specific age evidence wins (stated age > age words > uniforms/defaults); ties conflict."""

    def resolve_many(self, obs: list[Observation], ev: Evidence) -> Decision | None:
        top, strong, values = _strongest(obs)
        if len(values) == 1:
            return Decision(strong[0][0], _conf(top), _sources(strong), len({o[0] for o in obs}) > 1)
        return _unknown_conflict(strong)


class GenderResolver(Resolver):
    """Count tags and explicit gender words (contract section 2 'Gender')."""

    def __init__(self, rules: AttributeRules, ontology: Ontology) -> None:
        super().__init__(rules, ontology)
        self.override_counts = frozenset(rules.extra.get("override_counts", ()))

    def resolve(self, ev: Evidence) -> Decision | None:
        tags = ev.gender_tags
        if not tags and not ev.count_groups and not ev.counts:
            # Most prose and many prompt lists: no gender tag, no count tag. Every tag rule below
            # then finds nothing, and only the prose observations can decide (~1 us saved per entry).
            return self._from_observations(ev.attrs.get(self.key))
        nb = [s for v, s in tags if v == "Non-binary"]
        if nb:
            return Decision("Non-binary", CONF_EXPLICIT, nb, False)
        override = [s for v, s in tags if s in self.override_counts]
        if override:  # `otoko no ko` is Male whatever the count tags say
            return Decision("Male", CONF_EXPLICIT, override, False)
        male_tags = [s for v, s in tags if v == "Male"]
        groups = ev.group_counts()
        girls, boys, others = groups.get("girl", 0), groups.get("boy", 0), groups.get("other", 0)
        count_sources = list(ev.counts)
        if male_tags and not girls:
            return Decision("Male", CONF_EXPLICIT, male_tags + count_sources, False)
        if girls and not boys and not others:
            return Decision("Female", CONF_EXPLICIT, count_sources, False)
        if boys and not girls and not others:
            return Decision("Male", CONF_EXPLICIT, count_sources, False)
        if (girls and boys) or ((girls or boys) and others):
            if male_tags:
                return Decision("Male", CONF_CONFLICT, male_tags + count_sources, True)
            return Decision(UNKNOWN, 0.0, count_sources, True)
        female_tags = [s for v, s in tags if v == "Female"]
        if female_tags and not male_tags and not others:
            return Decision("Female", CONF_IMPLIED, female_tags, False)
        return None if others else self._from_observations(ev.attrs.get(self.key))

    @staticmethod
    def _from_observations(obs: list[Observation] | None) -> Decision | None:
        """Prose observations (nouns, pronouns), which arrive as ordinary observations: one value
        decides (an implied one, from pronouns, at 0.8), several conflict."""
        if not obs:
            return None
        if len(obs) == 1:  # the common case (one gender noun), without building sets
            v, st, src = obs[0]
            return Decision(v, _conf(st) if st >= EXPLICIT else 0.8, [src], False)
        top, strong, values = _strongest(obs)
        if len(values) == 1:
            return Decision(strong[0][0], _conf(top) if top >= EXPLICIT else 0.8, _sources(strong), False)
        return _unknown_conflict(strong)


class DressResolver(Resolver):
    """Primary outfit: nude -> None; else the highest-ranked garment with its matching color."""

    def __init__(self, rules: AttributeRules, ontology: Ontology) -> None:
        super().__init__(rules, ontology)
        self.garments = ontology.garments
        self.nude_value = ontology.dress["nude_value"]
        self.nude_style = ontology.dress["nude_style"]

    def resolve(self, ev: Evidence) -> Decision | None:
        if ev.nude:
            return Decision(self.nude_value, CONF_EXPLICIT, list(dict.fromkeys(ev.nude)), False)
        if not ev.garments:
            return None
        rank, gi, source, display = _primary(ev)
        garment = self.garments[gi]
        evidence = [source]
        color = None
        if ev.garment_colors:  # prose never has color tags
            color = self._tag_color(ev.garment_colors, garment, evidence)
        if len(evidence) > 1:
            evidence = list(dict.fromkeys(evidence))
        if display is not None:  # the garment's own words (prose, or a tag naming a specific garment)
            if color and not display.startswith(color + " "):
                display = f"{color} {display}"
            # a tag's own name is as sure as the tag (rank (tier, index)); words read in prose are
            # less so (rank (tier, 0, position), ``AppearanceReader._read_garments``)
            return Decision(display, CONF_EXPLICIT if len(rank) == 2 else 0.85, evidence, False)
        value = f"{color} {garment.display}" if color else garment.display
        return Decision(value, CONF_EXPLICIT, evidence, False)

    @staticmethod
    def _tag_color(garment_colors: list[tuple[str, str, str]], garment: Garment, evidence: list[str]) -> str | None:
        """The color of this garment's color tags ("green kimono"), None when they disagree;
        their sources are added to ``evidence``."""
        for forms in (garment.tags, garment.forms):
            matches = [(c, s) for c, f, s in garment_colors if f in forms]
            if matches:
                colors = {c for c, _ in matches}
                evidence += [s for _, s in matches]
                return matches[0][0] if len(colors) == 1 else None
        return None

    def style(self, ev: Evidence) -> Decision | None:
        """Dress Style follows the primary garment; explicit style tags fill in otherwise."""
        if ev.nude:
            return Decision(self.nude_style, CONF_EXPLICIT, list(dict.fromkeys(ev.nude)), False)
        explicit = ev.dress_styles
        if ev.garments:
            _, gi, source, _ = _primary(ev)
            garment = self.garments[gi]
            if explicit and garment.tier > 1:  # `sportswear` beside a track suit confirms; beside a shirt it wins
                s, src = explicit[0]
                return Decision(s, CONF_EXPLICIT, [src], False)
            return Decision(garment.style, CONF_IMPLIED if not explicit else CONF_EXPLICIT, [source], False)
        if explicit:
            return Decision(explicit[0][0], CONF_IMPLIED, [explicit[0][1]], False)
        return None


def _primary(ev: Evidence) -> tuple:
    """The primary outfit among the garments seen: the lowest (tier, order, position) rank."""
    garments = ev.garments
    return garments[0] if len(garments) == 1 else min(garments, key=itemgetter(0))


class ListResolver(Resolver):
    """List attributes: distinct values in order of appearance."""

    def resolve(self, ev: Evidence) -> Decision | None:
        items = ev.lists.get(self.key)
        if not items:
            return None
        if len(items) == 1:  # the common case, without dedup dicts
            value, source = items[0]
            return Decision([value], CONF_EXPLICIT, [source], False)
        values = list(dict.fromkeys(v for v, _ in items))
        return Decision(values, CONF_EXPLICIT, list(dict.fromkeys(s for _, s in items)), False)


RESOLVERS: dict[str, type[Resolver]] = {
    "priority": PriorityResolver,
    "expression": ExpressionResolver,
    "color": ColorResolver,
    "length": LengthResolver,
    "age": AgeResolver,
    "gender": GenderResolver,
    "dress": DressResolver,
    "list": ListResolver,
}


def build_resolvers(ontology: Ontology) -> dict[str, Resolver]:
    """One resolver per attribute that has rules, chosen by the file's ``resolver`` name."""
    out: dict[str, Resolver] = {}
    for key, rules in ontology.rules.items():
        name = rules.resolver
        cls = RESOLVERS.get(name)
        if cls is None:
            raise ValueError(f"ontology file for {key!r} names unknown resolver {name!r}; known: {sorted(RESOLVERS)}")
        out[key] = cls(rules, ontology)
    return out
