"""Hair, eyes, garments and listed features, each read by attachment to its noun."""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence

from charmeta.evidence import Evidence
from charmeta.ontology import ATTR, EXPLICIT, GARMENT, IMPLIED, Ontology, normalize_tag
from charmeta.prose.lexicon import (
    _HAIR_SKIP_NEXT,
    _HAIR_SKIP_PREV,
    _SHOULDER_DETS,
    _SHOULDER_LEN,
    _SHOULDER_RE,
    _STOP,
    UNIFORM,
    _Lexicon,
    _typo,
    title_case,
)

_NUDE_WORDS = frozenset({"nude", "naked", "undressed"})
#: Nouns for a second hair colour in part of the hair (``pink tips``, ``red streaks``): with a colour, Multicolored.
_STREAK_WORDS = frozenset({"tips", "streaks", "streak", "highlights", "stripes", "ends", "strands", "lowlights"})
#: Words after a hair noun that say it is worn half up (``_read_hair_styles_after``).
_HALF_UP = ("half-up", "half")
#: Bound on each per-word memo (cleared when full): memory stays flat whatever the corpus.
_MEMO_MAX = 100_000


class AppearanceReader:
    """Mixin of ``ProseReader``: appearance words attached to their nouns."""

    lex: _Lexicon
    ont: Ontology
    _garment_first: frozenset[str]
    _garment_span: dict[str, int]
    _phrase_first: frozenset[str]
    _phrase_span: dict[str, int]
    _hair_forward_words: frozenset[str]
    _garment_tags: dict[tuple[str, int], tuple[str, int, tuple[str, ...]]]
    _eye_words: frozenset[str]
    _hair_noun_of: dict[str, str]
    _not_hair_nouns: set[str]
    _hair_mods: dict[str, tuple[tuple[str, str], ...] | None]

    def _negated(self, toks: list[str], i: int) -> bool:
        """Whether one of the three words before ``toks[i]`` negates it (``no glasses``, ``without a hat``)."""
        return not self.lex.negations.isdisjoint(toks[max(0, i - 3) : i])

    def _hair_modifier(self, w: str) -> tuple[tuple[str, str], ...] | None:
        """What ``w`` says as a hair modifier: ``[("color", "Black")]``, ... or None (memoised per word)."""
        memo = self._hair_mods
        if w in memo:
            return memo[w]
        if len(memo) >= _MEMO_MAX:
            memo.clear()
        mods = self._hair_modifier_uncached(w)
        result = memo[w] = tuple(mods) if mods is not None else None
        return result

    def _hair_modifier_uncached(self, w: str) -> Sequence[tuple[str, str]] | None:
        lex = self.lex
        if w in lex.hair_colors:
            return [("color", lex.hair_colors[w])]
        if w in lex.shades:
            return [("shade", w)]
        if w in lex.lengths:
            return [("length", lex.lengths[w])]
        if w in lex.styles and w not in ("bun", "bob", "braid", "ponytail"):
            return [("style", lex.styles[w])]
        if w in lex.multi_words:
            return [("multi", w)]
        if w in ("two", "double", "twin"):
            return [("num", w)]
        if w.endswith("-haired"):
            return None
        if "-" in w:
            raw_parts = w.split("-")
            parts = [p for p in raw_parts if p not in ("to", "and", "n")]
            if w in lex.lengths:
                return [("length", lex.lengths[w])]
            if len(parts) == len(raw_parts) == 2 and parts[1] in lex.hair_colors:
                # "jet-black", "copper-red", "ice-blue": an English compound colour is its head,
                # one colour (never Multicolored); "blue-and-white" keeps its two colours.
                return [("color", lex.hair_colors[parts[1]])]
            mods: list[tuple[str, str]] = []
            for part in parts:
                m = self._hair_modifier(part)
                if not m:
                    return None
                mods += m
            if sum(1 for k, _ in mods if k == "color") >= 2:
                mods.append(("multi", w))
            return mods
        fixed = _typo(w, lex.typo_targets_mod)
        if fixed and fixed != w:
            return self._hair_modifier(fixed)
        return None

    def _hair_noun(self, t: str) -> str | None:
        """The hair noun ``t`` is (``hair``, ``bangs``) or is one typo away from (``ponytial``), else None.

        Memoised: words that are none go to ``_not_hair_nouns``, so a clause of
        known non-nouns is skipped by one ``issuperset``.
        """
        noun = self._hair_noun_of.get(t)
        if noun is not None or t in self._not_hair_nouns:
            return noun
        if len(self._not_hair_nouns) >= _MEMO_MAX or len(self._hair_noun_of) >= _MEMO_MAX:
            self._not_hair_nouns.clear()
            self._hair_noun_of.clear()
        noun = t if t in self.lex.hair_nouns else _typo(t, self.lex.typo_targets_noun)
        if noun:
            self._hair_noun_of[t] = noun
            return noun
        self._not_hair_nouns.add(t)
        return None

    def _read_hair(self, toks: list[str], ev: Evidence) -> None:
        not_nouns = self._not_hair_nouns
        lex = self.lex
        noun_of = self._hair_noun_of
        n = len(toks)
        for i, t in enumerate(toks):
            if t in not_nouns:
                continue
            noun = noun_of.get(t) or self._hair_noun(t)
            if noun is None:
                continue
            if noun != t:
                toks[i] = noun  # the typo corrected for the readers after this one
            if (i > 0 and toks[i - 1] in _HAIR_SKIP_PREV) or (i + 1 < n and toks[i + 1] in _HAIR_SKIP_NEXT):
                continue
            if noun == "cut" and not (i > 0 and toks[i - 1] in ("pixie", "bob", "buzz", "crew", "hime", "bowl")):
                continue
            if self._negated(toks, i):
                continue
            if noun in ("bangs", "fringe", "cut", "haircut", "hairdo") and not (
                i > 0 and toks[i - 1] in ("pixie", "bob", "buzz", "crew", "hime", "bowl")
            ):
                mods = self._collect_back(toks, i)
                self._apply_hair_mods(mods, ev, noun, style_noun=None)
                continue
            style_noun = None
            two = f"{toks[i - 1]} {noun}" if i > 0 else noun
            if two in lex.styles:
                style_noun = two
            elif noun in lex.styles:
                style_noun = noun
            elif two in ("buzz cut", "crew cut", "bowl cut"):
                ev.add("Hair Length", "Short", IMPLIED, two)
                style_noun = None
            two_word = two != noun and (style_noun == two or two in ("buzz cut", "crew cut", "bowl cut"))
            mods = self._collect_back(toks, i - (1 if two_word else 0))
            self._apply_hair_mods(mods, ev, noun, style_noun)
            if "dyed" in toks[i + 1 : i + 4]:  # "a pixie cut dyed pink", "hair dyed bright pink"
                k = toks.index("dyed", i + 1) + 1
                while k < n and toks[k] in lex.shades:
                    k += 1
                if k < n and toks[k] in lex.hair_colors:
                    ev.add("Hair Color", lex.hair_colors[toks[k]], EXPLICIT, f"{noun} dyed {toks[k]}")
            if i + 3 < n and toks[i + 1] == "with" and toks[i + 3] in _STREAK_WORDS and toks[i + 2] in lex.hair_colors:
                ev.add_multi("Hair Color", f"{noun} with {toks[i + 2]} {toks[i + 3]}")  # "teal hair with pink tips"
            if noun in ("hair", "locks", "mane", "tresses", "curls", "waves"):
                if noun in ("curls",):
                    ev.add("Hair Style", "Curly", EXPLICIT, noun)
                if noun == "waves":
                    ev.add("Hair Style", "Wavy", EXPLICIT, noun)
                self._read_hair_forward(toks, i, ev)

    def _collect_back(self, toks: list[str], i: int) -> list[tuple[str, str, str]]:
        mods: list[tuple[str, str, str]] = []
        j = i - 1
        while j >= 0 and i - j <= 7:
            w = toks[j]
            if w in ("and", "&", "or") and mods and j > 0 and self._hair_modifier(toks[j - 1]):
                j -= 1
                continue
            m = self._hair_modifier(w)
            if not m:
                break
            mods += [(k, v, w) for k, v in m]
            j -= 1
        return mods

    def _apply_hair_mods(
        self, mods: list[tuple[str, str, str]], ev: Evidence, noun: str, style_noun: str | None
    ) -> None:
        lex = self.lex
        nums = [w for k, _, w in mods if k == "num"]
        if style_noun:
            style = lex.styles[style_noun]
            if nums and noun in ("braids", "braid", "plaits"):
                style = "Twin Braids"
            elif nums and noun in ("buns", "bun"):
                style = "Double Bun"
            elif nums and noun in ("ponytails", "pigtails"):
                style = "Twintails"
            ev.add("Hair Style", style, EXPLICIT, " ".join([w for *_, w in reversed(mods)] + [style_noun]))
            implied = self.ont.lookup(normalize_tag(style_noun))
            for h in implied:
                if h.kind == ATTR and h.key == "Hair Length":
                    ev.add("Hair Length", h.value[0], IMPLIED, style_noun)
            if style_noun in ("bob", "pixie", "pixie cut", "bob cut"):
                ev.add("Hair Length", "Short", IMPLIED, style_noun)
        src_noun = style_noun or noun
        for kind, value, word in mods:
            if kind == "color":
                ev.add("Hair Color", value, EXPLICIT, f"{word} {src_noun}")
            elif kind == "length":
                ev.add("Hair Length", value, EXPLICIT, f"{word} {src_noun}")
            elif kind == "style":
                ev.add("Hair Style", value, EXPLICIT, f"{word} {src_noun}")
            elif kind == "multi":
                ev.add_multi("Hair Color", f"{word} {src_noun}")

    def _read_hair_forward(self, toks: list[str], i: int, ev: Evidence) -> None:
        """Styles and lengths after the hair noun: ``hair in a ponytail``, ``hair to her shoulders``."""
        n = len(toks)
        end = min(n, i + 9)
        if not self._hair_forward_words.isdisjoint(toks[i + 1 : end]):  # most hair nouns: no style word follows
            self._read_hair_styles_after(toks, i, end, ev)
        after = toks[i + 1 : end + 2]
        for k, w in enumerate(after):  # "hair and a wetsuit peeled to his waist": the length is not the hair's
            if w in ("and", "with") or w in self.lex.garment_phrases or w in self.lex.persons:
                after = after[:k]
                break
        if after[:3] in (["the", "color", "of"], ["the", "colour", "of"]):  # "hair the color of fresh snow"
            for w in after[3:6]:
                if w in self._color_similes:
                    ev.add("Hair Color", self._color_similes[w], EXPLICIT, f"hair the color of {w}")
                    break
        m = None if _SHOULDER_DETS.isdisjoint(after) else _SHOULDER_RE.search(" ".join(after))
        if m:
            key = (m.group(1), m.group(2))
            val = _SHOULDER_LEN.get(key) or _SHOULDER_LEN.get((m.group(1), m.group(2) + "s"))
            if val:
                ev.add("Hair Length", val, EXPLICIT, f"hair {m.group(0)}")

    def _read_hair_styles_after(self, toks: list[str], i: int, end: int, ev: Evidence) -> None:
        """The style words in ``toks[i + 1:end]``, up to an eye / person / garment word.

        Only runs when one of ``_hair_forward_words`` is there: nothing else in the loop
        below does anything.
        """
        lex = self.lex
        n = len(toks)
        j = i + 1
        while j < end:
            w = toks[j]
            if w in lex.eye_nouns or w in lex.persons or w in lex.garment_phrases:
                break
            two = f"{w} {toks[j + 1]}" if j + 1 < n else ""
            if two and two in lex.styles:
                self._apply_hair_mods(self._collect_back(toks, j), ev, toks[j + 1], two)
                j += 2
                continue
            if w in lex.styles and w not in ("straight",):
                self._apply_hair_mods(self._collect_back(toks, j), ev, w, w)
            elif w in _HALF_UP:
                ev.add("Hair Style", "Half Up", EXPLICIT, "hair worn half-up")
            j += 1

    def _read_eyes(self, toks: list[str], ev: Evidence) -> None:
        lex = self.lex
        for i, t in enumerate(toks):
            if t not in lex.eye_nouns or self._negated(toks, i):
                continue
            colors: list[tuple[str, str]] = []
            j = i - 1
            one = False
            while j >= 0 and i - j <= 5:
                w = toks[j]
                if w in lex.eye_colors:
                    colors.append((lex.eye_colors[w], w))
                elif w in ("one", "left", "right", "other"):
                    one = True
                elif w in lex.shades or w in (
                    "big",
                    "large",
                    "wide",
                    "bright",
                    "sparkling",
                    "glowing",
                    "narrow",
                    "almond-shaped",
                    "round",
                    "sharp",
                    "piercing",
                    "striking",
                    "soft",
                    "kind",
                    "tired",
                    "sleepy",
                    "kohl-lined",
                ):
                    pass
                elif w in ("and", "&") and colors:
                    pass
                elif "-" in w and w.count("-") == 1 and w.split("-")[1] in lex.eye_colors:
                    # "ice-blue", "blood-red", "blue-green": a compound colour is its head, one colour
                    colors.append((lex.eye_colors[w.split("-")[1]], w))
                elif "-" in w and all(p in lex.eye_colors for p in w.split("-")):
                    colors += [(lex.eye_colors[p], p) for p in w.split("-")]
                else:
                    fixed = _typo(w, lex.typo_targets_mod)
                    if fixed and fixed in lex.eye_colors:
                        colors.append((lex.eye_colors[fixed], w))
                    else:
                        break
                j -= 1
            if not colors:
                continue
            if t in ("eye", "iris") and not one:
                continue  # "a black eye" is a bruise, not an eye color
            for value, word in colors:
                if word == "dark" and len(colors) > 1:
                    continue
                ev.add("Eye Color", value, EXPLICIT, f"{word} {t}")

    def _read_garments(self, toks: list[str], ev: Evidence) -> None:
        lex = self.lex
        garment_first = self._garment_first
        n = len(toks)
        i = 0
        while i < n:
            t = toks[i]
            if t in _NUDE_WORDS and not self._negated(toks, i):
                ev.nude.append(t)
                ev.sexual.append(t)
                i += 1
                continue
            if t not in garment_first:  # the common case, without a call
                i += 1
                continue
            # "a witch", "a nurse": people, not outfits
            match = _longest_phrase(toks, i, lex.garment_phrases, self._garment_span, exclude=lex.persons)
            if match is None:
                i += 1
                continue
            size, phrase = match
            end = i + size
            if end < n and toks[end] in lex.garment_phrases and toks[end] not in lex.persons:
                i += 1  # "military jacket", "hoodie dress", "bikini top": the last garment noun is the head
                continue
            if self._negated(toks, i):
                i = end
                continue
            gi = lex.garment_phrases[phrase]
            quals: list[str] = []
            color: str | None = None
            j = i - 1
            while j >= 0 and len(quals) < 3:  # "red velvet evening dress": two words of kind, then the colour
                w = toks[j]
                if w in lex.clothes_colors:
                    color = lex.clothes_colors[w]
                    if j > 0 and f"{toks[j - 1]} {w}" in lex.clothes_colors:
                        color = lex.clothes_colors[f"{toks[j - 1]} {w}"]
                        j -= 1
                    if j > 1 and toks[j - 1] in ("and", "&") and toks[j - 2] in lex.clothes_colors:
                        color = f"{lex.clothes_colors[toks[j - 2]]} And {color}"  # "red and white cheerleader outfit"
                    break
                if w in lex.garment_adjectives:
                    j -= 1  # "red baggy hoodie" -> Red Hoodie: a fit or state word, not the garment's kind
                    continue
                if w in lex.persons and j == i - 1 - len(quals) and w not in lex.plural_persons:
                    quals.insert(0, w)  # "chef uniform", "witch robe", "ninja outfit": the garment's kind
                    j -= 1
                    continue
                if (
                    w in lex.garment_stop
                    or w in lex.shades
                    or w in _STOP
                    or w.isdigit()
                    or w in lex.persons
                    or w == "_"
                ):
                    if w in lex.shades and j > 0 and toks[j - 1] in lex.clothes_colors:
                        j -= 1
                        continue
                    break
                quals.insert(0, w)
                j -= 1
            if phrase in lex.qualified_only and not quals and color is None:
                i = end
                continue  # "a cute outfit" names no garment; "a ninja outfit" does
            words = quals + toks[i:end]
            display = title_case(words)
            if color:
                display = f"{color} {display}"
            canonical, gi, ages = self._garment_tag(phrase, gi)
            for age in ages:  # "school uniform" still means Teen
                ev.add("Age", age, UNIFORM, canonical)
            ev.garments.append(((self.ont.garments[gi].tier, 0, len(ev.garments)), gi, " ".join(words), display))
            i = end

    def _garment_tag(self, phrase: str, gi: int) -> tuple[str, int, tuple[str, ...]]:
        """The tag a garment phrase stands for, its garment (the tag's own family when it has one,
        else ``gi``) and the ages the tag implies; memoised per phrase (a bounded vocabulary)."""
        key = (phrase, gi)
        info = self._garment_tags.get(key)
        if info is None:
            canonical = normalize_tag(self.ont.aliases.get(phrase, phrase))
            owner = None
            ages: list[str] = []
            for h in self.ont.lookup(canonical):
                if h.kind == GARMENT:
                    if owner is None:
                        owner = h.value
                elif h.kind == ATTR and h.key == "Age":
                    ages.append(h.value[0])
            info = self._garment_tags[key] = (canonical, gi if owner is None else owner, tuple(ages))
        return info

    def _read_phrases(self, toks: list[str], ev: Evidence) -> None:
        lex = self.lex
        phrase_first = self._phrase_first
        n = len(toks)
        i = 0
        while i < n:
            if toks[i] not in phrase_first:  # the common case, without a call
                i += 1
                continue
            hit = _longest_phrase(toks, i, lex.phrases, self._phrase_span)
            if hit is None:
                i += 1
                continue
            size, phrase = hit
            if not self._negated(toks, i):
                for key, value in lex.phrases[phrase]:
                    if key in ("Accessories", "Features", "Scars", "Tattoos"):
                        ev.add_list(key, value, phrase)
                    elif (
                        key == "Skin Tone"
                        and phrase in ("tan", "pale")
                        and i + size < n
                        and toks[i + size] not in ("skin", "skinned")
                    ):
                        continue
                    else:
                        ev.add(key, value, EXPLICIT, phrase)
            i += size


def _longest_phrase(
    toks: list[str], i: int, table: Container[str], spans: Mapping[str, int], exclude: Container[str] = ()
) -> tuple[int, str] | None:
    """The longest phrase of ``table`` starting at token ``i``.

    ``spans`` maps the first word of every phrase to the most words a phrase
    starting with it has (``phrase_spans``), so most tokens cost one lookup and
    no string joins, and no phrase longer than any in the table is joined.
    """
    span = spans.get(toks[i])
    if span is None:
        return None
    for size in range(min(span, len(toks) - i), 0, -1):
        phrase = " ".join(toks[i : i + size]) if size > 1 else toks[i]
        if phrase in table and phrase not in exclude:
            return size, phrase
    return None


def phrase_spans(phrases: Iterable[str], max_size: int) -> dict[str, int]:
    """First word -> the most words (up to ``max_size``) of a phrase starting with it (``_longest_phrase``)."""
    spans: dict[str, int] = {}
    for phrase in phrases:
        first = phrase.split(" ", 1)[0]
        spans[first] = min(max_size, max(spans.get(first, 0), phrase.count(" ") + 1))
    return spans
