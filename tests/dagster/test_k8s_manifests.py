"""Kubernetes files under deploy/k8s, validated offline with linters that install from PyPI:

* ``yamllint`` on every file;
* ``kubernetes-validate`` (bundled Kubernetes schemas, strict: unknown fields fail) on the core
  resources and on each RayCluster pod template, wrapped as a ``v1 PodTemplate``;
* ``check-jsonschema`` on the RayCluster against the schema vendored from KubeRay's CRD
  (``deploy/k8s/schemas``), which rejects unknown fields;
* the Dagster Helm values are held to the same instance policy as ``docker/dagster.yaml``.
  (The chart's own values.schema.json refers to remote Kubernetes schemas and needs the chart's
  defaults merged in, so it is not run here; ``helm lint`` needs the chart, not available offline.)
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from servers import tool

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
K8S_VERSION = "1.30.0"


def _tool(name: str) -> str:
    exe = tool(name)
    if not exe:
        pytest.skip(f"{name} not installed (the dev extra installs it)")
    return exe


def test_yamllint() -> None:
    r = subprocess.run([_tool("yamllint"), "-c", str(K8S / ".yamllint"), str(K8S)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_core_resources_and_raycluster_pod_templates_match_kubernetes_schemas(tmp_path: Path) -> None:
    """One kubernetes-validate call (its start-up dominates): the core resources, and each RayCluster
    pod template wrapped as a v1 PodTemplate; a wrong field in one of them fails the call."""
    exe = _tool("kubernetes-validate")
    files = [str(K8S / n) for n in ("namespace.yaml", "config.yaml", "networkpolicy.yaml")]
    spec = _raycluster()["spec"]
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    for name, group in groups:
        pt = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name}, "template": group["template"]}
        f = tmp_path / f"{name}.yaml"
        f.write_text(yaml.safe_dump(pt))
        files.append(str(f))
    r = subprocess.run([exe, "-k", K8S_VERSION, "--strict", *files], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    n_docs = sum(len([d for d in yaml.safe_load_all(Path(f).read_text()) if d]) for f in files)
    assert r.stdout.count(" passed for resource ") == n_docs, r.stdout
    gpu = next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu")
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # strict mode is on: an unknown container field is an error
    pt = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "bad"}, "template": groups[0][1]["template"]}
    pt["template"]["spec"]["containers"][0]["resource"] = {}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(pt))
    bad = subprocess.run(
        [exe, "-k", K8S_VERSION, "--strict", str(tmp_path / "bad.yaml")], capture_output=True, text=True
    )
    assert bad.returncode != 0


def _raycluster() -> dict:
    return yaml.safe_load((K8S / "raycluster.yaml").read_text())


def _check_raycluster(doc: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    target = tmp_path / "rc.yaml"
    target.write_text(yaml.safe_dump(doc))
    schema = K8S / "schemas" / "raycluster.ray.io-v1.schema.json"
    return subprocess.run(
        [_tool("check-jsonschema"), "--schemafile", str(schema), str(target)], capture_output=True, text=True
    )


def test_raycluster_matches_kuberay_crd_and_a_typo_fails(tmp_path: Path) -> None:
    doc = _raycluster()
    r = _check_raycluster(doc, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    doc["spec"]["workerGroupSpecs"][0]["maxReplica"] = 3  # typo of maxReplicas: the CRD would drop it
    bad = _check_raycluster(doc, tmp_path)
    assert bad.returncode != 0 and "maxReplica" in bad.stdout + bad.stderr


def test_helm_values_follow_the_deployment_instance_policy() -> None:
    values = yaml.safe_load((K8S / "dagster-values.yaml").read_text())
    instance = yaml.safe_load((REPO / "docker" / "dagster.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert values["additionalInstanceConfig"]["concurrency"] == instance["concurrency"]
    assert values["dagsterDaemon"]["runRetries"]["maxRetries"] == instance["run_retries"]["max_retries"]
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] is True
    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP" and values["ingress"]["enabled"] is False
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    assert "postgresqlPassword" not in values["postgresql"]  # the password lives in a Secret
    (dep,) = values["dagster-user-deployments"]["deployments"]
    assert dep["dagsterApiGrpcArgs"] == ["-m", "charmeta_dagster.definitions"]
    config = yaml.safe_load((K8S / "config.yaml").read_text())["data"]
    assert config["CHARMETA_EXECUTOR"] == "ray" and config["CHARMETA_RAY_ADDRESS"].startswith("charmeta-ray-head-svc")
