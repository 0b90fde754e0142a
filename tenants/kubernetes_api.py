"""Talking to the Kubernetes API: building the client, and mapping its failures to the
store's errors (Status objects, urllib3 errors) in one place."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import urllib3.exceptions as u3
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tenants.errors import (
    AlreadyExists,
    Conflict,
    NotFound,
    StoreError,
    StoreForbidden,
    StoreTimeout,
    StoreUnavailable,
    WatchExpired,
)

log = logging.getLogger(__name__)

Json = dict[str, Any]


def load_api_client(kubeconfig: str | None = None, *, context: str | None = None) -> k8s.ApiClient:
    """An ApiClient from the pod's service account, or else from KUBECONFIG / ~/.kube/config."""
    configuration = k8s.Configuration()
    # kubernetes.config is untyped: the two loaders are the only calls into it.
    load_incluster: Any = k8s_config.load_incluster_config
    load_kubeconfig: Any = k8s_config.load_kube_config
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        load_incluster(client_configuration=configuration)
    else:
        load_kubeconfig(
            config_file=kubeconfig,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    return _api_client(configuration)


def kubernetes_api_client(
    host: str, *, token: str | None = None, ca_cert_file: str | None = None
) -> k8s.ApiClient:
    """An ApiClient for the API server at `host` (a URL): optional bearer token and CA."""
    configuration = k8s.Configuration(host=host, ssl_ca_cert=ca_cert_file)
    if token is not None:
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
    return _api_client(configuration)


def _api_client(configuration: k8s.Configuration) -> k8s.ApiClient:
    # No urllib3 retries: each would restart the deadline, and callers retry anyway.
    configuration.retries = False
    # TCP keepalive as client-go does, so a silently dropped watch is noticed.
    configuration.keep_alive = True
    return k8s.ApiClient(configuration)


def map_error(
    exc: BaseException, verb: str, namespace: str, name: str | None = None
) -> BaseException:
    """The StoreError for a client failure; `exc` itself when it is not one we know."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, k8s.ApiException):
        try:
            body = json.loads(exc.body or "")
        except (TypeError, ValueError):
            body = None
        if not isinstance(body, dict) or body.get("kind") != "Status":
            body = {"code": exc.status, "reason": exc.reason}
        body["code"] = exc.status
        return status_error(body, verb, namespace, name)
    where = f"'{verb}' on secrets in namespace {namespace}"
    if isinstance(exc, u3.MaxRetryError) and exc.reason is not None:
        return map_error(exc.reason, verb, namespace, name)
    if isinstance(exc, u3.NewConnectionError):
        return StoreUnavailable(f"Kubernetes API unreachable for {where}: connection failed")
    if isinstance(exc, (u3.TimeoutError, TimeoutError)):
        return StoreTimeout(f"Kubernetes API did not answer {where} in time")
    if isinstance(exc, (u3.HTTPError, OSError, json.JSONDecodeError)):
        return StoreUnavailable(f"Kubernetes API failed {where}: {type(exc).__name__}")
    if isinstance(exc, (ValueError, TypeError)):
        # The client's own argument checks (pydantic): their text can quote the Secret.
        return StoreError(f"the kubernetes client refused {where}: {type(exc).__name__}")
    return exc


def status_error(status: Json, verb: str, namespace: str, name: str | None = None) -> StoreError:
    """The StoreError for a Kubernetes Status (an HTTP error or a watch ERROR event)."""
    code = status.get("code")
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or "")[:300]
    target = f"secret {name!r}" if name else "secrets"
    where = f"'{verb}' on {target} in namespace {namespace}"
    if not code:  # the client's own failure before any answer (TLS, for one)
        return StoreUnavailable(f"Kubernetes API failed {where}: {reason[:200]}")
    if code in (401, 403):
        hint = "grant the verb in the Role" if code == 403 else "check the credentials"
        error = StoreForbidden(f"Kubernetes API refused {where} ({code}): {hint}. {message}")
        log.error("%s", error)
        return error
    if code == 404:
        return NotFound(f"Kubernetes API found no {target} for {where}")
    if code == 409:
        if reason == "AlreadyExists":
            return AlreadyExists(f"{target} already exists in namespace {namespace}")
        return Conflict(f"{target} changed since it was read ({where})")
    if code == 410:
        return WatchExpired(f"{where}: resource version expired ({reason or 'Gone'})")
    if isinstance(code, int) and (code >= 500 or code == 429):
        return StoreUnavailable(f"Kubernetes API failed {where} ({code} {reason})")
    return StoreError(f"Kubernetes API rejected {where} ({code} {reason}): {message}")
