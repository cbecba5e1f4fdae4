"""The LLM reader: a second reading, by a language model, of the text entries the rules leave uncertain.

Why only those: the rules read tag captions almost perfectly and at ~10^5 entries/s;
an LLM is slow and can be wrong with confidence. So it is asked only where the rules
are unsure - an entry with a core attribute whose rule confidence is under the
threshold (``CHARMETA_LLM_THRESHOLD``, 0.6: 12% of the prose set, 18% of the tag dev
set, 4% of the prompt set; measured with ``Engine.default()`` on tests/data) or whose
evidence conflicted - or, by ``CHARMETA_LLM_SCOPE``, on every prose entry (``prose``)
or every entry (``all``). Excluded, invalid and multi-character entries are never
sent (the safety rule is not the LLM's to relax; a single-character prompt says
nothing about a group).

Merging (per key, ``data/llm/reader.json``): an answer fills an attribute the rules
left Unknown or uncertain, with evidence ``llm:<value>`` after the rules' own; a
confident rule value is kept, and a disagreeing answer is only appended to its
evidence (``llm:<value> (rules kept)``). An answer below ``min_confidence`` counts as
Unknown. When the LLM names a minor Age the safety rule is applied again (the entry's
rating and the safety scanner's sexual markers in its text), erring on exclusion.

An invalid answer (not JSON, off the schema), an unreachable server or a local model
that cannot load (offline, no weights) never fails an entry: the rules' values are kept
and ``reason`` says ``llm reader (...): ...``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from charmeta.contract import CORE_KEYS, UNKNOWN
from charmeta.errors import CharmetaError, ConfigError, ModelLoadError
from charmeta.llm.backends import Answer, LLMBackend, LLMError
from charmeta.llm.contract import InvalidAnswer, check_keys, policy
from charmeta.records import Decision, Extraction

log = logging.getLogger("charmeta.llm")

SCOPES = ("uncertain", "prose", "all")
BACKENDS = ("transformers", "openai")
#: Bump when the merge policy changes (part of the predictions fingerprint through the spec identity).
CODE_VERSION = "1"


def _known(d: Decision | None) -> bool:
    return d is not None and d.value not in (None, UNKNOWN, "", [])


@dataclass
class LLMReader:
    """Decides which entries the backend reads and merges its answers into the rules' extraction."""

    backend: LLMBackend
    threshold: float = 0.6
    scope: str = "uncertain"
    keys: tuple[str, ...] = field(default_factory=lambda: tuple(policy()["keys"]))
    min_confidence: float = field(default_factory=lambda: float(policy()["min_confidence"]))
    calls: int = 0
    failures: int = 0

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ConfigError(f"CHARMETA_LLM_SCOPE={self.scope!r}: choose from {', '.join(SCOPES)}")
        check_keys(self.keys)

    def uncertain_keys(self, ex: Extraction) -> list[str]:
        """Core keys whose rule decision conflicted or is known with a confidence under the threshold."""
        out = []
        for k in CORE_KEYS:
            d = ex.attributes.get(k)
            if d is not None and (d.conflict or (_known(d) and d.confidence < self.threshold)):
                out.append(k)
        return out

    def wants(self, ex: Extraction) -> bool:
        if ex.status != "ok":
            return False
        if self.scope == "all" or (self.scope == "prose" and ex.input_kind == "prose"):
            return True
        return bool(self.uncertain_keys(ex))

    def read(self, text: str, ex: Extraction, scanner: Any = None, safety: Any = None) -> Extraction:
        """``ex`` with the backend's answer merged in (or a note in ``reason`` when there is none)."""
        self.calls += 1
        try:
            ans = self.backend.answer(text, self.keys)
        except (InvalidAnswer, LLMError) as exc:
            self.failures += 1
            note = f"llm reader ({self.backend.name}): {exc}; the rules' values kept"
            ex.reason = "; ".join(r for r in (ex.reason, note) if r)
            return ex
        self.merge(ex, ans)
        self._recheck_safety(text, ex, scanner, safety)
        return ex

    def merge(self, ex: Extraction, ans: Answer) -> None:
        for key, value in ans.values.items():
            conf = float(ans.confidence.get(key, 0.0))
            if value == UNKNOWN or conf < self.min_confidence:
                continue
            d = ex.attributes.get(key)
            rule_known = _known(d)
            if rule_known and d is not None and d.confidence >= self.threshold and not d.conflict:
                if d.value != value:  # a confident rule stands; the disagreement stays visible
                    ex.attributes[key] = Decision(d.value, d.confidence, [*d.evidence, f"llm:{value} (rules kept)"])
                continue
            ev = [*(d.evidence if d is not None else []), f"llm:{value}"]
            if rule_known and d is not None and d.value == value:
                ex.attributes[key] = Decision(value, round(1 - (1 - d.confidence) * (1 - conf), 4), ev, d.conflict)
            else:
                ex.attributes[key] = Decision(value, round(conf, 4), ev, rule_known)

    @staticmethod
    def _recheck_safety(text: str, ex: Extraction, scanner: Any, safety: Any) -> None:
        """The contract's minor rule on the merged Age: a minor with a sexual rating or sexual words
        is excluded (the rules could not see the LLM's Age when they ran)."""
        age = ex.attributes.get("Age")
        if age is None or safety is None or age.value not in getattr(safety, "minor_ages", ()):
            return
        if not any(e.startswith("llm:") for e in age.evidence):
            return
        sexual = None
        if ex.rating in safety.sexual_ratings:
            sexual = f"sexual rating ({ex.rating})"
        elif scanner is not None:
            from charmeta.ontology import SEXUAL

            hit = next((phrase for h, phrase in scanner.scan(text) if h.kind == SEXUAL), None)
            sexual = f"sexual content ({hit})" if hit else None
        if sexual:
            ex.status = "excluded"
            ex.reason = "; ".join(
                r for r in (ex.reason, f"safety: minor (Age {age.value}, LLM reader) with {sexual}") if r
            )


class LLMReadingExtractor:
    """An extractor (the tag / prose rules) followed by the LLM reader on the entries it wants.

    Batches keep the base's columnar path when it has one (``columnar``): the rules' table is
    built as before, the rows the reader wants are found on it with Arrow kernels and only those
    are read again per entry (rules + LLM) and put back in place. Measured with a backend that
    answers nothing, 12,640 tag captions (the dev set x 40) per round, 3 interleaved rounds on a
    loaded 2-core machine: rules alone 18-21 us/entry warm (47 cold), rules + this wrapper 23-29;
    a per-entry-only wrapper cost 68-75. The reader wanted 8% of those rows."""

    def __init__(self, base: Any, reader: LLMReader, identity: str = "") -> None:
        self.base = base
        self.reader = reader
        self.name = f"{getattr(base, 'name', 'text')}+llm"
        self.version = f"{getattr(base, 'version', '0')}+llm{CODE_VERSION}/{identity or reader.backend.name}"
        self._scanner = getattr(base, "scanner", None)
        self._safety = getattr(base, "safety", None)

    def extract(self, text: str) -> Extraction:
        ex = self.base.extract(text)
        if self.reader.wants(ex):
            ex = self.reader.read(text, ex, self._scanner, self._safety)
        return ex

    def extract_batch(self, items: Any) -> list[Extraction]:
        return [self.extract(t) for t in items]

    @property
    def columnar(self) -> Any:
        """The base's columnar path with the reader's rows redone (None: the base has none)."""
        from charmeta.extractors.base import ColumnarCapable

        base = self.base.columnar if isinstance(self.base, ColumnarCapable) else None
        return _ColumnarWithReader(base, self.reader, self.base) if base is not None else None


class _ColumnarWithReader:
    """``table(...)`` of the base's columnar path, then the rows ``LLMReader.wants`` redone per entry."""

    def __init__(self, base: Any, reader: LLMReader, rules: Any) -> None:
        self.base, self.reader, self.rules = base, reader, rules

    def wanted(self, table: Any) -> list[int]:
        import pyarrow as pa
        import pyarrow.compute as pc

        from charmeta.contract import ATTRIBUTE_BY_KEY

        ok = pc.equal(table["status"], "ok")
        if self.reader.scope == "all":
            want = ok
        else:
            unsure = pa.array([False] * table.num_rows)
            for key in CORE_KEYS:
                col = ATTRIBUTE_BY_KEY[key].column
                known = pc.and_(pc.is_valid(table[col]), pc.not_equal(table[col], UNKNOWN))
                low = pc.and_(known, pc.less(table[f"{col}_confidence"], self.reader.threshold))
                unsure = pc.or_(unsure, pc.or_(pc.fill_null(table[f"{col}_conflict"], False), pc.fill_null(low, False)))
            if self.reader.scope == "prose":
                unsure = pc.or_(unsure, pc.equal(table["input_kind"], "prose"))
            want = pc.and_(ok, unsure)
        return [i for i, w in enumerate(pc.fill_null(want, False).to_pylist()) if w]

    def extractions(self, texts: Any, extract_one: Any) -> list[Extraction]:
        """``charmeta extract``'s block path: the base's records (rules only), then the reader on the
        ones it wants (each record is the row's own: only its dict entries are replaced)."""
        from charmeta.engine import Engine

        out: list[Extraction] = self.base.extractions(texts, Engine(text_extractor=self.rules).extract_text)
        scanner, safety = getattr(self.rules, "scanner", None), getattr(self.rules, "safety", None)
        for i, ex in enumerate(out):
            if self.reader.wants(ex):
                v = texts[i]
                out[i] = self.reader.read(v.as_py() if hasattr(v, "as_py") else v, ex, scanner, safety)
        return out

    def table(
        self, ids: Any, texts: Any, source_shard: Any, positions: Any, preset_invalid: Any, extract_one: Any
    ) -> Any:
        import pyarrow as pa

        from charmeta.engine import Engine
        from charmeta.records import extractions_to_table

        # rows the columnar path hands back per entry get the rules only (guards included); the reader
        # then redoes the rows it wants once, through ``extract_one`` (the engine's: rules + reader)
        rules_one = Engine(text_extractor=self.rules).extract_text
        table = self.base.table(ids, texts, source_shard, positions, preset_invalid, rules_one)
        rows = self.wanted(table)
        if not rows:
            return table

        def at(values: Any, i: int) -> Any:
            v = values[i]
            return v.as_py() if hasattr(v, "as_py") else v

        redone = extractions_to_table(
            [extract_one(at(texts, i)) for i in rows],  # the engine's guards + rules + this reader
            [at(ids, i) for i in rows],
            source_shard,
            [at(positions, i) for i in rows] if positions is not None else None,
        ).cast(table.schema)
        order = list(range(table.num_rows))
        for k, i in enumerate(rows):
            order[i] = table.num_rows + k
        return pa.concat_tables([table, redone]).take(pa.array(order))


# ---------------------------------------------------------------------------
# spec: the extractor backend string that carries the reader's settings
# ---------------------------------------------------------------------------
def make_spec(
    base: str, backend: str, model: str = "", url: str = "", threshold: float = 0.6, scope: str = "uncertain"
) -> str:
    """The extractor backend string of "``base`` + the LLM reader" (a JSON object): the pipeline's
    workers rebuild the reader from it, and it is part of the predictions fingerprint."""
    if backend not in BACKENDS:
        raise ConfigError(f"CHARMETA_LLM_READER={backend!r}: choose from none, {', '.join(BACKENDS)}")
    if backend == "openai" and not url:
        raise ConfigError("CHARMETA_LLM_READER=openai needs CHARMETA_LLM_URL (e.g. http://127.0.0.1:8000)")
    if backend == "transformers" and not model:
        raise ConfigError("CHARMETA_LLM_READER=transformers needs CHARMETA_LLM_MODEL (a folder or HF id)")
    if scope not in SCOPES:
        raise ConfigError(f"CHARMETA_LLM_SCOPE={scope!r}: choose from {', '.join(SCOPES)}")
    if backend == "transformers":
        url = ""  # a local model has no URL (a leftover CHARMETA_LLM_URL must not change the fingerprint)
    llm = {"backend": backend, "model": model, "url": url, "threshold": threshold, "scope": scope}
    return json.dumps({"extractor": base, "llm": llm}, sort_keys=True, separators=(",", ":"))


def is_spec(backend: str) -> bool:
    return backend.lstrip().startswith("{")


def parse_spec(spec: str) -> dict[str, Any]:
    try:
        d = json.loads(spec)
        llm = d["llm"]
        return {"extractor": str(d.get("extractor") or "text"), "llm": dict(llm)}
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"extractor spec {spec[:80]!r} is not an LLM reader spec: {exc}") from exc


class Unavailable:
    """The backend of a reader whose model could not load: each entry it is asked about keeps the
    rules' values with the load error as its note (the caption's attributes are never lost)."""

    name = "unavailable"

    def __init__(self, why: str) -> None:
        self.why = why

    def answer(self, text: str, keys: tuple[str, ...]) -> Answer:
        raise LLMError(f"not loaded: {self.why}")


def build_reader(llm: dict[str, Any], allow_download: bool = False) -> LLMReader:
    """The reader for a spec's ``llm`` part (loads a local model; an endpoint is only contacted per entry)."""
    backend: LLMBackend
    if llm["backend"] == "openai":
        from charmeta.llm.backends import OpenAIEndpoint

        backend = OpenAIEndpoint(llm["url"], llm.get("model", ""))
    elif llm["backend"] == "transformers":
        from charmeta.llm.backends import get_local

        backend = get_local(llm["model"], llm.get("revision", "main"), allow_download, llm.get("device", "auto"))
    else:
        raise ConfigError(f"LLM reader backend {llm['backend']!r}: choose from {', '.join(BACKENDS)}")
    return LLMReader(backend, float(llm.get("threshold", 0.6)), str(llm.get("scope", "uncertain")))


def wrap(base_extractor: Any, spec: str, allow_download: bool = False) -> LLMReadingExtractor:
    """``base_extractor`` + the reader of ``spec``. A reader that cannot load raises (typed, with what to set)."""
    d = parse_spec(spec)
    try:
        reader = build_reader(d["llm"], allow_download)
    except ModelLoadError as exc:  # offline / missing weights: every entry it would read says so, rules kept
        log.warning("LLM reader unavailable: %s", exc)
        llm = d["llm"]
        reader = LLMReader(Unavailable(str(exc)), float(llm.get("threshold", 0.6)), str(llm.get("scope", "uncertain")))
    except CharmetaError:
        raise
    except Exception as exc:  # an import error of the optional stack, say
        raise ConfigError(f"LLM reader cannot start: {type(exc).__name__}: {exc}") from exc
    identity = hashlib.sha256(spec.encode()).hexdigest()[:12]
    return LLMReadingExtractor(base_extractor, reader, identity)
