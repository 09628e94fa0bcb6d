"""Shared helpers of the deploy tests (deploy/tests/test_*.py).

Charts are rendered with the real Helm engine (PyPI helm-python-sdk: Helm
v4's Go SDK behind a C ABI; no helm binary, no cluster). Run them with

    python3 -m pytest deploy/tests            # or: cargo test -p sluice-tests --test deploy

and refresh the golden files after a deliberate chart change with

    SLUICE_UPDATE_GOLDEN=1 python3 -m pytest deploy/tests/test_chart.py

then review the diff under deploy/tests/golden/.
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
DEPLOY = HERE.parent
REPO = DEPLOY.parent
CHART = DEPLOY / "helm" / "sluice"
LIBRARY = DEPLOY / "helm" / "sluice-sidecar"
APP_CHART = HERE / "example-app"
KUBERNETES = DEPLOY / "kubernetes"
VALUES = HERE / "values"
GOLDEN = HERE / "golden"

# The cluster the renders are for and validated against.
KUBE_VERSION = "1.33.0"
PROMETHEUS_OPERATOR = "monitoring.coreos.com/v1"
RELEASE = "sluice"
NAMESPACE = "sluice"


def crate_version() -> str:
    with open(REPO / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["workspace"]["package"]["version"]


def helm():
    import helm_python

    helm_python.disable_logging()
    return helm_python


def render(
    chart_dir: Path,
    values: dict[str, Any] | None,
    *,
    api_versions: tuple[str, ...] = (),
    name: str = RELEASE,
    namespace: str = NAMESPACE,
) -> dict[str, str]:
    """Template path -> rendered text, as `helm install --dry-run` would
    (schema checked, `lookup` finding nothing). The SDK's Python wrapper
    does not pass API versions, so this calls its render entry point with
    the options its C ABI takes (api_versions, kube_version)."""
    h = helm()
    from helm_python import _native

    opts = {
        "name": name,
        "namespace": namespace,
        "is_install": True,
        "kube_version": f"v{KUBE_VERSION}",
        "api_versions": list(api_versions),
    }
    with h.Chart.load(str(chart_dir)) as chart:
        out = _native.call_string(
            "helm_render", chart._raw(), json.dumps(values or {}), json.dumps(opts)
        )
    return json.loads(out)


def documents(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """The Kubernetes objects of a render (NOTES.txt left out), in template order."""
    docs = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(rendered[path]):
            if doc:
                docs.append(doc)
    return docs


def load_values(name: str) -> dict[str, Any]:
    return yaml.safe_load((VALUES / name).read_text()) or {}


def pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return [doc["spec"]["template"]["spec"]]
    if doc.get("kind") == "Pod":
        return [doc["spec"]]
    return []


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    for d in docs:
        if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name):
            return d
    raise AssertionError(f"no {kind} {name or ''} in the render: {[(d['kind'], d['metadata']['name']) for d in docs]}")


def container(docs: list[dict[str, Any]], kind: str, name: str, container_name: str) -> tuple[dict, dict]:
    """(pod spec, container) of one workload's container."""
    spec = pod_specs(find(docs, kind, name))[0]
    for c in containers(spec):
        if c["name"] == container_name:
            return spec, c
    raise AssertionError(f"{kind} {name} has no container {container_name}")


def secret_values(docs: list[dict[str, Any]]) -> list[str]:
    """Every value of every Secret of a render, decoded."""
    out = []
    for d in docs:
        if d.get("kind") == "Secret":
            for v in (d.get("data") or {}).values():
                out.append(base64.b64decode(v).decode())
            out.extend((d.get("stringData") or {}).values())
    return out


def cpu_whole(quantity: str | int | float) -> int:
    """A CPU quantity rounded up to whole CPUs: what a resourceFieldRef on
    limits.cpu with divisor 1 gives the container."""
    q = str(quantity)
    cpus = int(q[:-1]) / 1000 if q.endswith("m") else float(q)
    return max(1, math.ceil(cpus))


def kustomize(directory: Path) -> list[dict[str, Any]]:
    if not shutil.which("kubectl"):
        raise AssertionError("kubectl (with kustomize) is needed: the Kustomize component is rendered with `kubectl kustomize`")
    out = subprocess.run(
        ["kubectl", "kustomize", str(directory)], check=True, capture_output=True, text=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def kustomized_app(tmp: Path) -> list[dict[str, Any]]:
    """An application Deployment with the Kustomize component applied."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "app.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "app"},
                "spec": {
                    "selector": {"matchLabels": {"app": "app"}},
                    "template": {
                        "metadata": {"labels": {"app": "app"}},
                        "spec": {
                            "containers": [
                                {
                                    "name": "app",
                                    "image": "registry.example.com/app:1",
                                    "resources": {
                                        "requests": {"cpu": "100m", "memory": "64Mi"},
                                        "limits": {"cpu": "1", "memory": "128Mi"},
                                    },
                                }
                            ]
                        },
                    },
                },
            }
        )
    )
    component = os.path.relpath(KUBERNETES / "sidecar", tmp)
    (tmp / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": ["app.yaml"], "components": [component]})
    )
    return kustomize(tmp)
