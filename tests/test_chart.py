"""charts/zero-emqx: `helm lint` and `helm template` for the defaults and each optional
feature, every rendered object validated against the Kubernetes API schemas, and the
properties the design relies on (Secrets-only namespaced RBAC, the locked-down pods, the
NetworkPolicy in front of the ExHook port). Also the example values for the official
EMQX chart, checked against emqx-config/.

helm is the pinned binary scripts/fetch-helm extracts into .tools/bin/ (or $HELM).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from manager.networks import Prefixes
from manager.settings import ManagerSettings
from tenants.quotas import Quotas
from tests.test_emqx_config import (
    ACL_FILE_60,
    ACL_FILE_61,
    ACL_PATH,
    API_KEY_LINE_RE,
    API_KEY_ROLE,
    API_KEY_SCOPES,
    API_KEYS_FILE,
    VARIANT_60,
    VARIANT_61,
    Variant,
    emqx_view,
    hocon_keys_of,
    load_env_file,
)

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "zero-emqx"
EXAMPLES = CHART / "examples"
RELEASE = "zero-emqx"
NAMESPACE = "zero"
TENANT_NAMESPACE = "zero-tenants"
K8S_VERSION = str(kubernetes_validate.latest_version())
SECRET_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}
CRD_KINDS = {"ServiceMonitor"}
UID = 10001

Manifest = dict[str, Any]


@pytest.fixture(scope="session")
def helm() -> str:
    explicit = os.environ.get("HELM")
    if explicit:
        return explicit
    local = ROOT / ".tools" / "bin" / "helm"
    if platform.system() == "Linux" and platform.machine() == "x86_64":
        env = {**os.environ, "PYTHON": sys.executable}
        subprocess.run([str(ROOT / "scripts" / "fetch-helm")], env=env, check=True, timeout=300)
        return str(local)
    found = shutil.which("helm")
    if found is None:
        pytest.skip("no helm: set HELM, or run scripts/fetch-helm on linux/amd64")
    return found


def run_helm(helm: str, *args: str) -> str:
    done = subprocess.run(
        [helm, *args], capture_output=True, text=True, timeout=30, cwd=ROOT, check=False
    )
    assert done.returncode == 0, f"helm {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@functools.cache
def _render(helm: str, sets: tuple[str, ...]) -> tuple[Manifest, ...]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    args += ["--kube-version", K8S_VERSION]
    for item in sets:
        args += ["--set-json", item]
    docs = yaml.safe_load_all(run_helm(helm, *args))
    return tuple(doc for doc in docs if doc)


def render(helm: str, *sets: str) -> list[Manifest]:
    """`helm template` with `--set-json key=<json>` for each item (a fresh copy)."""
    return json.loads(json.dumps(_render(helm, tuple(sets))))  # type: ignore[no-any-return]


def by_kind(objects: Sequence[Manifest], kind: str) -> list[Manifest]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: Sequence[Manifest], kind: str, name: str) -> Manifest:
    found = [obj for obj in by_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def deployment(objects: Sequence[Manifest], component: str) -> Manifest:
    return one(objects, "Deployment", f"{RELEASE}-{component}")


def container(deploy: Manifest) -> Manifest:
    containers = deploy["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Manifest = containers[0]
    return result


def env_of(deploy: Manifest, objects: Sequence[Manifest]) -> dict[str, Any]:
    """The container's environment: its ConfigMaps' data, then its env entries."""
    result: dict[str, Any] = {}
    spec = container(deploy)
    for source in spec.get("envFrom", []):
        config_map = one(objects, "ConfigMap", source["configMapRef"]["name"])
        result.update(config_map["data"])
    for item in spec.get("env", []):
        result[item["name"]] = item.get("value", item.get("valueFrom"))
    return result


def secret_data(secret: Manifest) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


SCENARIOS: dict[str, tuple[str, ...]] = {
    "defaults": (),
    "ingress": (
        "ingress.enabled=true",
        'ingress.className="nginx"',
        'ingress.tls=[{"secretName":"t","hosts":["zero-emqx.example.com"]}]',
    ),
    "ingress-management-api": (
        "ingress.enabled=true",
        "ingress.managementApi=true",
        'manager.publicBaseUrl="https://zero.example.org/z"',
    ),
    "service-monitor": ("serviceMonitor.enabled=true",),
    "existing-secrets": (
        'emqxApi.existingSecret="my-emqx-api"',
        'ipHashKey.existingSecret="my-ip-hash"',
        'ipHashKey.secretKey="key"',
    ),
    "no-network-policy": ("networkPolicy.enabled=false",),
    "management-api": (
        "manager.managementApi.enabled=true",
        'manager.managementApi.keysSecret="ops-keys"',
    ),
    "exhook-tls": ('exhook.tls.existingSecret="exhook-tls"',),
    "metrics-from-prometheus": (
        'networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":'
        '{"kubernetes.io/metadata.name":"monitoring"}}}]',
    ),
    "emqx-elsewhere-ipv6": (
        'emqx.namespaceSelector={"kubernetes.io/metadata.name":"emqx"}',
        'bindAddress="[::]"',
        "pdb.enabled=false",
    ),
}


def scenario(helm: str, name: str) -> list[Manifest]:
    return render(helm, *SCENARIOS[name])


# --- lint and schema validation -------------------------------------------------------


def test_helm_lint(helm: str) -> None:
    run_helm(helm, "lint", "--strict", str(CHART))
    for sets in SCENARIOS.values():
        args = ["lint", "--strict", str(CHART)]
        for item in sets:
            args += ["--set-json", item]
        run_helm(helm, *args)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_object_is_valid_kubernetes(helm: str, name: str) -> None:
    objects = scenario(helm, name)
    assert objects
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] == "Namespace":  # cluster-scoped: the tenant records' namespace
            assert obj["metadata"]["name"] == TENANT_NAMESPACE
        elif obj["kind"] in ("Role", "RoleBinding"):
            assert obj["metadata"]["namespace"] == TENANT_NAMESPACE, where
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE, where
        if obj["kind"] in CRD_KINDS:
            validate_service_monitor(obj)
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where} ({name}): {exc.message}")


def validate_service_monitor(obj: Manifest) -> None:
    """monitoring.coreos.com/v1 ServiceMonitor, structurally (it is a CRD)."""
    assert obj["apiVersion"] == "monitoring.coreos.com/v1"
    spec = obj["spec"]
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}
    assert spec["selector"]["matchLabels"]["app.kubernetes.io/component"] == "exhook"
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/metrics"


# --- what the design relies on -----------------------------------------------------


def test_both_deployments_render_with_their_commands(helm: str) -> None:
    objects = scenario(helm, "defaults")
    assert {d["metadata"]["name"] for d in by_kind(objects, "Deployment")} == {
        f"{RELEASE}-manager",
        f"{RELEASE}-exhook",
    }
    assert container(deployment(objects, "manager"))["command"] == ["zero-emqx-manager"]
    assert container(deployment(objects, "exhook"))["command"] == ["zero-emqx-exhook"]
    for component in ("manager", "exhook"):
        spec = deployment(objects, component)["spec"]
        assert spec["selector"]["matchLabels"].items() <= (
            spec["template"]["metadata"]["labels"].items()
        )
        service = one(objects, "Service", f"{RELEASE}-{component}")
        assert service["spec"]["selector"] == spec["selector"]["matchLabels"]


def test_processes_get_the_settings_they_read(helm: str) -> None:
    objects = scenario(helm, "defaults")
    manager = env_of(deployment(objects, "manager"), objects)
    assert manager["ZERO_EMQX_STORE"] == "kubernetes"
    assert manager["MANAGER_ADDR"] == "0.0.0.0:8080"
    assert manager["MQTTS_PORT"] == "8883"
    assert manager["WSS_PORT"] == "8084"
    assert manager["WSS_PATH"] == "/mqtt"
    assert manager["KUBE_NAMESPACE"] == TENANT_NAMESPACE
    ip_hash = manager["IP_HASH_KEY"]["secretKeyRef"]
    secret = secret_data(one(objects, "Secret", ip_hash["name"]))
    assert len(secret[ip_hash["key"]]) >= 16
    exhook = env_of(deployment(objects, "exhook"), objects)
    assert exhook["KUBE_NAMESPACE"] == TENANT_NAMESPACE
    assert exhook["ZERO_EMQX_STORE"] == "kubernetes"
    assert exhook["EXHOOK_ADDR"] == "0.0.0.0:9000"
    assert exhook["EXHOOK_HTTP_ADDR"] == "0.0.0.0:9001"
    assert exhook["UNKNOWN_USER_ACTION"] == "deny"
    assert exhook["EMQX_API_URL"] == "http://emqx:18083"
    assert "EXHOOK_TLS_CERT" not in exhook
    for name, key in (("EMQX_API_KEY", "api-key"), ("EMQX_API_SECRET", "api-secret")):
        assert exhook[name]["secretKeyRef"] == {"name": f"{RELEASE}-emqx-api", "key": key}


PRIVATE_RANGES = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7"


def test_trusted_proxies_fit_the_charts_own_ingress(helm: str) -> None:
    """Behind the chart's Ingress every caller must not be the controller's address."""

    def trusted(*sets: str) -> str:
        objects = render(helm, *sets)
        value: str = env_of(deployment(objects, "manager"), objects)["TRUSTED_PROXIES"]
        return value

    def hops(*sets: str) -> str | None:
        objects = render(helm, *sets)
        value: str | None = env_of(deployment(objects, "manager"), objects).get(
            "TRUSTED_PROXY_HOPS"
        )
        return value

    assert trusted() == ""  # no Ingress: the peer is the caller, headers are ignored
    assert trusted(*SCENARIOS["ingress"]) == PRIVATE_RANGES
    # Behind the Ingress the controller is the one proxy: a private caller address (an
    # in-cluster caller, a load balancer's) is the caller, not one more proxy to walk past.
    assert hops(*SCENARIOS["ingress"]) == "1"
    assert hops() is None
    assert hops("ingress.enabled=true", 'manager.trustedProxies="10.1.0.0/16"') is None
    assert hops("ingress.enabled=true", "manager.trustedProxyHops=2") == "2"
    # A LoadBalancer Service is reachable from outside: a private range is no proxy there.
    assert trusted("ingress.enabled=true", 'manager.service.type="LoadBalancer"') == ""
    explicit = 'manager.trustedProxies="10.1.0.0/16"'
    assert trusted("ingress.enabled=true", explicit) == "10.1.0.0/16"


@pytest.mark.parametrize("name", ["defaults", "ingress"])
def test_manager_settings_of_the_chart_parse(helm: str, name: str) -> None:
    objects = scenario(helm, name)
    env = env_of(deployment(objects, "manager"), objects)
    plain = {k: v for k, v in env.items() if isinstance(v, str)}
    secrets = {"IP_HASH_KEY": "k" * 16, "EMQX_API_KEY": "key", "EMQX_API_SECRET": "secret"}
    settings = ManagerSettings.from_environ({**plain, **secrets})
    assert settings.per_network_max_live == 50
    assert settings.max_live_reserved == 1000
    assert settings.prefixes == Prefixes()
    assert settings.proxy_header == "x-forwarded-for"
    assert settings.header_timeout_seconds == settings.body_timeout_seconds == 10.0
    assert settings.keepalive_timeout_seconds == 75.0
    assert settings.max_connections == 1000
    assert settings.ready_interval_seconds == 5.0
    assert len(settings.trusted_proxies) == (5 if name == "ingress" else 0)
    assert settings.trusted_proxy_hops == (1 if name == "ingress" else 0)


def test_management_api_is_off_by_default_and_wired_when_on(helm: str) -> None:
    objects = scenario(helm, "defaults")
    manager = env_of(deployment(objects, "manager"), objects)
    assert manager["MANAGEMENT_API"] == "false"
    assert manager["MAX_CREDENTIALS_PER_INSTANCE"] == "20"
    assert "MANAGEMENT_API_KEYS_FILE" not in manager
    # connected_clients: the manager reads EMQX's client count with the hook's key
    assert manager["EMQX_API_URL"] == "http://emqx:18083"
    assert manager["EMQX_API_KEY"]["secretKeyRef"] == {
        "name": f"{RELEASE}-emqx-api",
        "key": "api-key",
    }

    objects = scenario(helm, "management-api")
    deploy = deployment(objects, "manager")
    manager = env_of(deploy, objects)
    assert manager["MANAGEMENT_API"] == "true"
    path = manager["MANAGEMENT_API_KEYS_FILE"]
    mounts = {m["name"]: m for m in container(deploy)["volumeMounts"]}
    assert path == mounts["management-keys"]["mountPath"] + "/api_keys"
    assert mounts["management-keys"]["readOnly"] is True
    volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
    assert volumes["management-keys"]["secret"] == {
        "secretName": "ops-keys",
        "items": [{"key": "api_keys", "path": "api_keys"}],
    }


def test_quotas_reach_both_processes(helm: str) -> None:
    """values.quotas become QUOTA_* settings that both processes parse into their Quotas."""
    objects = render(helm, 'quotas={"QUOTA_MAX_SESSIONS": "20", "QUOTA_RETAINED_MESSAGES": 5}')
    for component in ("manager", "exhook"):
        env = env_of(deployment(objects, component), objects)
        plain = {k: v for k, v in env.items() if isinstance(v, str)}
        quotas = Quotas.from_environ(plain)
        assert (quotas.max_sessions, quotas.retained_messages) == (20, 5)
        assert quotas.messages_rate == Quotas().messages_rate  # the rest keep the defaults
    defaults = env_of(deployment(scenario(helm, "defaults"), "manager"), scenario(helm, "defaults"))
    assert not [name for name in defaults if name.startswith("QUOTA_")]


def test_a_quota_that_is_no_setting_is_refused(helm: str) -> None:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    done = subprocess.run(
        [helm, *args, "--set-json", 'quotas={"MAX_SESSIONS": "20"}'],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode != 0
    assert "quotas: MAX_SESSIONS is not a QUOTA_* setting" in done.stderr


def test_generated_api_key_secret_carries_emqx_bootstrap_line(helm: str) -> None:
    objects = scenario(helm, "defaults")
    data = secret_data(one(objects, "Secret", f"{RELEASE}-emqx-api"))
    line = data["api_keys"].rstrip("\n")
    assert "\n" not in line
    match = API_KEY_LINE_RE.match(line)
    assert match, line
    assert match["key"] == data["api-key"] == "zero-exhook"
    assert match["secret"] == data["api-secret"]
    assert len(data["api-secret"]) >= 32


def test_existing_secrets_are_used_not_created(helm: str) -> None:
    objects = scenario(helm, "existing-secrets")
    assert by_kind(objects, "Secret") == []
    manager = env_of(deployment(objects, "manager"), objects)
    assert manager["IP_HASH_KEY"]["secretKeyRef"] == {"name": "my-ip-hash", "key": "key"}
    exhook = env_of(deployment(objects, "exhook"), objects)
    assert exhook["EMQX_API_SECRET"]["secretKeyRef"] == {"name": "my-emqx-api", "key": "api-secret"}


def test_generated_secrets_are_kept(helm: str) -> None:
    for secret in by_kind(scenario(helm, "defaults"), "Secret"):
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    template = (CHART / "templates" / "_helpers.tpl").read_text()
    assert 'lookup "v1" "Secret"' in template


def test_rbac_is_namespaced_and_secrets_only(helm: str) -> None:
    for name in SCENARIOS:
        objects = scenario(helm, name)
        assert not by_kind(objects, "ClusterRole")
        assert not by_kind(objects, "ClusterRoleBinding")
    objects = scenario(helm, "defaults")
    (role,) = by_kind(objects, "Role")
    # the Role and its binding live in the tenant namespace only: nothing lets the
    # processes read the release namespace's Secrets (EMQX's API key, the IP hash key)
    assert role["metadata"]["namespace"] == TENANT_NAMESPACE != NAMESPACE
    (rule,) = role["rules"]
    assert rule["apiGroups"] == [""]
    assert rule["resources"] == ["secrets"]
    assert set(rule["verbs"]) == SECRET_VERBS
    assert "resourceNames" not in rule
    (binding,) = by_kind(objects, "RoleBinding")
    assert binding["metadata"]["namespace"] == TENANT_NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    (account,) = by_kind(objects, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    for component in ("manager", "exhook"):
        pod = deployment(objects, component)["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == account["metadata"]["name"]


@pytest.mark.parametrize("component", ["manager", "exhook"])
def test_pods_are_locked_down(helm: str, component: str) -> None:
    pod = deployment(scenario(helm, "defaults"), component)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    spec = container({"spec": {"template": {"spec": pod}}})
    security = spec["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == UID
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security.get("privileged", False) is False
    mounts = {m["mountPath"]: m["name"] for m in spec["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 - the mount path itself
    assert spec["resources"]["requests"] and spec["resources"]["limits"]["memory"]


@pytest.mark.parametrize("component", ["manager", "exhook"])
def test_probes_use_the_health_endpoints(helm: str, component: str) -> None:
    spec = container(deployment(scenario(helm, "defaults"), component))
    ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
    assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert spec[probe]["httpGet"]["port"] == "http"
    assert ports["http"] == (8080 if component == "manager" else 9001)


def test_network_policy_admits_only_emqx_to_the_exhook_port(helm: str) -> None:
    objects = scenario(helm, "defaults")
    (policy,) = by_kind(objects, "NetworkPolicy")
    exhook = deployment(objects, "exhook")
    grpc = {p["name"]: p["containerPort"] for p in container(exhook)["ports"]}["grpc"]
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == exhook["spec"]["selector"]["matchLabels"]
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "emqx-enterprise"}}}
    ]
    assert [p["port"] for p in rule["ports"]] in (["grpc"], [grpc])


def test_network_policy_options(helm: str) -> None:
    assert not by_kind(scenario(helm, "no-network-policy"), "NetworkPolicy")
    (policy,) = by_kind(scenario(helm, "emqx-elsewhere-ipv6"), "NetworkPolicy")
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [
        {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "emqx-enterprise"}},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "emqx"}},
        }
    ]
    (policy,) = by_kind(scenario(helm, "metrics-from-prometheus"), "NetworkPolicy")
    grpc_rule, metrics_rule = policy["spec"]["ingress"]
    assert grpc_rule["ports"] == [{"protocol": "TCP", "port": "grpc"}]
    assert metrics_rule["ports"] == [{"protocol": "TCP", "port": "http"}]


def test_optional_objects(helm: str) -> None:
    defaults = scenario(helm, "defaults")
    assert not by_kind(defaults, "Ingress")
    assert not by_kind(defaults, "ServiceMonitor")
    assert {p["metadata"]["name"] for p in by_kind(defaults, "PodDisruptionBudget")} == {
        f"{RELEASE}-manager",
        f"{RELEASE}-exhook",
    }
    for pdb in by_kind(defaults, "PodDisruptionBudget"):
        component = pdb["metadata"]["name"].rsplit("-", 1)[1]
        labels = deployment(defaults, component)["spec"]["selector"]["matchLabels"]
        assert pdb["spec"]["selector"]["matchLabels"] == labels
    assert not by_kind(scenario(helm, "emqx-elsewhere-ipv6"), "PodDisruptionBudget")
    (ingress,) = by_kind(scenario(helm, "ingress"), "Ingress")
    (rule,) = ingress["spec"]["rules"]
    for path in rule["http"]["paths"]:
        backend = path["backend"]["service"]
        assert backend == {"name": f"{RELEASE}-manager", "port": {"name": "http"}}
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (monitor,) = by_kind(scenario(helm, "service-monitor"), "ServiceMonitor")
    service = one(scenario(helm, "service-monitor"), "Service", f"{RELEASE}-exhook")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )


def _ingress_paths(objects: Sequence[Manifest]) -> list[tuple[str, str]]:
    (ingress,) = by_kind(objects, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    return [(p["path"], p["pathType"]) for p in rule["http"]["paths"]]


def _routed(paths: Sequence[tuple[str, str]], request_path: str) -> bool:
    """Kubernetes Ingress matching: Exact, or Prefix by whole path elements."""
    for path, kind in paths:
        if kind == "Exact" and request_path == path:
            return True
        if kind == "Prefix" and (request_path == path or request_path.startswith(path + "/")):
            return True
    return False


async def test_ingress_routes_the_public_paths_only(helm: str, tmp_path: Path) -> None:
    from tenants.local_store import LocalStore
    from tests.manager_client import keys_file, manager_for

    store = LocalStore(tmp_path / "data")
    try:
        env = {"MANAGEMENT_API_KEYS_FILE": str(keys_file(tmp_path))}
        async with manager_for(store, env) as m:
            served = {r.resource.canonical for r in m.app.router.routes() if r.resource}
    finally:
        await store.close()
    concrete = {p.replace("{instance_id}", "emqx-0123456789abcdef") for p in served}
    concrete = {p.replace("{name}", "console.js") for p in concrete}
    internal = ("/api/", "/api-docs", "/metrics")  # the management API, Prometheus
    public = {p for p in concrete if not p.startswith(internal)}
    assert {"/", "/SKILL.md", "/static/console.js", "/v1/instances"} <= public

    default = _ingress_paths(scenario(helm, "ingress"))
    assert all(_routed(default, p) for p in public), sorted(
        p for p in public if not _routed(default, p)
    )
    assert not any(_routed(default, p) for p in concrete - public)
    assert not _routed(default, "/api/v1/instances") and not _routed(default, "/anything")
    with_api = _ingress_paths(scenario(helm, "ingress-management-api"))
    assert all(_routed(with_api, p) for p in concrete if p != "/metrics")
    assert not _routed(with_api, "/metrics")


def test_public_base_url_follows_the_ingress(helm: str) -> None:
    def base_url(name: str) -> object:
        objects = scenario(helm, name)
        return env_of(deployment(objects, "manager"), objects).get("PUBLIC_BASE_URL")

    assert base_url("defaults") is None  # the manager's own default
    assert base_url("ingress") == "https://zero-emqx.example.com"
    assert base_url("ingress-management-api") == "https://zero.example.org/z"


def test_exhook_tls_and_ipv6_options(helm: str) -> None:
    objects = scenario(helm, "exhook-tls")
    exhook = deployment(objects, "exhook")
    environment = env_of(exhook, objects)
    assert environment["EXHOOK_TLS_CERT"] == "/etc/zero-emqx/tls/tls.crt"
    assert environment["EXHOOK_TLS_KEY"] == "/etc/zero-emqx/tls/tls.key"
    volumes = {v["name"]: v for v in exhook["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "exhook-tls"
    service = one(objects, "Service", f"{RELEASE}-exhook")
    assert all("appProtocol" not in port for port in service["spec"]["ports"])
    objects = scenario(helm, "emqx-elsewhere-ipv6")
    assert env_of(deployment(objects, "exhook"), objects)["EXHOOK_ADDR"] == "[::]:9000"
    assert env_of(deployment(objects, "manager"), objects)["MANAGER_ADDR"] == "[::]:8080"


def test_api_key_name_with_a_colon_is_refused(helm: str) -> None:
    done = subprocess.run(
        [helm, "template", RELEASE, str(CHART), "--set", "emqxApi.key=a:b"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert "must not contain ':'" in done.stderr


def test_chart_defaults_match_emqx_config() -> None:
    """The ExHook Service the EMQX config points at is this chart's, for a release named
    zero-emqx; the ports and the API key scopes agree."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    expected = VARIANT_61.expected
    exhook_url = f"http://{RELEASE}-exhook:{values['exhook']['grpcPort']}"
    assert exhook_url == expected["exhook.servers.1.url"]
    assert values["emqxApi"]["role"] == API_KEY_ROLE
    assert values["emqxApi"]["scopes"] == API_KEY_SCOPES
    manager = values["manager"]
    assert f"0.0.0.0:{manager['mqttsPort']}" == expected["listeners.ssl.default.bind"]
    assert f"0.0.0.0:{manager['wssPort']}" == expected["listeners.wss.default.bind"]
    assert manager["wssPath"] == expected["listeners.wss.default.websocket.mqtt_path"]
    assert values["emqx"]["apiUrl"].endswith(
        ":" + expected["dashboard.listeners.http.bind"].split(":")[1]
    )


# --- the values for the official EMQX chart -------------------------------------------


def emqx_chart_env(emqx_config: Mapping[str, Any]) -> dict[str, str]:
    """The environment the emqx/emqx-enterprise chart (6.0.3-6.2.2,
    templates/configmap.yaml) makes of `emqxConfig`: falsy values dropped, maps and lists
    JSON-encoded, anything else printed; names upper-cased, "EMQX_"/"EMQX." removed,
    "." turned into "__", "EMQX_" put back."""
    env: dict[str, str] = {}
    for name, value in emqx_config.items():
        assert value, f"{name}: the chart would drop this falsy value; quote it"
        key = "EMQX_" + name.strip().upper().replace("EMQX_", "").replace("EMQX.", "")
        key = key.replace(".", "__")
        assert key == name, f"{name}: write the name as the chart emits it ({key})"
        if isinstance(value, dict | list):
            env[key] = json.dumps(value, separators=(",", ":"), sort_keys=True)
        else:
            assert isinstance(value, str), f"{name}: write scalars as strings"
            assert '"' not in value, f"{name}: the chart does not escape quotes in strings"
            env[key] = value
    return env


EXAMPLE_VALUES = [
    (EXAMPLES / "emqx-values.yaml", VARIANT_61, "6.2.2"),
    (EXAMPLES / "emqx-values-6.0.yaml", VARIANT_60, "6.0.3"),
]


@pytest.mark.parametrize(("path", "variant", "tag"), EXAMPLE_VALUES, ids=["6.1+", "6.0"])
def test_emqx_chart_values_match_emqx_config(path: Path, variant: Variant, tag: str) -> None:
    values = yaml.safe_load(path.read_text())
    assert values["image"]["tag"] == tag
    env = emqx_chart_env(values["emqxConfig"])
    assert env.pop("EMQX_CLUSTER__DISCOVERY_STRATEGY") == "dns"
    for name, value in variant.env_only.items():
        assert env.pop(name) == value
    assert emqx_view(env) == emqx_view(hocon_keys_of(variant))
    expected_names = set(load_env_file(variant.env))
    assert set(env) | set(variant.env_only) == expected_names


@pytest.mark.parametrize(
    ("path", "item"),
    [(EXAMPLE_VALUES[0][0], "acl.conf"), (EXAMPLE_VALUES[1][0], "acl-6.0.conf")],
    ids=["6.1+", "6.0"],
)
def test_emqx_chart_values_mount_the_acl(helm: str, path: Path, item: str) -> None:
    """The EMQX pods get the ACL of their version from this chart's ConfigMap, at the
    path of authorization.sources; the ConfigMap holds emqx-config's files unchanged."""
    values = yaml.safe_load(path.read_text())
    _, volume = values["extraVolumes"]
    _, mount = values["extraVolumeMounts"]
    assert volume["configMap"]["name"] == f"{RELEASE}-emqx-acl"
    (mounted,) = volume["configMap"]["items"]
    assert mounted["key"] == item
    assert mount["name"] == volume["name"] and mount["readOnly"] is True
    assert f"{mount['mountPath']}/{mounted['path']}" == ACL_PATH
    config_map = one(scenario(helm, "defaults"), "ConfigMap", f"{RELEASE}-emqx-acl")
    assert config_map["data"]["acl.conf"] == ACL_FILE_61.read_text()
    assert config_map["data"]["acl-6.0.conf"] == ACL_FILE_60.read_text()
    for name in ("acl.conf", "acl-6.0.conf"):
        assert (CHART / "files" / name).read_text() == (ROOT / "emqx-config" / name).read_text()


@pytest.mark.parametrize(("path", "variant", "tag"), EXAMPLE_VALUES, ids=["6.1+", "6.0"])
def test_emqx_chart_values_mount_the_api_key(path: Path, variant: Variant, tag: str) -> None:
    values = yaml.safe_load(path.read_text())
    assert values["fullnameOverride"] == "emqx"  # Service "emqx": emqx.apiUrl's host
    volume, _ = values["extraVolumes"]
    mount, _ = values["extraVolumeMounts"]
    assert volume["secret"]["secretName"] == f"{RELEASE}-emqx-api"
    (item,) = volume["secret"]["items"]
    assert item["key"] == "api_keys"
    assert mount["name"] == volume["name"]
    assert mount["readOnly"] is True
    assert f"{mount['mountPath']}/{item['path']}" == API_KEYS_FILE
    assert variant.expected["api_key.bootstrap_file"] == API_KEYS_FILE


def test_tenant_records_live_in_a_namespace_of_their_own(helm: str) -> None:
    objects = scenario(helm, "defaults")
    (namespace,) = by_kind(objects, "Namespace")
    assert namespace["metadata"]["name"] == TENANT_NAMESPACE
    assert namespace["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    release_secrets = by_kind(objects, "Secret")
    assert release_secrets and all(o["metadata"]["namespace"] == NAMESPACE for o in release_secrets)

    chosen = render(helm, 'tenants.namespace="records"', "tenants.createNamespace=false")
    assert not by_kind(chosen, "Namespace")
    assert {o["metadata"]["namespace"] for o in by_kind(chosen, "Role")} == {"records"}
    assert {o["metadata"]["namespace"] for o in by_kind(chosen, "RoleBinding")} == {"records"}
    for component in ("manager", "exhook"):
        assert env_of(deployment(chosen, component), chosen)["KUBE_NAMESPACE"] == "records"
