"""The Kubernetes manifests: rendered like kustomize, validated against Kubernetes' schemas.

The overlays are rendered by a small kustomize-like merge (resources, components, strategic
merge patches: what these manifests use) and, where ``kubectl`` is installed, also by
``kubectl kustomize``; the two must agree. Every rendered object is validated offline with
``kubernetes-validate`` (strict: unknown fields are errors). ServiceMonitor and PrometheusRule
are CRDs, for which kubernetes-validate ships no schema: they are checked by hand and by
promtool instead.
"""

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from awops.registry import builtin_registry
from tests.fix_awops import run_awops

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["postgresql", "dynamodb", "both"]
# The oldest Kubernetes still commonly run and the newest schema shipped.
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
RUN_AS_USER = 10001


# -- a kustomize-like renderer ------------------------------------------------------------------


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def strategic_merge(target: Any, patch: Any) -> Any:
    """Kubernetes' strategic merge for what these patches use: maps merge, lists of named
    items (containers, env) merge by name, any other list is replaced."""
    if isinstance(target, dict) and isinstance(patch, dict):
        merged = dict(target)
        for key, value in patch.items():
            merged[key] = strategic_merge(target[key], value) if key in target else value
        return merged
    if (
        isinstance(target, list)
        and isinstance(patch, list)
        and all(isinstance(item, dict) and "name" in item for item in target + patch)
    ):
        merged_list = list(target)
        names = [item["name"] for item in target]
        for item in patch:
            if item["name"] in names:
                index = names.index(item["name"])
                merged_list[index] = strategic_merge(merged_list[index], item)
            else:
                merged_list.append(item)
        return merged_list
    return copy.deepcopy(patch)


def apply_patches(objects: list[dict[str, Any]], directory: Path, patches: list[Any]) -> None:
    for entry in patches:
        for patch in load_documents(directory / entry["path"]):
            matches = [
                i
                for i, obj in enumerate(objects)
                if obj["kind"] == patch["kind"]
                and obj["metadata"]["name"] == patch["metadata"]["name"]
            ]
            assert len(matches) == 1, f"{entry['path']} matches {len(matches)} objects"
            objects[matches[0]] = strategic_merge(objects[matches[0]], patch)


def render(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "resources", "components", "patches"}
    assert set(kustomization) <= known, f"the renderer does not know {set(kustomization) - known}"
    objects: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        objects += render(path) if path.is_dir() else load_documents(path)
    for component in kustomization.get("components", []):
        component_dir = directory / component
        spec = yaml.safe_load((component_dir / "kustomization.yaml").read_text())
        assert spec["kind"] == "Component"
        apply_patches(objects, component_dir, spec.get("patches", []))
    apply_patches(objects, directory, kustomization.get("patches", []))
    return objects


def by_kind(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(obj["kind"], obj["metadata"]["name"]): obj for obj in objects}


def all_manifests() -> list[tuple[str, dict[str, Any]]]:
    rendered = [("base", obj) for obj in render(K8S / "base")]
    for overlay in OVERLAYS:
        rendered += [(overlay, obj) for obj in render(K8S / "overlays" / overlay)]
    rendered += [
        ("secret.example.yaml", obj) for obj in load_documents(K8S / "base" / "secret.example.yaml")
    ]
    return rendered


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for obj in objects:
        if obj["kind"] == "Deployment":
            specs.append((obj["metadata"]["name"], obj["spec"]["template"]["spec"]))
        elif obj["kind"] == "CronJob":
            specs.append(
                (obj["metadata"]["name"], obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
            )
    return specs


# -- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schema(version: str) -> None:
    checked = 0
    for where, obj in all_manifests():
        if obj["kind"] in CRD_KINDS:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(obj, version, strict=True)
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {obj['kind']}/{obj['metadata']['name']}: {exc.message}")
        checked += 1
    assert checked >= 4 * 6 + 1


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_renderer_agrees_with_kubectl_kustomize(overlay: str) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    kustomized = by_kind([doc for doc in yaml.safe_load_all(result.stdout) if doc])
    assert kustomized == by_kind(render(K8S / "overlays" / overlay))


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_pods_are_locked_down_with_probes_and_resources(overlay: str) -> None:
    directory = K8S / "base" if overlay == "base" else K8S / "overlays" / overlay
    objects = render(directory)
    specs = pod_specs(objects)
    assert {name for name, _ in specs} == {"awops", "awops-backup"}
    for name, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == RUN_AS_USER
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert "memory" in resources["limits"], name
            mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
            assert "/tmp" in mounts, f"{name}: a read-only root needs a writable /tmp"
    deployment = by_kind(objects)[("Deployment", "awops")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    service = by_kind(objects)[("Service", "awops")]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    monitor = by_kind(objects)[("ServiceMonitor", "awops")]
    assert monitor["spec"]["selector"]["matchLabels"] == service["metadata"]["labels"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["honorLabels"] is True  # keeps awops' `job` label (see awops-rules.yml)


def test_prometheus_rule_matches_the_rules_file(tmp_path: Path) -> None:
    rule = by_kind(render(K8S / "base"))[("PrometheusRule", "awops")]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    rules_file = yaml.safe_load((ROOT / "deploy" / "prometheus" / "awops-rules.yml").read_text())
    assert rule["spec"] == rules_file
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool missing")
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump(rule["spec"]))
    result = subprocess.run(
        [promtool, "check", "rules", str(extracted)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_awops_accepts_each_overlays_configuration(overlay: str, tmp_path: Path) -> None:
    objects = by_kind(render(K8S / "overlays" / overlay))
    toml = tmp_path / "awops.toml"
    toml.write_text(objects[("ConfigMap", "awops-config")]["data"]["awops.toml"])
    env_map = objects[("ConfigMap", "awops-env")]["data"]
    registry = builtin_registry()
    for name, spec in pod_specs(list(objects.values())):
        (container,) = spec["containers"]
        env = {**env_map, **{item["name"]: item["value"] for item in container.get("env", [])}}
        env["AWOPS_CONFIG"] = str(toml)
        result = run_awops("config", "--check", env=env)
        assert result.returncode == 0, f"{overlay} {name}: {result.stderr}"
        if container["args"][0] == "run-once":
            jobs = [arg for arg in container["args"][1:] if not arg.startswith("-")]
            assert jobs and all(job in registry for job in jobs), jobs
            assert env["AWOPS_PUSHGATEWAY_URL"].startswith("http")
    backends = env_map.get("AWOPS_BACKENDS") or env_map["DATABASE_BACKEND"]
    assert backends == {"both": "postgresql,dynamodb"}.get(overlay, overlay)


def test_dockerfile_is_non_root_with_a_new_enough_pg_dump() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = [
        line.split(None, 1)
        for line in dockerfile.splitlines()
        if line and not line.startswith(("#", " "))
    ]
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1].strip() == f"{RUN_AS_USER}:{RUN_AS_USER}"
    # pg_dump must be at least the server's major version; PostgreSQL 17's client dumps 9.2-17.
    assert "postgresql-client-17" in dockerfile
    assert 'ENTRYPOINT ["awops"]' in dockerfile
    assert "HEALTHCHECK" not in dockerfile or "/healthz" in dockerfile
