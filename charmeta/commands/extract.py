"""``charmeta extract``: one caption, one image, or a JSONL / text file of entries.

Input lines are ``{"id": ..., "text": ..., "rating"?: "g|s|q|e"}`` objects or
plain text (ids = 1-based line numbers). Every input line yields exactly one
output line; a bad line (not JSON, no text, wrong type, too long, not UTF-8)
becomes an ``invalid`` record with a reason, and the command still exits 0
after saying on stderr how many lines were invalid.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import orjson

from charmeta.engine import MAX_TEXT_CHARS, Engine
from charmeta.errors import ConfigError
from charmeta.records import Extraction, to_cli_json

#: A line longer than this (bytes) is not parsed as JSON at all: it is invalid as too long.
MAX_LINE_BYTES = MAX_TEXT_CHARS * 4 + 4096


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="extract attributes from a caption, an image, or a JSONL/text file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="one caption or description; prints one JSON record")
    src.add_argument("--input", help="JSONL ({'id','text'} per line) or plain text file; '-' = stdin")
    src.add_argument("--image", help="an image file; its .txt sidecar (or --caption) is used as the caption")
    p.add_argument("--caption", help="caption for --image (default: the image's .txt sidecar, if any)")
    p.add_argument("--output", default="-", help="output JSONL path; '-' = stdout (default)")
    p.add_argument("--progress-every", type=int, default=100_000, help="log progress every N lines (0 = never)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from charmeta.pipeline.engines import make_engine
    from charmeta.settings import Settings

    settings = Settings.load()  # the rules, followed by the LLM reader when one is configured (CHARMETA_LLM_*)
    engine = Engine.default() if settings.llm_reader in ("", "none") else make_engine(settings.extractor_spec())
    if args.text is not None:
        _print_one(to_cli_json(engine.extract_text(args.text), 1))
        return 0
    if args.image is not None:
        return _run_image(args, engine)
    return _run_file(args, engine)


def _print_one(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _run_image(args: argparse.Namespace, engine: Engine) -> int:
    path = Path(args.image)
    if not path.exists():
        raise ConfigError(f"image {path} not found")
    caption = args.caption
    sidecar = path.with_suffix(".txt")
    if caption is None and sidecar.exists():
        caption = sidecar.read_text("utf-8", errors="replace")
    try:
        from charmeta.images.api import extract_image
    except ModuleNotFoundError as exc:
        raise ConfigError(f"image support needs the 'images' extra ({exc.name} missing): run `make install`") from exc
    ex = extract_image(path, caption, text_extract=engine.extract_text)
    out = to_cli_json(ex, path.name)
    _print_one(out)
    return 0


def parse_line(raw: bytes, lineno: int) -> tuple[Any, Any, Any, str | None]:
    """One input line -> (id, text, rating, invalid reason)."""
    if len(raw) > MAX_LINE_BYTES:
        return lineno, None, None, f"line too long ({len(raw)} bytes > {MAX_LINE_BYTES})"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return lineno, None, None, f"line is not valid UTF-8 (byte {exc.start})"
    stripped = line.strip()
    if stripped[:1] == "[":  # a JSON array is a wrong type; a prompt like "[blue eyes], ..." is text
        try:
            orjson.loads(stripped)
        except orjson.JSONDecodeError:
            return lineno, line.rstrip("\r\n"), None, None
        return lineno, None, None, "expected a JSON object with a 'text' field, got an array"
    if not stripped.startswith("{"):
        return lineno, line.rstrip("\r\n"), None, None
    try:
        obj = orjson.loads(stripped)
    except orjson.JSONDecodeError as exc:
        return lineno, None, None, f"line is not valid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(obj, dict):
        return lineno, None, None, "expected a JSON object with a 'text' field"
    rid = obj.get("id", lineno)
    if not isinstance(rid, (str, int)) or isinstance(rid, bool):
        rid = lineno
    if "text" not in obj:
        return rid, None, None, "missing 'text' field"
    rating = obj.get("rating") if isinstance(obj.get("rating"), str) else None
    return rid, obj["text"], rating, None


def _run_file(args: argparse.Namespace, engine: Engine) -> int:
    """Stream lines in, records out. A file output appears only when complete (temp + rename)."""
    engine.prepare_batches()  # engine set-up, like the ontology: not timed as per-entry work
    start = time.perf_counter()
    tmp = None if args.output == "-" else f"{args.output}.tmp-{os.getpid()}"
    try:
        with ExitStack() as stack:
            src: IO[bytes] = sys.stdin.buffer if args.input == "-" else stack.enter_context(open(args.input, "rb"))
            dst: IO[bytes] = (
                sys.stdout.buffer if tmp is None else stack.enter_context(open(tmp, "wb", buffering=1 << 20))
            )
            n, invalid = _stream(src, dst, engine, args.progress_every, start)
        if tmp is not None:
            os.replace(tmp, args.output)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)  # an interrupted run leaves no half-written output behind
    secs = time.perf_counter() - start
    rate = n / secs if secs > 0 else 0.0
    print(f"charmeta extract: {n:,} entries, {invalid:,} invalid, {secs:.2f}s ({rate:,.0f} entries/s)", file=sys.stderr)
    return 0


#: Lines read per block: ``Engine.extract_texts`` reads a block's captions as arrays. Big enough
#: that the per-batch array work is spread thin (2048: ~37 us an entry, 8192: ~33, CPU time on
#: 100k synthetic captions), small enough that memory stays flat (a few MB per block).
BLOCK_LINES = 8192


def _stream(src: IO[bytes], dst: IO[bytes], engine: Engine, progress_every: int, start: float) -> tuple[int, int]:
    """One output line per non-blank input line, in input order, in blocks of ``BLOCK_LINES``;
    returns (lines, invalid)."""
    n = invalid = 0
    block: list[tuple[Any, Any, Any, str | None]] = []
    for lineno, raw in enumerate(src, start=1):
        if not raw.strip():
            continue
        block.append(parse_line(raw, lineno))
        if len(block) >= BLOCK_LINES:
            invalid += _write_block(block, dst, engine)
            n, block = _progress(n, len(block), progress_every, start), []
    if block:
        invalid += _write_block(block, dst, engine)
        _progress(n, len(block), progress_every, start)
    dst.flush()
    return n + len(block), invalid


def _write_block(block: list[tuple[Any, Any, Any, str | None]], dst: IO[bytes], engine: Engine) -> int:
    """Extract and write one block of parsed lines; returns how many records are invalid.

    Lines without a rating field go to ``Engine.extract_texts`` together (the same records as
    ``extract_text`` one by one, faster); a line with one folds it in through ``extract_text``."""
    plain = [i for i, (_, _, rating, reason) in enumerate(block) if reason is None and rating is None]
    batch = dict(zip(plain, engine.extract_texts([block[i][1] for i in plain])))
    dumps = orjson.dumps
    lines = []
    invalid = 0
    for i, (rid, text, rating, reason) in enumerate(block):
        ex = Extraction.invalid(reason) if reason else batch.get(i) or engine.extract_text(text, rating)
        if ex.status == "invalid":
            invalid += 1
        lines.append(dumps(to_cli_json(ex, rid)))
    dst.write(b"\n".join(lines) + b"\n")
    return invalid


def _progress(done: int, added: int, every: int, start: float) -> int:
    """Log a progress line each time the count of lines written passes a multiple of ``every``."""
    total = done + added
    if every and total // every > done // every:
        rate = total / (time.perf_counter() - start)
        print(f"charmeta extract: {total:,} entries ({rate:,.0f}/s)", file=sys.stderr)
    return total
