"""The Helm chart against a real Kubernetes cluster.

Runs only when ZERO_EMQX_E2E_KUBECONFIG names a kubeconfig; objects go to
ZERO_EMQX_E2E_NAMESPACE (default "default").
- Always: every object `helm template` renders passes a server-side dry-run apply (the
  API server's own validation and admission; nothing is created).
- With ZERO_EMQX_E2E_IMAGE (`repository:tag` of this repository's image, pullable by the
  cluster): a real `helm install`, both Deployments become available, POST /v1/instances
  through a port-forward answers 201 and the tenant Secret appears with its labels; then
  everything the test made is removed.
helm and kubectl: $HELM / $KUBECTL, or scripts/fetch-helm's .tools/bin/.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "zero-emqx"
KUBECONFIG = os.environ.get("ZERO_EMQX_E2E_KUBECONFIG", "")
NAMESPACE = os.environ.get("ZERO_EMQX_E2E_NAMESPACE", "default")
TENANT_NAMESPACE = f"{NAMESPACE}-tenants"  # the chart's default tenants.namespace
IMAGE = os.environ.get("ZERO_EMQX_E2E_IMAGE", "")
RELEASE = "zero-emqx-e2e"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not KUBECONFIG, reason="ZERO_EMQX_E2E_KUBECONFIG is not set"),
]


def tool(name: str) -> str:
    explicit = os.environ.get(name.upper())
    if explicit:
        return explicit
    local = ROOT / ".tools" / "bin" / name
    if not local.exists():
        env = {**os.environ, "PYTHON": sys.executable}
        subprocess.run([str(ROOT / "scripts" / "fetch-helm")], env=env, check=True, timeout=300)
    return str(local)


def run(*args: str, stdin: str | None = None, timeout: float = 120, check: bool = True) -> str:
    env = {**os.environ, "KUBECONFIG": KUBECONFIG}
    done = subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, env=env, timeout=timeout
    )
    assert done.returncode == 0 or not check, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def helm(*args: str, timeout: float = 120) -> str:
    return run(tool("helm"), *args, "--namespace", NAMESPACE, timeout=timeout)


def kubectl(*args: str, stdin: str | None = None, timeout: float = 120, check: bool = True) -> str:
    return run(
        tool("kubectl"), "--namespace", NAMESPACE, *args, stdin=stdin, timeout=timeout, check=check
    )


@pytest.mark.timeout(180)
def test_rendered_chart_passes_server_side_dry_run() -> None:
    # A server-side dry run creates no namespace: the Role goes where one exists.
    rendered = helm(
        "template",
        RELEASE,
        str(CHART),
        "--set",
        "manager.publicHost=localhost",
        "--set",
        f"tenants.namespace={NAMESPACE}",
        "--set",
        "tenants.createNamespace=false",
    )
    kubectl("apply", "--dry-run=server", "-f", "-", stdin=rendered)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def release() -> Iterator[None]:
    repository, _, tag = IMAGE.rpartition(":")
    helm(
        "install",
        RELEASE,
        str(CHART),
        "--set",
        f"image.repository={repository},image.tag={tag}",
        "--set",
        "manager.publicHost=localhost,manager.replicas=1,exhook.replicas=1",
        "--wait",
        "--timeout",
        "240s",
        timeout=300,
    )
    try:
        yield
    finally:
        helm("uninstall", RELEASE, "--wait", timeout=180)
        # Kept by helm.sh/resource-policy: keep.
        kubectl(
            "delete", "secret", f"{RELEASE}-emqx-api", f"{RELEASE}-ip-hash", "--ignore-not-found"
        )
        kubectl("delete", "namespace", TENANT_NAMESPACE, "--ignore-not-found", "--wait=false")


@pytest.mark.timeout(600)
@pytest.mark.skipif(not IMAGE, reason="ZERO_EMQX_E2E_IMAGE is not set")
def test_install_and_create_an_instance(release: None) -> None:
    for component in ("manager", "exhook"):
        kubectl("rollout", "status", f"deployment/{RELEASE}-{component}", "--timeout=120s")
    port = free_port()
    command = [tool("kubectl"), "--namespace", NAMESPACE, "port-forward"]
    forward = subprocess.Popen(
        [*command, f"svc/{RELEASE}-manager", f"{port}:8080"],
        env={**os.environ, "KUBECONFIG": KUBECONFIG},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    instance_id = ""
    try:
        body = post_instance(port)
        instance_id = body["instance_id"]
        assert body["credentials"]["username"] == instance_id
        assert body["mqtts"] == {
            "host": "localhost",
            "port": 8883,
            "uri": "mqtts://localhost:8883",
        }
        secret = json.loads(
            kubectl("get", "secret", instance_id, "-o", "json", "--namespace", TENANT_NAMESPACE)
        )
        labels = secret["metadata"]["labels"]
        assert labels["zero-emqx.io/tenant"] == "true"
        assert labels["app.kubernetes.io/managed-by"] == "zero-emqx"
        stored = base64.b64decode(secret["data"]["password-hash"]).decode()
        assert stored.startswith("$argon2id$")
        assert body["credentials"]["password"] not in json.dumps(secret)
        account = f"system:serviceaccount:{NAMESPACE}:{RELEASE}"
        for namespace, allowed in ((TENANT_NAMESPACE, "yes"), (NAMESPACE, "no")):
            answer = kubectl(
                "auth",
                "can-i",
                "get",
                "secrets",
                "--as",
                account,
                "--namespace",
                namespace,
                check=False,
            )
            assert answer.strip() == allowed, namespace  # the release's Secrets are out of reach
    finally:
        forward.terminate()
        forward.wait(timeout=10)
        if instance_id:
            kubectl(
                "delete",
                "secret",
                instance_id,
                "--ignore-not-found",
                "--namespace",
                TENANT_NAMESPACE,
            )


def post_instance(port: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/instances", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                assert response.status == 201
                result: dict[str, Any] = json.loads(response.read())
                return result
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
