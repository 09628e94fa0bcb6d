"""The Helm charts, the sidecar example and the Kustomize component, offline:
rendered with the real Helm engine, kept as golden files, linted, validated
strictly against the Kubernetes 1.33 schemas, checked for the restricted Pod
Security Standard and for secrets out of place, and fed bad values."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest
import yaml

from conftest import (
    APP_CHART,
    CHART,
    GOLDEN,
    KUBE_VERSION,
    KUBERNETES,
    LIBRARY,
    PROMETHEUS_OPERATOR,
    VALUES,
    container,
    containers,
    cpu_whole,
    crate_version,
    documents,
    find,
    helm,
    kustomized_app,
    load_values,
    pod_specs,
    render,
    secret_values,
)

# (golden name, values file, API versions the cluster serves)
CASES = [
    ("defaults", "defaults.yaml", ()),
    ("bundled-etcd", "bundled-etcd.yaml", ()),
    ("bundled-etcd-single-gateway", "bundled-etcd-single-gateway.yaml", ()),
    ("external-etcd-tls-auth", "external-etcd-tls-auth.yaml", ()),
    ("embedded", "embedded.yaml", ()),
    ("gateway-hpa", "gateway-hpa.yaml", ()),
    ("servicemonitor", "servicemonitor.yaml", (PROMETHEUS_OPERATOR,)),
    ("servicemonitor-no-capability", "servicemonitor.yaml", ()),
    ("networkpolicy", "networkpolicy.yaml", ()),
]
CASE_IDS = [c[0] for c in CASES]

# Kinds with no schema in Kubernetes itself (CRDs of other projects).
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "HTTPRoute"}

RANDOM = "<random: made once, kept by lookup>"


def rendered_case(case: str) -> dict[str, str]:
    _, values, apis = next(c for c in CASES if c[0] == case)
    return render(CHART, load_values(values), api_versions=apis)


def normalized(rendered: dict[str, str]) -> str:
    """The golden text: each template's output as rendered, with the one
    thing that changes on every render (the made Secret's random values)
    replaced by a marker."""
    parts = []
    for path in sorted(rendered):
        text = rendered[path]
        if path.endswith("templates/secret.yaml"):
            text = re.sub(r"^(  [-._a-zA-Z0-9]+: ).+$", lambda m: m.group(1) + RANDOM, text, flags=re.M)
        if text.strip():
            parts.append(f"# Source: {path}\n{text.strip()}\n")
    return "---\n".join(parts)


@pytest.fixture(scope="module")
def renders() -> dict[str, list[dict]]:
    return {case: documents(rendered_case(case)) for case in CASE_IDS}


def app_chart_docs(values: dict | None = None) -> list[dict]:
    return documents(render(APP_CHART, values, name="demo", namespace="apps"))


def example_docs() -> list[dict]:
    return [d for d in yaml.safe_load_all((KUBERNETES / "sidecar-example.yaml").read_text()) if d]


# --- golden files ------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_IDS)
def test_each_values_file_renders_to_its_golden_file(case):
    text = normalized(rendered_case(case))
    golden = GOLDEN / f"{case}.yaml"
    if os.environ.get("SLUICE_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"{golden} is missing: run with SLUICE_UPDATE_GOLDEN=1 and review it"
    assert text == golden.read_text(), (
        f"the render of {case} differs from {golden}; if the change is meant, "
        "refresh with SLUICE_UPDATE_GOLDEN=1 python3 -m pytest deploy/tests/test_chart.py and review the diff"
    )


def test_the_application_chart_renders_to_its_golden_file():
    text = normalized(render(APP_CHART, None, name="demo", namespace="apps"))
    golden = GOLDEN / "example-app.yaml"
    if os.environ.get("SLUICE_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_every_golden_file_has_a_case():
    stale = {p.stem for p in GOLDEN.glob("*.yaml")} - set(CASE_IDS) - {"example-app"}
    assert not stale, f"golden files with no render: {stale}"


# --- the chart's metadata -------------------------------------------------------


def test_app_version_is_the_crate_version_and_the_default_tag():
    h = helm()
    version = crate_version()
    with h.Chart.load(str(CHART)) as chart:
        assert chart.metadata["apiVersion"] == "v2"
        assert chart.metadata["appVersion"] == version
    with h.Chart.load(str(LIBRARY)) as lib:
        assert lib.metadata["type"] == "library"
        assert lib.metadata["appVersion"] == version
    docs = documents(rendered_case("defaults"))
    _, cp = container(docs, "Deployment", "sluice-control-plane", "control-plane")
    assert cp["image"] == f"ghcr.io/sluice-gateway/sluice:{version}"
    # The library's own default tag, and the Kustomize/plain copies.
    _, sidecar = container(app_chart_docs(), "Deployment", "demo", "sluice")
    assert sidecar["image"] == f"ghcr.io/sluice-gateway/sluice:{version}"


def test_a_digest_pins_the_image_and_pull_secrets_pass_through(renders):
    docs = renders["external-etcd-tls-auth"]
    spec, cp = container(docs, "Deployment", "sluice-control-plane", "control-plane")
    assert cp["image"] == "ghcr.io/sluice-gateway/sluice@sha256:" + "0123456789abcdef" * 4
    assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]


def test_lint_reports_no_errors():
    h = helm()
    for case, values, _ in CASES:
        report = h.lint(str(CHART), load_values(values), strict=True, kube_version=f"v{KUBE_VERSION}")
        errors = [m for m in report["messages"] if m["severity"] >= 2] + list(report.get("errors") or [])
        assert not errors, f"{case}: {errors}"
    report = h.lint(str(APP_CHART), None, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert not [m for m in report["messages"] if m["severity"] >= 2], report


# --- Kubernetes schemas --------------------------------------------------------------


def validate_strictly(docs: list[dict], where: str) -> int:
    import kubernetes_validate

    checked = 0
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            # Not Kubernetes' own: checked for shape by the golden files only.
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise AssertionError(f"{where}: {doc['kind']} {doc['metadata'].get('name')}: {e.message} at {list(e.path)}") from e
        checked += 1
    return checked


@pytest.mark.parametrize("case", CASE_IDS)
def test_every_render_validates_against_kubernetes_1_33(renders, case):
    assert validate_strictly(renders[case], case) > 0


def test_the_sidecar_example_the_application_chart_and_the_kustomize_output_validate(tmp_path):
    validate_strictly(example_docs(), "sidecar-example.yaml")
    validate_strictly(app_chart_docs(), "example-app chart")
    validate_strictly(app_chart_docs({"sluice": {"nativeSidecar": False}}), "example-app chart, nativeSidecar false")
    validate_strictly(kustomized_app(tmp_path / "kz"), "kustomize output")


# --- what each render holds -------------------------------------------------------------


def test_control_plane_defaults(renders):
    docs = renders["defaults"]
    dep = find(docs, "Deployment", "sluice-control-plane")
    assert dep["spec"]["replicas"] == 2
    spec, cp = container(docs, "Deployment", "sluice-control-plane", "control-plane")
    assert {p["name"]: p["containerPort"] for p in cp["ports"]} == {"grpc": 50051, "metrics": 9090}
    # Startup and readiness follow the store (the overall status); liveness
    # is the process, so an etcd outage does not restart healthy pods.
    for probe in ("startupProbe", "readinessProbe"):
        assert cp[probe]["grpc"] == {"port": 50051}, probe
    assert cp["livenessProbe"]["grpc"] == {"port": 50051, "service": "liveness"}
    assert "--metrics-listen=0.0.0.0:9090" in cp["args"]
    assert "--etcd=http://etcd.etcd.svc.cluster.local:2379" in cp["args"]
    assert spec["terminationGracePeriodSeconds"] == 30
    assert {c["topologyKey"] for c in spec["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    svc = find(docs, "Service", "sluice-control-plane")
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"grpc": 50051, "metrics": 9090}
    assert find(docs, "PodDisruptionBudget", "sluice-control-plane")["spec"]["maxUnavailable"] == 1
    assert find(docs, "ServiceAccount", "sluice")["automountServiceAccountToken"] is False
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"StatefulSet", "PersistentVolumeClaim", "HorizontalPodAutoscaler", "NetworkPolicy", "ConfigMap"}


def test_bundled_etcd_is_a_statefulset_of_the_upstream_image(renders):
    docs = renders["bundled-etcd"]
    sts = find(docs, "StatefulSet", "sluice-etcd")
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "8Gi"
    etcd = containers(sts["spec"]["template"]["spec"])[0]
    assert etcd["image"].startswith("gcr.io/etcd-development/etcd:v3.6")
    rendered = yaml.safe_dump(docs)
    assert "bitnami" not in rendered.lower()
    peers = next(a for a in etcd["args"] if a.startswith("--initial-cluster="))
    assert peers.count("=http://") == 3
    headless = find(docs, "Service", "sluice-etcd-headless")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    # A quorum of 2 of 3 always stays.
    assert find(docs, "PodDisruptionBudget", "sluice-etcd")["spec"]["maxUnavailable"] == 1
    _, cp = container(docs, "Deployment", "sluice-control-plane", "control-plane")
    endpoints = next(a for a in cp["args"] if a.startswith("--etcd="))
    assert endpoints.count("http://sluice-etcd-") == 3
    single = renders["bundled-etcd-single-gateway"]
    assert find(single, "StatefulSet", "sluice-etcd")["spec"]["replicas"] == 1


def test_external_etcd_tls_and_auth_map_to_the_etcd_flags(renders):
    docs = renders["external-etcd-tls-auth"]
    spec, cp = container(docs, "Deployment", "sluice-control-plane", "control-plane")
    args = cp["args"]
    assert "--etcd=https://etcd-0.etcd.db.svc:2379,https://etcd-1.etcd.db.svc:2379,https://etcd-2.etcd.db.svc:2379" in args
    for flag in (
        "--etcd-user=sluice",
        "--etcd-ca-file=/etc/sluice/etcd-tls/ca.crt",
        "--etcd-cert-file=/etc/sluice/etcd-tls/tls.crt",
        "--etcd-key-file=/etc/sluice/etcd-tls/tls.key",
        "--etcd-tls-domain=etcd.db.svc",
    ):
        assert flag in args
    env = {e["name"]: e for e in cp["env"]}
    assert env["SLUICE_ETCD_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "sluice-etcd-user", "key": "password"}
    assert env["SLUICE_DATA_PLANE_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "sluice-keys", "key": "dp-token"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["etcd-tls"]["secret"]["secretName"] == "sluice-etcd-tls"
    assert volumes["secrets"]["secret"] == {
        "secretName": "sluice-keys",
        "defaultMode": 0o440,
        "items": [{"key": "admin-key", "path": "master-key"}],
    }


def test_embedded_store_has_one_replica_and_a_volume(renders):
    docs = renders["embedded"]
    dep = find(docs, "Deployment", "sluice-control-plane")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    spec, cp = container(docs, "Deployment", "sluice-control-plane", "control-plane")
    assert "--data-dir=/var/lib/sluice/data" in cp["args"]
    assert not [a for a in cp["args"] if a.startswith("--etcd")]
    pvc = find(docs, "PersistentVolumeClaim", "sluice-control-plane-data")
    assert pvc["spec"]["storageClassName"] == "fast"
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "sluice-control-plane-data"}} in spec["volumes"]


def test_gateway_with_hpa(renders):
    docs = renders["gateway-hpa"]
    dep = find(docs, "Deployment", "sluice-gateway")
    assert "replicas" not in dep["spec"], "the HPA owns the replica count"
    spec, dp = container(docs, "Deployment", "sluice-gateway", "data-plane")
    assert "restartPolicy" not in dp
    assert dp["readinessProbe"]["httpGet"]["path"] == "/health/readiness"
    assert dp["livenessProbe"]["httpGet"]["path"] == "/health/liveness"
    assert "--node-id=$(POD_NAME)" in dp["args"]
    env = {e["name"]: e for e in dp["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # --workers follows the CPU limit (1500m: 2 workers).
    assert "--workers=$(SLUICE_WORKERS)" in dp["args"]
    assert env["SLUICE_WORKERS"]["valueFrom"]["resourceFieldRef"] == {"resource": "limits.cpu", "divisor": "1"}
    assert cpu_whole(dp["resources"]["limits"]["cpu"]) == 2
    assert "--label=pool=shared" in dp["args"] and "--label=tier=gateway" in dp["args"]
    assert "--control-plane=http://sluice-control-plane.sluice.svc:50051" in dp["args"]
    assert {"name": "sluice-cache", "emptyDir": {"sizeLimit": "256Mi"}} in spec["volumes"]
    assert dp["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    # preStop sleep (5 s) + the data plane's drain (10 s) fit in the grace period.
    assert spec["terminationGracePeriodSeconds"] >= 5 + 10
    hpa = find(docs, "HorizontalPodAutoscaler", "sluice-gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 20)
    assert hpa["spec"]["behavior"] == load_values("gateway-hpa.yaml")["gateway"]["autoscaling"]["behavior"]
    assert find(docs, "PodDisruptionBudget", "sluice-gateway")
    assert find(docs, "Service", "sluice-gateway")["spec"]["ports"][0]["port"] == 4000
    assert find(docs, "Ingress", "sluice-gateway")["spec"]["rules"][0]["host"] == "llm.example.com"
    route = find(docs, "HTTPRoute", "sluice-gateway")
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "sluice-gateway", "port": 4000}]


def test_monitors_only_when_the_cluster_has_the_prometheus_operator(renders):
    with_api = {(d["kind"], d["metadata"]["name"]) for d in renders["servicemonitor"]}
    assert {
        ("ServiceMonitor", "sluice-control-plane"),
        ("ServiceMonitor", "sluice-gateway"),
        ("PodMonitor", "sluice-sidecars"),
    } <= with_api
    without = {d["kind"] for d in renders["servicemonitor-no-capability"]}
    assert not without & {"ServiceMonitor", "PodMonitor"}
    notes = rendered_case("servicemonitor-no-capability")["sluice/templates/NOTES.txt"]
    assert "does not serve monitoring.coreos.com/v1" in notes


def test_network_policies(renders):
    docs = renders["networkpolicy"]
    cp = find(docs, "NetworkPolicy", "sluice-control-plane")["spec"]
    grpc_rule = next(r for r in cp["ingress"] if r["ports"][0]["port"] == 50051)
    peers = grpc_rule["from"]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "sluice", "app.kubernetes.io/instance": "sluice", "app.kubernetes.io/component": "gateway"}}} in peers
    assert {"namespaceSelector": {}, "podSelector": {"matchLabels": {"sluice.dev/data-plane": "true"}}} in peers
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "platform-admin"}}} in peers
    for rule in cp["ingress"]:
        assert rule["from"], "an empty from would admit every source"
    assert any(r.get("to", [{}])[0].get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "etcd" for r in cp["egress"])
    gw = find(docs, "NetworkPolicy", "sluice-gateway")["spec"]
    assert gw["ingress"][0]["ports"] == [{"port": 4000, "protocol": "TCP"}]
    assert any(p["port"] == 443 for r in gw["egress"] for p in r["ports"])
    etcd = find(docs, "NetworkPolicy", "sluice-etcd")["spec"]
    assert {r["ports"][0]["port"] for r in etcd["ingress"]} == {2379, 2380, 2381}
    # Nothing left open by an empty list of peers.
    closed = documents(render(CHART, {**load_values("networkpolicy.yaml"), "networkPolicy": {"enabled": True, "admin": [], "dataPlanes": [], "metrics": []}, "gateway": {"enabled": False}}))
    assert not find(closed, "NetworkPolicy", "sluice-control-plane")["spec"]["ingress"]


def test_notes_give_the_next_commands():
    notes = rendered_case("defaults")["sluice/templates/NOTES.txt"]
    for needle in ("port-forward svc/sluice-control-plane 50051:50051", "base64 -d", "grpcurl -plaintext", "sluice-sidecar.inject", "deploy/kubernetes/sidecar"):
        assert needle in notes


# --- security -----------------------------------------------------------------------


def all_renders_for_security(renders, tmp_path) -> dict[str, list[dict]]:
    out = dict(renders)
    out["example-app"] = app_chart_docs()
    out["example-app-plain"] = app_chart_docs({"sluice": {"nativeSidecar": False}})
    out["sidecar-example"] = example_docs()
    out["kustomize"] = kustomized_app(tmp_path / "kz")
    return out


def test_every_container_runs_restricted(renders, tmp_path):
    seen = 0
    for case, docs in all_renders_for_security(renders, tmp_path).items():
        for doc in docs:
            for spec in pod_specs(doc):
                pod_sc = spec.get("securityContext") or {}
                for c in containers(spec):
                    where = f"{case}: {doc['kind']} {doc['metadata']['name']} container {c['name']}"
                    ours = c["name"] in ("control-plane", "data-plane", "sluice", "etcd")
                    if not ours:
                        continue
                    seen += 1
                    sc = c.get("securityContext") or {}
                    assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
                    assert sc.get("runAsUser") == 65532 and sc.get("runAsGroup") == 65532, where
                    assert sc.get("readOnlyRootFilesystem") is True, where
                    assert sc.get("allowPrivilegeEscalation") is False, where
                    assert sc.get("capabilities") == {"drop": ["ALL"]}, where
                    assert (sc.get("seccompProfile") or pod_sc.get("seccompProfile")) == {"type": "RuntimeDefault"}, where
                    res = c.get("resources") or {}
                    for kind in ("requests", "limits"):
                        assert {"cpu", "memory"} <= set(res.get(kind) or {}), f"{where}: resources.{kind}"
    assert seen >= 20


def test_no_secret_value_outside_a_secret(renders, tmp_path):
    for case in CASE_IDS:
        rendered = rendered_case(case)
        docs = documents(rendered)
        secrets = secret_values(docs)
        if case != "external-etcd-tls-auth":
            assert len(secrets) == 2, f"{case}: the made Secret holds the master key and the token"
        others = [d for d in docs if d["kind"] != "Secret"]
        for d in others:
            assert d["kind"] != "ConfigMap", f"{case}: the chart makes no ConfigMap"
            text = yaml.safe_dump(d)
            for s in secrets:
                assert s not in text and base64.b64encode(s.encode()).decode() not in text, f"{case}: a secret value in {d['kind']} {d['metadata']['name']}"
            for spec in pod_specs(d):
                for c in containers(spec):
                    for arg in (c.get("args") or []) + (c.get("command") or []):
                        # (etcd's --initial-cluster-token is a cluster name, not a secret)
                        assert not re.search(r"^--(master-key|data-plane-token|etcd-password|token|password|api-key)=", arg, re.I), f"{case}: {arg}"
                    for e in c.get("env") or []:
                        if re.search(r"KEY|TOKEN|PASSWORD", e["name"]) and e["name"] != "SLUICE_WORKERS":
                            assert "value" not in e and "secretKeyRef" in e["valueFrom"], f"{case}: {e}"
        notes = rendered["sluice/templates/NOTES.txt"]
        for s in secrets:
            assert s not in notes


def test_the_made_secret_is_looked_up_and_kept_and_an_existing_one_replaces_it(renders):
    source = (CHART / "templates" / "secret.yaml").read_text()
    assert re.search(r'lookup "v1" "Secret" \.Release\.Namespace \$name', source)
    secret = find(renders["defaults"], "Secret", "sluice")
    assert secret["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    key = base64.b64decode(secret["data"]["master-key"]).decode()
    assert key.startswith("sk-") and len(key) == 51
    assert len(base64.b64decode(secret["data"]["data-plane-token"])) == 48
    # An existingSecret: no Secret made, every reference names it.
    docs = renders["external-etcd-tls-auth"]
    assert not [d for d in docs if d["kind"] == "Secret"]
    refs = set()
    for d in docs:
        for spec in pod_specs(d):
            for c in containers(spec):
                for e in c.get("env") or []:
                    ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                    if ref:
                        refs.add(ref["name"])
            for v in spec.get("volumes") or []:
                if "secret" in v:
                    refs.add(v["secret"]["secretName"])
    assert refs == {"sluice-keys", "sluice-etcd-user", "sluice-etcd-tls"}


# --- bad values ------------------------------------------------------------------------------

BAD_VALUES = [
    ("negative replicas", {"etcd": {"endpoints": ["http://e:2379"]}, "controlPlane": {"replicas": -1}}, "/controlPlane/replicas"),
    ("an unknown top-level key", {"etcd": {"endpoints": ["http://e:2379"]}, "replicaCount": 3}, "additional properties 'replicaCount'"),
    ("a misspelt nested key", {"etcd": {"endpoints": ["http://e:2379"]}, "controlPlane": {"replica": 2}}, "additional properties 'replica'"),
    ("a port out of range", {"etcd": {"endpoints": ["http://e:2379"]}, "controlPlane": {"port": 70000}}, "/controlPlane/port"),
    ("port zero", {"etcd": {"endpoints": ["http://e:2379"]}, "gateway": {"enabled": True, "port": 0}}, "/gateway/port"),
    ("a port as text", {"etcd": {"endpoints": ["http://e:2379"]}, "controlPlane": {"metrics": {"port": "9090"}}}, "/controlPlane/metrics/port"),
    ("an unknown store", {"store": "mysql"}, "/store"),
    ("an even etcd cluster", {"etcd": {"bundled": {"enabled": True, "replicas": 2}}}, "/etcd/bundled/replicas"),
    ("an endpoint that is not a URL", {"etcd": {"endpoints": ["etcd:2379"]}}, "/etcd/endpoints/0"),
    ("a bad digest", {"etcd": {"endpoints": ["http://e:2379"]}, "image": {"digest": "latest"}}, "/image/digest"),
    ("bundled etcd off and no endpoints", {}, "store: etcd needs an etcd"),
    ("embedded store with 2 replicas", {"store": "embedded", "controlPlane": {"replicas": 2}}, "controlPlane.replicas must be 1 (got 2)"),
    ("embedded store and bundled etcd", {"store": "embedded", "controlPlane": {"replicas": 1}, "etcd": {"bundled": {"enabled": True}}}, "store: embedded does not use etcd"),
    ("bundled etcd and endpoints", {"etcd": {"endpoints": ["http://e:2379"], "bundled": {"enabled": True}}}, "both set"),
    ("TLS with no Secret", {"etcd": {"endpoints": ["https://e:2379"], "tls": {"enabled": True}}}, "etcd.tls.secretName"),
    ("a user with no password", {"etcd": {"endpoints": ["http://e:2379"], "username": "sluice"}}, "etcd.passwordSecret.name"),
    ("autoscaling min above max", {"etcd": {"endpoints": ["http://e:2379"]}, "gateway": {"enabled": True, "autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}}, "minReplicas (5) is above maxReplicas (2)"),
    ("resources without limits", {"etcd": {"endpoints": ["http://e:2379"]}, "controlPlane": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": None}}}, "/controlPlane/resources"),
]


@pytest.mark.parametrize("values,expected", [(b[1], b[2]) for b in BAD_VALUES], ids=[b[0] for b in BAD_VALUES])
def test_bad_values_are_refused(values, expected):
    h = helm()
    with pytest.raises(h.HelmError) as refused:
        render(CHART, values)
    assert expected in str(refused.value), str(refused.value)


def test_good_values_pass_the_schema():
    h = helm()
    with h.Chart.load(str(CHART)) as chart:
        for _, values, _ in CASES:
            chart.validate_schema(load_values(values))


# --- the sidecar: library, plain example and Kustomize agree ----------------------------------


def sidecar_of(docs: list[dict]) -> tuple[dict, dict]:
    """(the sluice container, the sluice-cache volume) of the one Deployment."""
    spec = pod_specs(next(d for d in docs if d["kind"] == "Deployment"))[0]
    c = next(c for c in containers(spec) if c["name"] == "sluice")
    v = next(v for v in spec["volumes"] if v["name"] == "sluice-cache")
    return c, v


def test_the_library_the_example_and_the_kustomize_component_render_the_same_sidecar(tmp_path):
    library = sidecar_of(app_chart_docs())
    example = sidecar_of(example_docs())
    kustomize = sidecar_of(kustomized_app(tmp_path / "kz"))
    assert library == example, "deploy/kubernetes/sidecar-example.yaml drifted from the sluice-sidecar chart"
    assert library == kustomize, "deploy/kubernetes/sidecar/ drifted from the sluice-sidecar chart"


def test_the_sidecar_is_a_native_sidecar_started_first():
    docs = app_chart_docs()
    spec = pod_specs(docs[0])[0]
    first = spec["initContainers"][0]
    assert first["name"] == "sluice" and first["restartPolicy"] == "Always"
    assert first["startupProbe"]["httpGet"] == {"path": "/health/readiness", "port": 4000}
    assert [c["name"] for c in spec["containers"]] == ["app"]
    env = {e["name"]: e for e in first["env"]}
    assert env["SLUICE_WORKERS"]["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
    assert env["SLUICE_DATA_PLANE_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "sluice-data-plane", "key": "data-plane-token"}
    app_env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert app_env["OPENAI_BASE_URL"] == "http://localhost:4000/v1"
    example_spec = pod_specs(example_docs()[0])[0]
    assert {"name": "OPENAI_BASE_URL", "value": "http://localhost:4000/v1"} in example_spec["containers"][0]["env"]


def test_without_native_sidecars_it_is_a_plain_container():
    spec = pod_specs(app_chart_docs({"sluice": {"nativeSidecar": False}})[0])[0]
    assert not spec.get("initContainers")
    assert [c["name"] for c in spec["containers"]] == ["app", "sluice"]
    assert "restartPolicy" not in spec["containers"][1]


def test_the_sidecar_takes_its_values(tmp_path):
    spec = pod_specs(app_chart_docs({"sluice": {"controlPlane": "http://cp.other.svc:50051", "labels": {"team": "search"}, "resources": {"limits": {"cpu": "3"}}}})[0])[0]
    c = spec["initContainers"][0]
    assert "--control-plane=http://cp.other.svc:50051" in c["args"]
    assert "--label=team=search" in c["args"]
    assert c["resources"]["limits"] == {"cpu": "3", "memory": "256Mi"}
