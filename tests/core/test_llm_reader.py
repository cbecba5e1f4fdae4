"""LLM reader: contract schema and validation, the merge policy, the OpenAI protocol, a local causal LM, ``charmeta run``.

What these tests prove, and how they avoid "passes if the model saw nothing":

* ``ProtocolServer`` is **a protocol test, not a model server**: a minimal HTTP server
  in the test that speaks ``/v1/chat/completions`` and answers from the entry's words
  (``tomato`` -> Red, ``sky`` -> Blue). It checks what the reader sends (the contract
  as the system prompt, ``response_format`` json_schema = the record schema's slice,
  temperature 0, the entry) and that the answer lands in the record; the two entries
  must come out different, so a reader that never sent the entry fails.
* A real server, llama-cpp-python's ``llama_cpp.server`` (when ``llama-cpp-python[server]``
  and ``gguf`` are installed; it compiles llama.cpp, so CI skips it), on a random tiny Llama
  the test writes as GGUF: proves the request is accepted (after the json_object fallback
  that server needs), the server's grammar keeps the random model's output inside the answer
  schema, and the answer validates and merges. Random weights: it does not prove reading
  (the two tests above do).
* The transformers backend runs on a 2-layer Llama that ``build_tiny_llama`` fits to
  answer Red for one entry and Blue for another *in the reader's own prompt format*; the
  two answers must differ (only the entry differs), and the cached-prefix scoring must
  equal a plain full-sequence forward pass.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from charmeta.contract import ATTRIBUTE_BY_KEY, CORE_KEYS
from charmeta.errors import ConfigError
from charmeta.llm.backends import Answer, OpenAIEndpoint
from charmeta.llm.contract import InvalidAnswer, answer_schema, policy, system_prompt, validate_answer
from charmeta.llm.reader import LLMReader, LLMReadingExtractor, make_spec

TOMATO = "her mane is the colour of a ripe tomato"
SKY = "her mane is the colour of the summer sky"
KEYS = tuple(policy()["keys"])


class ProtocolServer:
    """OpenAI chat-completions protocol on 127.0.0.1 (NOT a model): answers from the entry's words."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                body["_path"] = self.path
                outer.requests.append(body)
                entry = body["messages"][-1]["content"]
                content = json.dumps(outer.reply(entry))
                if "garbled" in entry:
                    content = "Sure! Hair Color: Red"
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @staticmethod
    def reply(entry: str) -> dict[str, Any]:
        ans: dict[str, Any] = {k: "Unknown" for k in KEYS if ATTRIBUTE_BY_KEY[k].is_core}
        if "red hair, blue hair" in entry:
            ans["Hair Color"] = "Multicolored"  # agrees with the rules' uncertain call
        if "tomato" in entry:
            ans["Hair Color"] = "Red"
        if "sky" in entry:
            ans["Hair Color"] = "Blue"
        if "crimson-ish" in entry:
            ans["Hair Color"] = "Crimson"  # not in the vocabulary
        if "short stature" in entry:
            ans["Age"] = "Child"
        if "long red hair" in entry:
            ans["Hair Color"] = "Black"  # disagrees with a confident rule
        return ans


@pytest.fixture
def server() -> Iterator[ProtocolServer]:
    s = ProtocolServer()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture(scope="module")
def rules() -> Any:
    from charmeta.extractors.text import TextExtractor

    return TextExtractor.default()


def _reader(url: str, scope: str = "prose") -> LLMReader:
    return LLMReader(OpenAIEndpoint(url, "tiny"), threshold=0.6, scope=scope)


# ---------------------------------------------------------------------------
# contract: schema slice and validation
# ---------------------------------------------------------------------------
def test_answer_schema_is_the_record_schema_slice() -> None:
    rec = json.loads((Path(__file__).resolve().parents[2] / "charmeta/schema/attributes.schema.json").read_text())
    sch = answer_schema(KEYS)
    assert sch["required"] == list(KEYS) and sch["additionalProperties"] is False
    assert sch["properties"]["Hair Color"]["enum"] == rec["properties"]["Hair Color"]["enum"]
    assert sch["properties"]["Dress"]["pattern"] == rec["properties"]["Dress"]["pattern"]
    assert {"type": "null"} in sch["properties"]["Skin Tone"]["anyOf"]  # optional keys may be null
    assert "Hair Color" in system_prompt() and "Heterochromia" in system_prompt()
    with pytest.raises(ConfigError, match="not scalar contract keys"):
        answer_schema(("Accessories",))


def test_validate_answer() -> None:
    good = {k: "Unknown" for k in CORE_KEYS} | {"Hair Color": "Red", "Skin Tone": None}
    assert validate_answer(json.dumps(good), KEYS)["Hair Color"] == "Red"
    assert "Skin Tone" not in validate_answer(good, KEYS)  # null = absent
    assert validate_answer("```json\n" + json.dumps(good) + "\n```", KEYS)["Hair Color"] == "Red"
    for bad, msg in (
        ({**good, "Hair Color": "Crimson"}, "Hair Color"),
        ({**good, "Mood": "Happy"}, "Mood"),
        ({k: v for k, v in good.items() if k != "Age"}, "Age"),
        ({**good, "Dress": "lowercase dress"}, "Dress"),
    ):
        with pytest.raises(InvalidAnswer, match=msg):
            validate_answer(bad, KEYS)
    with pytest.raises(InvalidAnswer, match="not JSON"):
        validate_answer("Hair Color: Red", KEYS)


# ---------------------------------------------------------------------------
# the OpenAI-compatible endpoint (protocol server)
# ---------------------------------------------------------------------------
def test_endpoint_request_and_answers_follow_the_entry(server: ProtocolServer, rules: Any) -> None:
    ex = LLMReadingExtractor(rules, _reader(server.url))
    red, blue = ex.extract(TOMATO), ex.extract(SKY)
    assert red.attributes["Hair Color"].value == "Red" and blue.attributes["Hair Color"].value == "Blue"
    assert red.attributes["Hair Color"].evidence == ["llm:Red"]
    assert red.attributes["Hair Color"].confidence == policy()["endpoint_confidence"]
    assert red.attributes["Gender"].value == "Female"  # the rules' own values stay
    req = server.requests[0]
    assert req["_path"] == "/v1/chat/completions" and req["temperature"] == 0
    assert req["messages"][0] == {"role": "system", "content": system_prompt()}
    assert TOMATO in req["messages"][1]["content"]
    fmt = req["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"] == answer_schema(KEYS)


def test_scope_uncertain_reads_only_what_the_rules_leave_uncertain(server: ProtocolServer, rules: Any) -> None:
    ex = LLMReadingExtractor(rules, _reader(server.url, scope="uncertain"))
    sure = ex.extract("1girl, red hair, long hair")  # every known value at 0.95
    assert not server.requests and sure.attributes["Hair Color"].value == "Red"
    unsure = ex.extract(f"1girl, solo, red hair, blue hair, {TOMATO}")  # Multicolored, conflicting, 0.5
    assert len(server.requests) == 1
    hair = unsure.attributes["Hair Color"]
    assert hair.value == "Red" and hair.conflict and hair.evidence[-1] == "llm:Red"
    assert ex.reader.uncertain_keys(rules.extract("1girl, solo, red hair, blue hair")) == ["Hair Color"]


def test_batches_keep_the_columnar_path_and_equal_the_per_entry_records(server: ProtocolServer, rules: Any) -> None:
    import pyarrow as pa

    from charmeta.engine import Engine
    from charmeta.records import extractions_to_table

    eng = Engine(text_extractor=LLMReadingExtractor(rules, _reader(server.url, scope="uncertain")))
    assert eng.text_extractor.columnar is not None  # the rules' columnar path stays on
    texts = [
        "1girl, red hair, long hair",
        "1girl, solo, red hair, blue hair",
        "",
        TOMATO,
        "1boy, solo, red hair, blue hair",
    ]
    ids = [f"r{i}" for i in range(len(texts))]
    got = eng.process_batch(ids, pa.array(texts), "shard", list(range(len(texts))))
    assert len(server.requests) == 2  # only the two uncertain tag captions
    want = extractions_to_table([eng.extract_text(t) for t in texts], ids, "shard", list(range(len(texts))))
    assert got.to_pylist() == want.cast(got.schema).to_pylist()
    row = got.to_pylist()[1]
    assert row["hair_color"] == "Multicolored" and row["hair_color_evidence"][-1] == "llm:Multicolored"
    assert row["hair_color_confidence"] == pytest.approx(0.8)  # 0.5 (rules) and 0.6 (LLM) agree
    assert got["status"].to_pylist()[2] == "invalid"
    # charmeta extract's block path (Engine.extract_texts): the same records, one request per uncertain row
    before = len(server.requests)
    blocks = eng.extract_texts(texts)
    assert len(server.requests) - before == 2
    assert extractions_to_table(blocks, ids, "shard", list(range(len(texts)))).cast(got.schema).to_pylist() == (
        got.to_pylist()
    )


def test_a_confident_rule_is_kept_and_the_disagreement_shown(server: ProtocolServer, rules: Any) -> None:
    ex = LLMReadingExtractor(rules, _reader(server.url, scope="all")).extract("a woman with long red hair")
    hair = ex.attributes["Hair Color"]
    assert hair.value == "Red" and hair.confidence == 0.95 and hair.evidence[-1] == "llm:Black (rules kept)"


def test_invalid_answers_and_a_dead_server_keep_the_rules(server: ProtocolServer, rules: Any) -> None:
    ex = LLMReadingExtractor(rules, _reader(server.url))
    off = ex.extract("her crimson-ish mane")
    assert "llm reader (openai:tiny): breaks the answer schema: Hair Color" in off.reason
    assert off.status == "ok" and off.attributes["Gender"].value == "Female"
    garbled = ex.extract("her garbled mane")
    assert "not JSON" in garbled.reason
    from charmeta.netutil import free_port

    dead = LLMReadingExtractor(rules, _reader(f"http://127.0.0.1:{free_port()}")).extract(TOMATO)
    assert "is the server running?" in dead.reason and dead.attributes["Hair Color"].value == "Unknown"
    assert ex.reader.failures == 2


def test_an_llm_minor_age_meets_the_safety_rule(server: ProtocolServer, rules: Any) -> None:
    ex = LLMReadingExtractor(rules, _reader(server.url, scope="all"))
    out = ex.extract("rating:explicit, 1girl, solo, short stature")
    assert out.attributes["Age"].value == "Child" and out.status == "excluded"
    assert "safety: minor (Age Child, LLM reader) with sexual rating (explicit)" in out.reason
    safe = ex.extract("rating:general, 1girl, solo, short stature")
    assert safe.attributes["Age"].value == "Child" and safe.status == "ok"
    words = ex.extract("1girl, solo, short stature, nude")  # no rating: the scanner's sexual words
    assert words.status == "excluded" and "with sexual content (nude)" in words.reason


def test_merge_agreement_raises_confidence() -> None:
    from charmeta.records import Decision, Extraction

    reader = LLMReader(OpenAIEndpoint("http://127.0.0.1:9", "m"), threshold=0.6, scope="all")
    ex = Extraction("prose", attributes={"Hair Color": Decision("Red", 0.5, ["red"], False)})
    reader.merge(ex, Answer({"Hair Color": "Red", "Eye Color": "Blue"}, {"Hair Color": 0.6, "Eye Color": 0.4}))
    assert ex.attributes["Hair Color"] == Decision("Red", 0.8, ["red", "llm:Red"], False)
    assert "Eye Color" not in ex.attributes  # under min_confidence: treated as Unknown


def test_settings_select_the_reader(server: ProtocolServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from charmeta.pipeline import engines
    from charmeta.pipeline.engines import backend_identity, make_engine
    from charmeta.settings import Settings

    monkeypatch.setattr(engines, "_ENGINES", {})
    s = Settings.load(
        env={"CHARMETA_LLM_READER": "openai", "CHARMETA_LLM_URL": server.url, "CHARMETA_LLM_SCOPE": "prose"}
    )
    spec = s.extractor_spec()
    assert json.loads(spec)["llm"]["url"] == server.url and Settings.load(env={}).extractor_spec() == "text"
    engine = make_engine(spec)
    assert isinstance(engine.text_extractor, LLMReadingExtractor)
    assert engine.extract_text(TOMATO).attributes["Hair Color"].value == "Red"
    assert backend_identity(spec) != backend_identity(s.replace(llm_scope="all").extractor_spec())
    with pytest.raises(ConfigError, match="CHARMETA_LLM_URL"):
        Settings.load(env={"CHARMETA_LLM_READER": "openai"}).extractor_spec()
    with pytest.raises(ConfigError, match="CHARMETA_LLM_SCOPE"):
        make_spec("text", "openai", url=server.url, scope="everything")


def test_cli_extract_text_and_input_with_the_endpoint(
    server: ProtocolServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from charmeta.cli import main
    from charmeta.pipeline import engines

    monkeypatch.setattr(engines, "_ENGINES", {})
    monkeypatch.setenv("CHARMETA_LLM_READER", "openai")
    monkeypatch.setenv("CHARMETA_LLM_URL", server.url)
    monkeypatch.setenv("CHARMETA_LLM_SCOPE", "prose")
    assert main(["extract", "--text", SKY]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["attributes"]["Hair Color"] == "Blue" and rec["evidence"]["Hair Color"] == ["llm:Blue"]
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate([TOMATO, "1girl, red hair", SKY]))
    )
    assert main(["extract", "--input", str(src)]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["attributes"]["Hair Color"] for r in recs] == ["Red", "Red", "Blue"]
    assert recs[0]["evidence"]["Hair Color"] == ["llm:Red"] and recs[1]["evidence"]["Hair Color"] == ["red hair"]


@pytest.mark.slow
def test_charmeta_run_with_the_endpoint(
    server: ProtocolServer, dagster_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    from charmeta.cli import main

    src = tmp_path / "src"
    src.mkdir()
    rows = [{"id": "tomato", "text": TOMATO}, {"id": "sky", "text": SKY}, {"id": "tags", "text": "1girl, red hair"}]
    (src / "entries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("CHARMETA_LLM_READER", "openai")
    monkeypatch.setenv("CHARMETA_LLM_URL", server.url)
    monkeypatch.setenv("CHARMETA_LLM_SCOPE", "prose")
    out = tmp_path / "out"
    assert main(["run", "--source", str(src), "--output", str(out), "--workers", "1"]) == 0
    con = duckdb.connect(str(out / "export" / "catalog.duckdb"), read_only=True)
    got = dict(con.execute("SELECT id, hair_color FROM validated_records").fetchall())
    con.close()
    assert got == {"tomato": "Red", "sky": "Blue", "tags": "Red"}
    assert len(server.requests) == 2  # the tag caption is neither prose nor uncertain


# ---------------------------------------------------------------------------
# the transformers backend on a tiny Llama fitted to two entries
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from charmeta.llm.tiny import build_tiny_llama

    teach = [(TOMATO, "Hair Color", "Red"), (SKY, "Hair Color", "Blue")]
    return build_tiny_llama(tmp_path_factory.mktemp("llama") / "tiny", teach=teach, steps=40)


@pytest.mark.slow
def test_local_model_answers_from_the_entry(tiny_llama: Path, rules: Any) -> None:
    from charmeta.llm.backends import LocalCausalLM

    lm = LocalCausalLM(str(tiny_llama), device="cpu")
    reader = LLMReader(lm, threshold=0.6, scope="prose", keys=("Hair Color",))
    ex = LLMReadingExtractor(rules, reader)
    red, blue = ex.extract(TOMATO).attributes["Hair Color"], ex.extract(SKY).attributes["Hair Color"]
    assert (red.value, blue.value) == ("Red", "Blue")  # only the entry differs
    assert red.evidence == ["llm:Red"] and red.confidence == policy()["max_confidence"]
    dist = lm.scores(TOMATO, ("Hair Color", "Skin Tone"))
    assert set(dist["Hair Color"]) == set(ATTRIBUTE_BY_KEY["Hair Color"].values or ())
    assert "Unknown" in dist["Skin Tone"] and abs(sum(dist["Hair Color"].values()) - 1) < 1e-5


@pytest.mark.slow
def test_cached_prefix_scoring_equals_a_full_forward_pass(tiny_llama: Path) -> None:
    import torch

    from charmeta.llm.backends import LocalCausalLM

    lm = LocalCausalLM(str(tiny_llama), device="cpu")
    keys = ("Hair Color",)
    prompt = lm.encode_prompt(TOMATO, keys)
    full = {}
    for value in ("Red", "Blue", "Multicolored"):
        cand, n_val = lm.encode_candidate("Hair Color", value)
        ids = torch.tensor([prompt + cand])
        with torch.inference_mode():
            lp = lm.model(ids).logits.float().log_softmax(-1)[0]
        full[value] = sum(float(lp[len(ids[0]) - n_val - 1 + j, ids[0, len(ids[0]) - n_val + j]]) for j in range(n_val))
    dist = lm.scores(TOMATO, keys)["Hair Color"]
    # the scorer's shares are a softmax over all 14 values; the ratio of two is exp(difference of log-probs)
    assert dist["Red"] / dist["Blue"] == pytest.approx(torch.tensor(full["Red"] - full["Blue"]).exp().item(), rel=1e-3)
    assert dist["Red"] / dist["Multicolored"] == pytest.approx(
        torch.tensor(full["Red"] - full["Multicolored"]).exp().item(), rel=1e-3
    )


@pytest.mark.slow
def test_offline_hub_id_is_a_typed_error_and_a_note(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rules: Any
) -> None:
    from charmeta.errors import ModelLoadError
    from charmeta.llm.backends import LocalCausalLM
    from charmeta.llm.reader import wrap

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache, downloads off
    with pytest.raises(ModelLoadError, match=re.escape("CHARMETA_LLM_MODEL")):
        LocalCausalLM("Qwen/Qwen2.5-0.5B-Instruct")
    ex = wrap(rules, make_spec("text", "transformers", model="Qwen/Qwen2.5-0.5B-Instruct", scope="prose"))
    out = ex.extract("a woman with long red hair")  # the rules' values kept, the reason says why no LLM
    assert out.attributes["Hair Color"].value == "Red" and out.status == "ok"
    assert "llm reader (unavailable): not loaded: LLM reader: " in out.reason and "CHARMETA_LLM_MODEL" in out.reason


# ---------------------------------------------------------------------------
# a real server: llama-cpp-python's OpenAI-compatible server on a tiny GGUF the test writes
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama_cpp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] not installed (compiles llama.cpp)")
    pytest.importorskip("gguf")
    from charmeta.llm.tiny import build_tiny_gguf
    from charmeta.netutil import free_port

    folder = tmp_path_factory.mktemp("gguf")
    model = build_tiny_gguf(folder / "tiny.gguf")
    port = free_port()
    log = (folder / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--n_ctx", "16384"]
        + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not start: {(folder / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_real_llama_cpp_server(llama_cpp_server: str, rules: Any) -> None:
    keys = ("Age", "Hair Color", "Eye Color")  # enum keys: a random model under a grammar ends in a few bytes
    endpoint = OpenAIEndpoint(llama_cpp_server, "tiny")
    reader = LLMReader(endpoint, threshold=0.6, scope="all", keys=keys)
    ex = LLMReadingExtractor(rules, reader)
    outs = [ex.extract(t) for t in (TOMATO, SKY, "1girl, solo, red hair, blue hair")]
    assert endpoint.format == "json_object"  # it refused json_schema (HTTP 500) and took json_object + schema
    assert reader.calls == 3 and reader.failures == 0, [o.reason for o in outs]  # every answer validated
    ans = endpoint.answer(TOMATO, keys)
    assert set(ans.values) == set(keys)
    for k, v in ans.values.items():
        assert v in (ATTRIBUTE_BY_KEY[k].values or ())
    for o in outs:
        for k in keys:
            d = o.attributes[k]
            assert not any(e.startswith("llm:") for e in d.evidence) or d.evidence[-1].startswith("llm:")
