"""The image models as one resource subclass per backend, picked in the launchpad's run config.

Why: the embedder, the tagger and the counter were strings inside one resource;
now each part is an abstract ``ConfigurableResource`` with a subclass per backend
(``charmeta_dagster.backends``) and a selector in run config. These tests hold the
three promises of that design: the spec the Dagster-free core receives is the one
``Settings`` gives ``charmeta run`` (same fingerprints however a run is launched),
switching any backend changes the image stages' fingerprints, and a backend picked
in run config is the one that runs (the outputs say so, on real drawings).
"""

from __future__ import annotations

import keyword
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from dagster import DagsterInstance, validate_run_config

from charmeta.errors import ConfigError
from charmeta.pipeline import stages as S
from charmeta.pipeline.image_stages import embedder_spec_of, image_config
from charmeta.settings import Settings
from charmeta_dagster.backends import (
    CaptionerResource,
    FaceCounterResource,
    ImageEmbedderResource,
    TaggerResource,
    backends_of,
)
from charmeta_dagster.defs.resources import ImageModelsResource, resources_for

REPO = Path(__file__).resolve().parents[2]
DRAWINGS = REPO / "samples" / "drawings"
PARTS = {
    "embedder": ImageEmbedderResource,
    "tagger": TaggerResource,
    "counter": FaceCounterResource,
    "captioner": CaptionerResource,
}


class _ImageShard:
    fingerprint = "shard-fp"
    fmt = "txt"


def test_every_part_has_its_backends_with_identifier_kinds() -> None:
    kinds = {part: set(backends_of(base)) for part, base in PARTS.items()}
    assert kinds == {
        "embedder": {"none", "auto", "clip", "siglip", "open_clip"},
        "tagger": {"none", "wd"},
        "counter": {"auto", "animeface", "haar", "animeface_haar", "none"},
        "captioner": {"none", "transformers"},
    }
    for names in kinds.values():  # run-config keys: Dagster accepts identifiers only
        assert all(n.isidentifier() and not keyword.iskeyword(n) for n in names)


SETTINGS_CASES = [
    {},
    {"embedder": "clip", "image_model": "/models/tiny", "image_device": "cpu"},
    {"embedder": "siglip", "image_model": "/models/s", "image_revision": "r1", "image_cache": "/c"},
    {"embedder": "open_clip", "image_model": "hf-hub:x/y"},
    {"embedder": "auto", "image_heads": "/h"},
    {"counter": "haar"},
    {"counter": "animeface+haar", "embedder": "clip"},
    {"counter": "auto"},
    {"counter": "none", "image_device": "cpu"},
    {"tagger": "/models/wd", "tagger_batch_size": 64},
    {"tagger": "/models/wd", "tagger_revision": "v3", "embedder": "clip", "counter": "animeface"},
    {"captioner": "/models/blip", "captioner_prompt": "a picture of"},
    {"captioner": "/models/blip", "embedder": "siglip", "tagger": "/models/wd"},
]


@pytest.mark.parametrize(
    "overrides", SETTINGS_CASES, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()) or "defaults"
)
def test_the_resource_from_settings_gives_charmeta_runs_spec(overrides: dict[str, Any]) -> None:
    settings = Settings.load(overrides, env={})
    spec = resources_for(settings)["image_models"].spec()
    assert spec == embedder_spec_of(settings)
    cfg = image_config(spec, "/out")  # and the core reads back what was chosen
    assert cfg.counter == (overrides.get("counter") or "auto")
    assert cfg.tagger == (overrides.get("tagger") or None)
    if overrides.get("tagger"):
        assert cfg.tagger_batch_size == overrides.get("tagger_batch_size", 16)
    assert cfg.captioner == (overrides.get("captioner") or None)
    assert cfg.captioner_prompt == overrides.get("captioner_prompt", "")
    if overrides.get("image_model"):
        assert cfg.model == overrides["image_model"]


def test_defaults_keep_the_plain_none_spec() -> None:
    """A dataset built before the restructure keeps its fingerprints: the default is still ``none``."""
    assert ImageModelsResource().spec() == "none"
    assert ImageModelsResource.from_settings(Settings.load({"counter": "auto"}, env={})).spec() == "none"


def _fingerprints(stage: str, resources: list[ImageModelsResource]) -> list[str]:
    return [S.partition_fingerprint(stage, _ImageShard(), "text", r.spec()) for r in resources]


def test_switching_any_backend_changes_the_image_stage_fingerprints() -> None:
    from charmeta_dagster.backends.captioners import TransformersCaptioner
    from charmeta_dagster.backends.embedders import ClipEmbedder, SiglipEmbedder
    from charmeta_dagster.backends.taggers import WDTagger

    variants: list[ImageModelsResource] = []
    for part, base in PARTS.items():
        for cls in backends_of(base).values():
            kw = {"model": "/m"} if cls in (WDTagger, TransformersCaptioner) else {}
            variants.append(ImageModelsResource(**{part: cls(**kw)}))
    variants += [
        ImageModelsResource(embedder=ClipEmbedder(model="/a")),
        ImageModelsResource(embedder=ClipEmbedder(model="/b")),
        ImageModelsResource(embedder=SiglipEmbedder(model="/a")),
        ImageModelsResource(tagger=WDTagger(model="/other")),
        ImageModelsResource(captioner=TransformersCaptioner(model="/m", prompt="a picture of")),
    ]
    specs = {r.spec() for r in variants}
    # the defaults (none embedder, none tagger, auto counter, none captioner) appear once per part: one spec
    assert len(specs) == len(variants) - 3
    for stage in (S.NORMALIZED_IMAGES, S.EMBEDDINGS, S.PREDICTIONS):
        assert len(set(_fingerprints(stage, variants))) == len(specs)
    # text shards never see the image models
    text_fp = {
        S.partition_fingerprint(S.PREDICTIONS, type("T", (), {"fingerprint": "f", "fmt": "jsonl"})(), "text", s)
        for s in specs
    }
    assert len(text_fp) == 1


def test_an_unknown_backend_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="choose from .*animeface\\+haar.*haar"):
        ImageModelsResource.from_settings(Settings.load({"counter": "yolo"}, env={}))


def _readme_launchpad_yaml() -> str:
    """The launchpad example of the README (the yaml block that configures ``image_models``)."""
    import re
    import textwrap

    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    found = [textwrap.dedent(b) for b in blocks if "image_models:" in b]
    assert len(found) == 1, "the README shows one launchpad example for image_models"
    return found[0]


def test_the_readme_launchpad_yaml_is_valid_run_config(tmp_path: Path) -> None:
    from charmeta_dagster.loader import load_definitions

    text = _readme_launchpad_yaml()
    defs = load_definitions(Settings.load({"output": str(tmp_path / "o")}, env={}))
    job = defs.resolve_job_def("shards_job")
    assert validate_run_config(job, yaml.safe_load(text))
    picked = ImageModelsResource(**yaml.safe_load(text)["resources"]["image_models"]["config"])
    assert type(picked.embedder).__name__ == "ClipEmbedder" and type(picked.counter).__name__ == "AnimeFaceCounter"
    with pytest.raises(Exception, match="yolo"):
        validate_run_config(job, yaml.safe_load(text.replace("animeface: {}", "yolo: {}")))


# ---------------------------------------------------------------------------
# materializing the image assets with each backend picked by run config
# ---------------------------------------------------------------------------
def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for stem in ("eileen-happy", "lucy-happy", "scene-meadow-three"):
        shutil.copy(DRAWINGS / f"{stem}.jpg", src)
        (src / f"{stem}.txt").write_text("")  # no caption: whatever is said comes from pixels
    return src


class _Launchpad:
    """The code location loaded from default settings, its partitions registered, runs launched
    with a run config like the launchpad's."""

    def __init__(self, src: Path, out: Path) -> None:
        from charmeta.pipeline import runner
        from charmeta.sources import Source
        from charmeta_dagster.loader import load_definitions

        self.out = out
        settings = Settings.load({"source": str(src), "output": str(out), "workers": 1}, env={})
        self.job = load_definitions(settings).resolve_job_def("shards_job")
        self.keys = [s.key for s in runner.discover(str(out), Source(str(src)))]
        self.instance = DagsterInstance.get()
        self.instance.add_dynamic_partitions("shards", self.keys)

    def run(self, image_models: dict[str, Any]) -> dict[str, dict]:
        from charmeta_dagster.defs.sensors import RANGE_END, RANGE_START

        res = self.job.execute_in_process(
            run_config={"resources": {"image_models": {"config": image_models}}},
            instance=self.instance,
            tags={RANGE_START: self.keys[0], RANGE_END: self.keys[-1]},
        )
        assert res.success
        rows = {}
        for f in sorted((self.out / "normalized_images").glob("*.parquet")):
            rows.update({r["id"]: r for r in pq.read_table(f).to_pylist()})
        return rows


@pytest.mark.slow
def test_counter_and_tagger_backends_picked_in_run_config(dagster_home: Path, tmp_path: Path) -> None:
    pytest.importorskip("animeface")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")  # builds the tiny tagger
    from charmeta.images.tiny import build_tiny_wd_tagger

    pad = _Launchpad(_source(tmp_path), tmp_path / "out")
    rows = pad.run({"counter": {"none": {}}})
    assert {r["counter"] for r in rows.values()} == {"none"} and {r["tagger_tags"] for r in rows.values()} == {None}
    rows = pad.run({"counter": {"animeface": {}}})  # same output root: the new fingerprint recomputes
    assert {r["counter"] for r in rows.values()} == {"animeface"}
    assert rows["eileen-happy"]["pixel_count"] == 1 and rows["scene-meadow-three"]["pixel_count"] >= 2
    wd = build_tiny_wd_tagger(tmp_path / "wd-tiny")
    rows = pad.run({"counter": {"none": {}}, "tagger": {"wd": {"model": str(wd), "batch_size": 2}}})
    tags = {k: r["tagger_tags"] for k, r in rows.items()}
    assert all(tags.values())
    assert "red_hair" in tags["eileen-happy"] and "red_hair" not in tags["lucy-happy"]  # it saw the pixels


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_embedder_backends_picked_in_run_config(
    dagster_home: Path, tmp_path: Path, kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    from imagekit import tiny_clip, tiny_siglip  # noqa: F401 - session fixtures

    model = request.getfixturevalue(f"tiny_{kind}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pad = _Launchpad(_source(tmp_path), tmp_path / "out")
    pad.run({"embedder": {kind: {"model": str(model)}}, "counter": {"none": {}}, "cache_dir": str(tmp_path / "cache")})
    stats = [S.Layout(str(pad.out)).stats(S.EMBEDDINGS, k) for k in pad.keys]
    assert sum(s["embedded"] for s in stats) == 3
    assert {s["embedder"] for s in stats} == {kind} and {s["model"] for s in stats} == {str(model)}


def test_only_a_model_makes_a_run_a_gpu_run() -> None:
    """The sensor tags runs that load a model (``charmeta/gpu``); a counter alone runs on CPU."""
    from charmeta.pipeline.image_stages import uses_model
    from charmeta_dagster.backends.captioners import TransformersCaptioner
    from charmeta_dagster.backends.counters import HaarCounter
    from charmeta_dagster.backends.embedders import ClipEmbedder
    from charmeta_dagster.backends.taggers import WDTagger

    assert not uses_model(ImageModelsResource().spec())
    assert not uses_model(ImageModelsResource(counter=HaarCounter()).spec())
    assert uses_model(ImageModelsResource(tagger=WDTagger(model="/m")).spec())
    assert uses_model(ImageModelsResource(embedder=ClipEmbedder()).spec())
    assert uses_model(ImageModelsResource(captioner=TransformersCaptioner(model="/m")).spec())


def test_charmeta_run_flags_pick_the_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    """``charmeta run --embedder/--image-model/--tagger/--tagger-batch/--counter/--captioner`` reach
    the same resource the launchpad edits (flags over the environment)."""
    import argparse

    from charmeta_dagster.commands.run import _settings, register

    monkeypatch.setenv("CHARMETA_COUNTER", "none")  # a flag given wins over the environment
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        ["run", "--source", "s", "--output", "o", "--embedder", "siglip", "--image-model", "/m/sig"]
        + ["--tagger", "/m/wd", "--tagger-batch", "8", "--counter", "animeface+haar", "--captioner", "/m/blip"]
    )
    res = ImageModelsResource.from_settings(_settings(args, "s", "o"))
    assert [type(p).__name__ for p in (res.embedder, res.tagger, res.counter, res.captioner)] == [
        "SiglipEmbedder",
        "WDTagger",
        "AnimeFaceHaarCounter",
        "TransformersCaptioner",
    ]
    cfg = image_config(res.spec(), "/out")
    assert (cfg.backend, cfg.model, cfg.tagger, cfg.tagger_batch_size) == ("siglip", "/m/sig", "/m/wd", 8)
    assert (cfg.counter, cfg.captioner) == ("animeface+haar", "/m/blip")
