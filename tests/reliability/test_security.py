"""Security: no code from data or weights, no path escapes, localhost-only servers, no token leaks,
size limits enforced."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
from chaos_lib import env_with_path, run_pipeline, write_jsonl
from launch import run_charmeta

REPO = Path(__file__).resolve().parents[2]
CODE_DIRS = [REPO / "charmeta", REPO / "charmeta_dagster"]


def _py_files() -> list[Path]:
    return [p for d in CODE_DIRS for p in d.rglob("*.py")]


def test_pickle_checkpoint_is_refused_with_a_clear_message(tmp_path: Path, chaos) -> None:  # noqa: ANN001
    from charmeta.errors import ModelLoadError
    from charmeta.images.embedders import check_safetensors

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ModelLoadError, match=r"pickle checkpoint \(pytorch_model.bin\).*only safetensors"):
        check_safetensors(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    check_safetensors(tmp_path)  # safetensors present: accepted
    chaos.record("model folder with a .bin (pickle) checkpoint", "refused: only safetensors is accepted", 0)


def test_no_eval_exec_pickle_or_remote_code_in_the_code() -> None:
    """AST scan: no eval/exec, no pickle/marshal/shelve/torch.load/yaml.load on anything; transformers
    loads pass trust_remote_code=False and use_safetensors where weights are loaded."""
    banned_calls = {"eval", "exec"}
    banned_modules = {"pickle", "cPickle", "marshal", "shelve", "dill", "joblib"}
    problems = []
    for p in _py_files():
        tree = ast.parse(p.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
                if isinstance(f, ast.Name) and name in banned_calls:
                    problems.append(f"{p}:{node.lineno} {name}()")
                if (owner, name) in (("torch", "load"), ("yaml", "load"), ("yaml", "unsafe_load")):
                    problems.append(f"{p}:{node.lineno} {owner}.{name}()")
                if name == "from_pretrained":
                    kws = {k.arg: k.value for k in node.keywords}
                    trc = kws.get("trust_remote_code")
                    if trc is None and not any(k.arg is None for k in node.keywords):
                        problems.append(f"{p}:{node.lineno} from_pretrained without trust_remote_code=False")
                    if isinstance(trc, ast.Constant) and trc.value is not False:
                        problems.append(f"{p}:{node.lineno} trust_remote_code={trc.value}")
                for k in node.keywords:
                    if k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False):
                        problems.append(f"{p}:{node.lineno} allow_pickle")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(m.split(".")[0] in banned_modules for m in mods):
                    problems.append(f"{p}:{node.lineno} import {mods}")
    assert not problems, problems


def test_partition_keys_and_data_paths_never_escape_the_output_root(tmp_path: Path, chaos) -> None:  # noqa: ANN001
    from charmeta.errors import SourceError
    from charmeta.pipeline.stages import Store
    from charmeta.sources import partition_key, read_registry

    store = Store(str(tmp_path / "out"))
    for bad in ("../x", "../../etc/passwd", "/abs", "a/b", ".hidden", "..", "a\\..\\b", ""):
        with pytest.raises((ValueError, SourceError)):
            store.path("raw_shards", bad)
    with pytest.raises(ValueError):
        store.path("../../tmp", "ok-key")
    for bad in ("../x", "a/b", ".x"):
        with pytest.raises(SourceError):
            read_registry(str(tmp_path / "out"), bad)
    for rel in ("../../../etc/passwd.jsonl", "/abs/x.jsonl", "a/../../b.jsonl", "..\\..\\w.jsonl"):
        key = partition_key(rel, 0)
        assert "/" not in key and ".." not in key and "\\" not in key
        assert store.path("raw_shards", key).startswith(store.root + os.sep)
    # ids and names from the data are values, never paths: an id like ../../x writes nothing outside
    src, out = tmp_path / "src", tmp_path / "out2"
    (src / "..weird dir").mkdir(parents=True)
    write_jsonl(src / "..weird dir" / "..%2f..%2fevil.jsonl", [{"id": "../../../../tmp/pwned", "text": "1girl"}])

    def outside() -> set[str]:
        return {str(p) for p in tmp_path.rglob("*") if out not in p.parents and p != out}

    before = outside()
    run_pipeline(src, out)
    assert outside() == before
    assert not Path("/tmp/pwned").exists()
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written and all(str(p.resolve()).startswith(str(out.resolve()) + os.sep) for p in written)
    chaos.record(
        "ids / file names / tar members with ../ and absolute paths", "nothing written outside the output root", 0
    )


def test_webserver_binds_localhost(monkeypatch, tmp_path: Path, chaos) -> None:  # noqa: ANN001
    import dagster  # noqa: F401 - imported before Popen is faked (its import runs `file` via subprocess)

    from charmeta_dagster.commands import ui

    started = []

    class FakePopen:
        def __init__(self, args, **kw):  # noqa: ANN001
            started.append(list(args))
            self.pid = 0

    monkeypatch.setattr(ui.subprocess, "Popen", FakePopen)
    ui.start_ui(str(tmp_path / "home"), str(tmp_path / "out"), port=39999)
    web = next(a for a in started if "dagster-webserver" in a[0])
    assert web[web.index("-h") + 1] == "127.0.0.1"
    assert not any("0.0.0.0" in " ".join(a) for a in started)
    src = (REPO / "charmeta_dagster" / "commands" / "ui.py").read_text()
    assert "0.0.0.0" not in src
    chaos.record("webserver bind address", "127.0.0.1 only", 0)


def test_caption_and_upload_size_limits(chaos) -> None:  # noqa: ANN001
    from charmeta.engine import MAX_TEXT_CHARS, Engine
    from charmeta.images.decode import decode_image
    from charmeta.pipeline.stages import NullExtractor

    ex = Engine(text_extractor=NullExtractor()).extract_text("a" * (MAX_TEXT_CHARS + 1))
    assert ex.status == "invalid" and "text too long" in ex.reason
    dec = decode_image(b"\x89PNG" + b"\0" * 2000, max_bytes=1000)
    assert not dec.ok and dec.reason.startswith("image file too large")
    from charmeta.sources import readers

    assert readers.MAX_TAR_TEXT_BYTES <= 64 * 1024 * 1024
    chaos.record("caption > 64k chars / upload > max_bytes", "invalid: text too long / image file too large", 0)


@pytest.mark.slow
def test_hf_token_never_reaches_outputs_logs_or_dagster(tmp_path: Path, chaos) -> None:  # noqa: ANN001
    secret = "hf_chaosSECRET" + "x" * 20
    src, out, home = tmp_path / "src", tmp_path / "out", tmp_path / "home"
    src.mkdir()
    write_jsonl(src / "a.jsonl", [{"text": "1girl, red hair"}, {"text": None}])
    env = env_with_path(DAGSTER_HOME=str(home), HF_TOKEN=secret, HUGGING_FACE_HUB_TOKEN=secret)
    res = run_charmeta(src, out, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert secret not in res.stdout and secret not in res.stderr
    leaks = [
        str(p) for root in (out, home) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()
    ]
    assert not leaks, leaks
    chaos.record("HF_TOKEN set in the environment", "absent from stdout/stderr, outputs, manifest, Dagster storage", 0)
