"""The exclusion rule (contract section 4): errs on the side of exclusion.

An entry is excluded when it carries `loli` / `shota`, whatever its rating; or
when it depicts a minor (Age Child or Teen, or a minor tag such as `child`,
`aged_down`) together with a sexual rating (questionable, explicit, `nsfw`) or
sexual tags. Swimwear, body shape and the `sensitive` rating are not sexual.

Two parts:

* ``SafetyRule`` decides from the collected ``Evidence`` (markers, Age, rating).
* ``SafetyScanner`` makes sure every word *reaches* that evidence. The tag index
  sees whole items only; a caption can hide a marker where no whole item names it:
  several weighted terms in one comma slot (``(petite:1.1) (loli:0.9) girl``), a
  space-separated run (``child nude``), a stated age (``14 years old``, ``12yo``),
  a prose phrase. The scanner reads the words of every piece of text the index
  does not know as one tag (called by ``TextExtractor`` once per distinct unknown
  item, and once per prose text). Measured on the safety corpus
  (``tests/data/safety_corpus.jsonl``): before it, 1579 of 4362 unsafe entries came
  out ``ok``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from charmeta.evidence import Evidence
from charmeta.ontology import EXCLUDE, MINOR, SEXUAL, Hit, Ontology, normalize_tag


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


#: Everything that separates words for the scanner, except the hyphen (``loli-gami`` stays one word).
_SEPARATORS_RE = re.compile(r"[^\w\-]+|_+")
#: ``str.translate`` table for ASCII text: letters, digits and ``-`` stay, everything else is a space.
_ASCII_WORDS = bytes(c if chr(c).isalnum() or chr(c) == "-" else 32 for c in range(128)) + b" " * 128
_SEXUAL_HIT = Hit(SEXUAL, None, None)
#: What every stated age ``SafetyScanner._ages`` reads holds (``years``, ``yrs``, ``yo``, ``y/o``, ``aged``).
_AGE_ANCHOR_RE = re.compile(r"years?\b|yrs?\b|(?<![a-z])y\.?o\b|y/o|\bage")


def _may_state_age(low: str) -> bool:
    """``_AGE_ANCHOR_RE.search(low) is not None`` with the common answer, no, from substring tests
    (each anchor holds one of these strings): the regex tries its alternatives at every position
    (~3 us on a prose entry, ~0.3 us for the tests)."""
    if "year" in low or "yr" in low or "yo" in low or "y.o" in low or "y/o" in low or "age" in low:
        return _AGE_ANCHOR_RE.search(low) is not None
    return False


class SafetyScanner:
    """Safety markers hidden in text the tag index does not know as a whole (module docstring).

    ``scan(text)`` returns ``(hit, phrase)`` pairs: ``Hit(EXCLUDE, None, reason)``,
    ``Hit(MINOR, ...)`` or ``Hit(SEXUAL, ...)``, and the words that gave each.
    Vocabulary and thresholds are in ``safety.json``'s ``scan`` block.
    """

    def __init__(self, ontology: Ontology) -> None:
        s = ontology.safety
        scan = s["scan"]
        ignore = set(scan.get("minor_ignore_words", ()))
        self.phrases: dict[tuple[str, ...], Hit] = {}
        always = {**s["always_exclude"], **s.get("always_exclude_words", {})}
        minor = set(s["minor_tags"]) | set(scan["minor_words"])
        ages = ontology.rules.get("Age")
        if ages is not None:
            wanted = set(scan["minor_age_values"])
            for word, value in ages.extra.get("explicit", {}).items():
                if value in wanted:
                    minor.add(word)
        for word in sorted(minor - ignore):
            self._add(word, Hit(MINOR, None, None))
        sexual_ignore = set(scan.get("sexual_ignore_words", ()))
        for word in s["sexual_tags"] + s["sexual_words"] + scan["sexual_words"] + scan["sexual_rating_words"]:
            if word not in sexual_ignore:
                self._add(word, Hit(SEXUAL, None, None))
        for word, reason in always.items():  # last: the strongest hit wins a shared phrase
            self._add(word, Hit(EXCLUDE, None, reason))
        self.first_words = frozenset(p[0] for p in self.phrases)
        self.sexual_tails = frozenset(p[0] for p, h in self.phrases.items() if len(p) == 1 and h.kind is SEXUAL)
        self.max_len = max(len(p) for p in self.phrases)
        self.sexual_suffix = bool(scan.get("sexual_word_suffix"))
        self.below = int(scan["minor_below_age"])
        numbers = scan.get("number_words", {})
        self.numbers = {w: int(n) for w, n in numbers.items()}
        num = r"\d{1,3}|" + "|".join(sorted(map(re.escape, numbers), key=len, reverse=True))
        self.age_res = (
            # 14 years old / 14-year-old / 14 yrs old / 14yo / 14 y/o / fourteen-year-old
            re.compile(
                rf"\b({num})\s*-?\s*(?:years?|yrs?)\s*-?\s*old\b|\b({num})\s*-?\s*(?:yo|y/o|y\.o\.?)(?!\w)", re.I
            ),
            # aged 12 / age 12 / age: 12
            re.compile(rf"\baged?\s*[:=]?\s*({num})\b", re.I),
        )
        # Known names (and protected phrases) holding a scan word: their words are never markers.
        self.protected: set[tuple[str, ...]] = set()
        self.protected_first: frozenset[str] = frozenset()
        self.protected_len = 0  # none while the names are scanned below
        protected = {tuple(w for w in _SEPARATORS_RE.split(normalize_tag(p)) if w) for p in scan["protected_phrases"]}
        for name in set(ontology._wd_characters) | set(ontology.copyrights):
            words = tuple(w for w in _SEPARATORS_RE.split(name) if w)
            if len(words) > 1 and any(w in self.first_words for w in words):
                kinds = {h.kind for h, _ in self.scan(" ".join(words))}
                if kinds and EXCLUDE not in kinds:  # a name holding the word `loli` is not protected
                    protected.add(words)
        self.protected = protected
        self.protected_first = frozenset(p[0] for p in protected)
        self.protected_len = max((len(p) for p in self.protected), default=0)

    def candidate_regex(self) -> str:
        """An RE2 / Python regex that every normalised tag ``scan`` finds something in matches (it
        may match more): the columnar path sends the items it matches to the exact per-item reader."""
        words = sorted({w for p in self.phrases for w in p}, key=len, reverse=True)
        numbers = sorted(self.numbers, key=len, reverse=True)
        alternatives = [re.escape(w) for w in words] + [re.escape(n) for n in numbers]
        ages = r"\d[\s-]*y|age"  # ``_ages`` needs a digit before a y-word, or ``age``
        return ages + r"|(?:^|[^0-9A-Za-z])(?:" + "|".join(alternatives) + r")(?:[^0-9A-Za-z]|$)"

    def _add(self, phrase: str, hit: Hit) -> None:
        words = tuple(w for w in _SEPARATORS_RE.split(normalize_tag(phrase)) if w)
        if words:
            self.phrases[words] = hit

    def scan(self, text: str) -> list[tuple[Hit, str]]:
        """Every safety marker in ``text`` (any case, underscores, brackets, weights, prose)."""
        low = text.lower()
        if "_" in low:
            low = low.replace("_", " ")
        found: list[tuple[Hit, str]] = []
        # a stated age needs one of these anchors: most texts skip the two age regexes (~10 us on prose)
        if _may_state_age(low):
            self._ages(low, found)
        if low.isascii():  # the words ``_SEPARATORS_RE.split`` gives, by one C-level translate (~4x faster)
            words = low.encode("ascii").translate(_ASCII_WORDS).decode("ascii").split()
        else:
            words = [w for w in _SEPARATORS_RE.split(low) if w]
        if self.first_words.isdisjoint(words):
            # no word starts a marker (most unknown items: names): only a hyphenated sexual word is left
            if self.sexual_suffix and "-" in low:
                tails = self.sexual_tails
                found.extend((_SEXUAL_HIT, w) for w in words if "-" in w and w.rsplit("-", 1)[1] in tails)
            return found
        blocked = self._protected_positions(words) if self.protected_len else ()
        phrases, first = self.phrases, self.first_words
        i, n_words = 0, len(words)
        while i < n_words:
            w = words[i]
            step = 1
            if i in blocked:
                pass
            elif w in first:
                for n in range(min(self.max_len, n_words - i), 0, -1):
                    key = tuple(words[i : i + n])
                    hit = phrases.get(key)
                    if hit is not None and not any(j in blocked for j in range(i, i + n)):
                        found.append((hit, " ".join(key)))
                        step = n
                        break
            elif self.sexual_suffix and "-" in w:
                hit = phrases.get((w.rsplit("-", 1)[1],))
                if hit is not None and hit.kind is SEXUAL:
                    found.append((hit, w))
            i += step
        return found

    def _ages(self, low: str, found: list[tuple[Hit, str]]) -> None:
        """Stated ages below ``minor_below_age`` (``14 years old``, ``aged 12``, ``12yo``, ``fourteen-year-old``)."""
        for age_re in self.age_res:
            for m in age_re.finditer(low):
                value = next(g for g in m.groups() if g)
                n = int(value) if value.isdigit() else self.numbers.get(value)
                if n is not None and n < self.below:
                    found.append((Hit(MINOR, None, None), m.group(0)))

    def _protected_positions(self, words: list[str]) -> set[int]:
        """Positions of words inside a protected name (``kaitou kid``): only tried where a name starts."""
        blocked: set[int] = set()
        starts = self.protected_first
        if starts.isdisjoint(words):
            return blocked
        protected, longest = self.protected, self.protected_len
        for i, w in enumerate(words):
            if w not in starts:
                continue
            for n in range(min(longest, len(words) - i), 1, -1):
                if tuple(words[i : i + n]) in protected:
                    blocked.update(range(i, i + n))
                    break
        return blocked
        protected, longest = self.protected, self.protected_len
        for i in range(len(words)):
            for n in range(min(longest, len(words) - i), 1, -1):
                if tuple(words[i : i + n]) in protected:
                    blocked.update(range(i, i + n))
                    break
        return blocked

    def item_hits(self, t: str) -> tuple[Hit, ...]:
        """``hits`` for a normalised tag (lower case), with the common answer - nothing, for a name -
        decided by one translate and one set test (~0.5 us instead of ~1.2 us per unknown item)."""
        if t.isascii() and "-" not in t:
            words = t.encode("ascii").translate(_ASCII_WORDS).decode("ascii").split()
            if self.first_words.isdisjoint(words) and not (
                ("age" in t or "y" in t) and _AGE_ANCHOR_RE.search(t) is not None
            ):
                return ()
        return self.hits(t)

    def hits(self, text: str) -> tuple[Hit, ...]:
        """The distinct hits of ``scan`` (for one unknown item: its source is the item itself)."""
        found = self.scan(text)
        if not found:
            return ()
        return tuple(dict.fromkeys(h for h, _ in found))


def add_scanned(ev: Evidence, found: Iterable[tuple[Hit, str]]) -> None:
    """Append scanned markers to the evidence, each with the words that gave it."""
    for hit, phrase in found:
        if hit.kind is EXCLUDE:
            ev.exclude.append((hit.value, phrase))
        elif hit.kind is MINOR:
            ev.minor.append(phrase)
        elif hit.kind is SEXUAL:
            ev.sexual.append(phrase)
