"""The exclusion rule (contract section 4): errs on the side of exclusion.

An entry is excluded when it carries `loli` / `shota`, whatever its rating; or
when it depicts a minor (Age Child or Teen, or a minor tag such as `child`,
`aged_down`) together with a sexual rating (questionable, explicit, `nsfw`) or
sexual tags. Swimwear, body shape and the `sensitive` rating are not sexual.
"""

from __future__ import annotations

from charmeta.evidence import Evidence
from charmeta.ontology import Ontology


class SafetyRule:
    def __init__(self, ontology: Ontology) -> None:
        s = ontology.safety
        self.minor_ages = frozenset(s["minor_ages"])
        self.sexual_ratings = frozenset(s["sexual_ratings"])

    def reason(self, ev: Evidence, age: str, rating: str | None) -> str | None:
        """The exclusion reason, or ``None`` when the entry may be exported."""
        if ev.exclude:
            reason, tag = ev.exclude[0]
            return f"safety: {reason} ({tag})"
        minor = ev.minor[0] if ev.minor else (f"Age {age}" if age in self.minor_ages else None)
        if minor is None:
            return None
        if rating in self.sexual_ratings:
            return f"safety: minor ({minor}) with sexual rating ({rating})"
        if ev.sexual:
            return f"safety: minor ({minor}) with sexual content ({ev.sexual[0]})"
        return None
