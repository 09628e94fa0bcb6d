"""Starts a rendered container's process on this machine, as the pod would.

From the container as the chart renders it: the command (its binary swapped
for the one built here), args and env exactly as rendered, except that
  - `secretKeyRef` env and Secret volumes get the test's values,
    `fieldRef: metadata.name` the pod name, `resourceFieldRef: limits.cpu`
    the limit rounded up (as the kubelet does), and `$(VAR)` in args is
    expanded from the env (as the kubelet does);
  - every volume mount becomes a directory under the test's temp dir (the
    paths in args and env follow);
  - `0.0.0.0:PORT` listen addresses become loopback ones on free ports, and
    URLs naming a cluster host (a Service, a pod's DNS name) point at the
    process standing in for it.

Where the machine allows (root, util-linux `unshare` and `setpriv`), it runs
as the pod's user would: UID/GID 65532 with no_new_privs and no
capabilities, in a private mount namespace where every mount is read-only
except the container's emptyDir/PVC mounts, so any write elsewhere fails
with EROFS (the container's readOnlyRootFilesystem, with the host's own
root standing in for the image's). `Process.sandboxed` says which it was.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import cpu_whole

UID = 65532

# Make every mount read-only but the writable ones, then check that it is.
READ_ONLY = r"""
set -eu
n=$1; shift
i=0; writable=""
while [ "$i" -lt "$n" ]; do writable="$writable $1"; mount --bind "$1" "$1"; shift; i=$((i+1)); done
awk '{print $5}' /proc/self/mountinfo | sort -u | while read -r m; do
  case "$m" in
    /proc|/proc/*|/sys|/sys/*|/dev|/dev/pts) continue ;;
  esac
  skip=""; for w in $writable; do [ "$m" = "$w" ] && skip=1; done
  [ -n "$skip" ] && continue
  mount -o remount,bind,ro "$m" 2>/dev/null || true
done
if touch /.sluice-read-only-check 2>/dev/null; then rm -f /.sluice-read-only-check; echo "the root is still writable" >&2; exit 97; fi
exec "$@"
"""


def can_sandbox() -> bool:
    return os.geteuid() == 0 and bool(shutil.which("unshare")) and bool(shutil.which("setpriv"))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Process:
    name: str
    container: dict[str, Any]
    proc: subprocess.Popen
    ports: dict[int, int]  # container port -> loopback port
    port_names: dict[str, int]
    mounts: dict[str, Path]  # mountPath -> directory here
    writable: list[Path]
    log: Path
    root: Path
    sandboxed: bool
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def port(self, port: int | str) -> int:
        if isinstance(port, str):
            port = self.port_names[port]
        return self.ports[port]

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float) -> tuple[int, float]:
        """SIGTERM, as the kubelet sends it: (exit code, seconds taken)."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9, time.monotonic() - started
        return self.proc.returncode, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def resolve_env(container: dict, pod_name: str, secrets: dict[tuple[str, str], str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = expand(str(e["value"]), env)
            continue
        source = e["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[e["name"]] = secrets[(ref["name"], ref["key"])]
        elif "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "metadata.name", source
            env[e["name"]] = pod_name
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            assert ref["resource"] == "limits.cpu" and str(ref.get("divisor", "1")) == "1", ref
            env[e["name"]] = str(cpu_whole(container["resources"]["limits"]["cpu"]))
        else:
            raise AssertionError(f"env source the test cannot stand in for: {e}")
    return env


def expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion (unknown names stay as they are)."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), text)


def start(
    name: str,
    pod_spec: dict,
    container: dict,
    *,
    binaries: dict[str, str],
    root: Path,
    pod_name: str,
    secrets: dict[tuple[str, str], str],
    hosts: dict[str, "Process"],
    own_hosts: tuple[str, ...] = (),
    names: dict[str, str] | None = None,
) -> Process:
    root = root / name
    root.mkdir(parents=True)
    os.chmod(root, 0o755)
    sandboxed = can_sandbox()

    # Volumes.
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    mounts: dict[str, Path] = {}
    writable: list[Path] = []
    for m in container.get("volumeMounts") or []:
        volume = volumes[m["name"]]
        here = root / "mnt" / m["mountPath"].lstrip("/")
        here.mkdir(parents=True)
        mounts[m["mountPath"]] = here
        if "secret" in volume:
            s = volume["secret"]
            for item in s["items"]:
                f = here / item["path"]
                f.write_text(secrets[(s["secretName"], item["key"])])
                os.chmod(f, 0o440)
                if sandboxed:
                    os.chown(f, 0, UID)
            os.chmod(here, 0o755)
        elif "emptyDir" in volume or "persistentVolumeClaim" in volume:
            writable.append(here)
            if sandboxed:
                os.chown(here, UID, UID)
        else:
            raise AssertionError(f"volume the test cannot stand in for: {volume}")
        for parent in here.parents:
            if parent == root:
                break
            os.chmod(parent, 0o755)

    ports = {p["containerPort"]: free_port() for p in container.get("ports") or []}
    port_names = {p["name"]: p["containerPort"] for p in container.get("ports") or [] if "name" in p}

    def rewrite(text: str) -> str:
        for path in sorted(mounts, key=len, reverse=True):
            text = text.replace(path, str(mounts[path]))

        def listen(m: re.Match) -> str:
            port = int(m.group(1))
            if port not in ports:
                ports[port] = free_port()
            return f"127.0.0.1:{ports[port]}"

        text = re.sub(r"0\.0\.0\.0:(\d+)", listen, text)

        def url(m: re.Match) -> str:
            scheme, host, port = m.group(1), m.group(2), int(m.group(3))
            if host in ("127.0.0.1", "localhost"):
                return m.group(0)
            if host in own_hosts:
                if port not in ports:
                    ports[port] = free_port()
                return f"{scheme}://127.0.0.1:{ports[port]}"
            target = hosts.get(host)
            assert target is not None, f"{name}: {host} names nothing this test started (known: {sorted(hosts)})"
            return f"{scheme}://127.0.0.1:{target.port(port)}"

        text = re.sub(r"(https?)://([A-Za-z0-9.-]+):(\d+)", url, text)
        # A bare host name as a flag's whole value (a TLS server name).
        flag, eq, value = text.partition("=")
        if eq and value in (names or {}):
            text = f"{flag}={names[value]}"
        return text

    env = {k: rewrite(v) for k, v in resolve_env(container, pod_name, secrets).items()}
    command = list(container["command"])
    binary = binaries[os.path.basename(command[0])]
    args = [rewrite(expand(a, env)) for a in command[1:] + list(container.get("args") or [])]
    # What a pod's container has besides its own env.
    base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/home/nonroot", "HOSTNAME": pod_name}
    full_env = {**base, **env}
    argv = [binary, *args]
    if sandboxed:
        argv = [
            "unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", READ_ONLY, "read-only", str(len(writable)), *map(str, writable),
            "setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--no-new-privs",
            "--inh-caps=-all", "--",
            *argv,
        ]
    log = root / "log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=full_env, stdout=out, stderr=subprocess.STDOUT, cwd=str(root), start_new_session=True)
    return Process(name, container, proc, ports, port_names, mounts, writable, log, root, sandboxed, argv, env)


def grpc_serving(address: str, service: str = "") -> tuple[bool, str]:
    grpcurl = shutil.which("grpcurl")
    assert grpcurl, "grpcurl is needed (scripts/test.sh installs it)"
    body = '{"service": "%s"}' % service
    out = subprocess.run(
        [grpcurl, "-plaintext", "-max-time", "3", "-d", body, address, "grpc.health.v1.Health/Check"],
        capture_output=True, text=True,
    )
    return ('"SERVING"' in out.stdout, out.stdout + out.stderr)


def http_ok(url: str) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return (200 <= r.status < 400, r.read().decode(errors="replace"))
    except Exception as e:  # noqa: BLE001 - any failure is a failed probe
        return (False, str(e))


def probe(p: Process, kind: str, within: float) -> str:
    """Runs the container's rendered probe (gRPC health or HTTP GET) until it
    passes; returns what it answered."""
    spec = p.container[kind]
    deadline = time.monotonic() + within
    last = ""
    while time.monotonic() < deadline:
        assert p.alive(), f"{p.name} exited ({p.proc.returncode}) before its {kind} passed:\n{p.logs()}"
        if "grpc" in spec:
            ok, last = grpc_serving(f"127.0.0.1:{p.port(spec['grpc']['port'])}", spec["grpc"].get("service", ""))
        elif "httpGet" in spec:
            g = spec["httpGet"]
            ok, last = http_ok(f"http://127.0.0.1:{p.port(g['port'])}{g['path']}")
        else:
            raise AssertionError(f"{p.name}: a {kind} the test cannot run: {spec}")
        if ok:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{p.name}: {kind} did not pass within {within:.0f}s (last answer: {last}):\n{p.logs()}")


def files_outside(root: Path, allowed: list[Path]) -> list[Path]:
    """Files under root not under an allowed dir, besides the log and the
    Secret files the test wrote."""
    out = []
    for f in root.rglob("*"):
        if f.is_dir() or f.name == "log":
            continue
        if any(a == f or a in f.parents for a in allowed):
            continue
        out.append(f)
    return out
