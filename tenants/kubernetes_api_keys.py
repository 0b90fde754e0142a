"""API keys on Kubernetes: one Secret per key, beside the tenant Secrets.

    metadata.name         zero-emqx-api-key-<name>
    metadata.labels       app.kubernetes.io/managed-by: zero-emqx
                          zero-emqx.io/api-key: "true"
                          zero-emqx.io/role: administrator | viewer
    metadata.annotations  zero-emqx.io/created-at: 2025-01-01T00:00:00Z
    data                  secret-hash: base64 of the argon2 PHC string of the secret

The tenant selector (`zero-emqx.io/tenant=true`) never matches these Secrets, so the
tenant index and the ExHook never see them. Calls go through the tenant store's client,
pool and deadline (`KubernetesStore.call_api`).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from typing import Any

from tenants.api_keys import ApiKey, Role, is_api_key_name
from tenants.errors import InvalidRecord, NotFound
from tenants.hashing import is_phc_argon2
from tenants.kubernetes_store import KubernetesStore
from tenants.record import format_time, parse_time
from tenants.secret_format import (
    CREATED_AT_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SECRET_TYPE,
)

log = logging.getLogger(__name__)

SECRET_PREFIX = "zero-emqx-api-key-"  # noqa: S105 - a name prefix, not a secret
API_KEY_LABEL = "zero-emqx.io/api-key"
ROLE_LABEL = "zero-emqx.io/role"
SECRET_HASH_KEY = "secret-hash"  # noqa: S105 - a data key, not a secret
API_KEY_SELECTOR = f"{API_KEY_LABEL}=true"
_PAGE_SIZE = 500


def secret_name_for(name: str) -> str:
    return SECRET_PREFIX + name


def api_key_to_secret(key: ApiKey, namespace: str) -> dict[str, Any]:
    encoded = base64.b64encode(key.secret_hash.encode()).decode("ascii")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name_for(key.name),
            "namespace": namespace,
            "labels": {
                MANAGED_BY_LABEL: MANAGED_BY,
                API_KEY_LABEL: "true",
                ROLE_LABEL: key.role.value,
            },
            "annotations": {CREATED_AT_ANNOTATION: format_time(key.created_at)},
        },
        "type": SECRET_TYPE,
        "data": {SECRET_HASH_KEY: encoded},
    }


def secret_to_api_key(secret: Mapping[str, Any]) -> ApiKey:
    """The key a Secret describes; InvalidRecord names what is wrong, never the hash."""
    metadata = secret.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    secret_name = str(metadata.get("name") or "?")[:100]

    def invalid(what: str) -> InvalidRecord:
        return InvalidRecord(f"Secret {secret_name!r}: {what}")

    name = secret_name.removeprefix(SECRET_PREFIX)
    if not secret_name.startswith(SECRET_PREFIX) or not is_api_key_name(name):
        raise invalid(f"metadata.name is not {SECRET_PREFIX}<key name>")
    labels = metadata.get("labels")
    annotations = metadata.get("annotations")
    labels = labels if isinstance(labels, Mapping) else {}
    annotations = annotations if isinstance(annotations, Mapping) else {}
    if labels.get(API_KEY_LABEL) != "true":
        raise invalid(f"label {API_KEY_LABEL} is not 'true'")
    try:
        role = Role(str(labels.get(ROLE_LABEL)))
    except ValueError:
        raise invalid(f"label {ROLE_LABEL} is not administrator or viewer") from None
    try:
        created_at = parse_time(str(annotations[CREATED_AT_ANNOTATION]))
    except (KeyError, ValueError):
        raise invalid(f"annotation {CREATED_AT_ANNOTATION} is missing or not RFC 3339") from None
    data = secret.get("data")
    encoded = data.get(SECRET_HASH_KEY) if isinstance(data, Mapping) else None
    try:
        secret_hash = base64.b64decode(str(encoded), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise invalid(f"data.{SECRET_HASH_KEY} is not base64 of UTF-8 text") from None
    if encoded is None or not is_phc_argon2(secret_hash):
        raise invalid(f"data.{SECRET_HASH_KEY} is not an argon2 PHC string")
    revision = str(metadata.get("resourceVersion") or "")
    return ApiKey(name, role, secret_hash, created_at, revision)


class KubernetesApiKeyStore:
    """ApiKeyStore on Secrets in the tenant store's namespace; borrows its client."""

    def __init__(self, store: KubernetesStore) -> None:
        self._store = store
        self.namespace = store.namespace

    def __repr__(self) -> str:
        return f"KubernetesApiKeyStore(namespace={self.namespace!r})"

    async def create(self, key: ApiKey) -> ApiKey:
        body = api_key_to_secret(key, self.namespace)
        name = secret_name_for(key.name)
        created = await self._store.call_api(
            "create", "create_namespaced_secret", self.namespace, body, name=name
        )
        return secret_to_api_key(created)

    async def get(self, name: str) -> ApiKey | None:
        secret = await self._read(name)
        if secret is None:
            return None
        try:
            return secret_to_api_key(secret)
        except InvalidRecord as exc:
            log.warning("api key Secret unreadable, treating it as absent: %s", exc)
            return None

    async def list(self) -> tuple[ApiKey, ...]:
        keys: list[ApiKey] = []
        token: str | None = None
        while True:
            page = await self._store.call_api(
                "list",
                "list_namespaced_secret",
                self.namespace,
                label_selector=API_KEY_SELECTOR,
                limit=_PAGE_SIZE,
                _continue=token,
            )
            for secret in page.get("items") or ():
                try:
                    keys.append(secret_to_api_key(secret))
                except InvalidRecord as exc:
                    log.warning("skipping unreadable api key Secret: %s", exc)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return tuple(keys)

    async def delete(self, name: str) -> bool:
        secret = await self._read(name)
        labels = (secret or {}).get("metadata", {}).get("labels") or {}
        if secret is None or labels.get(API_KEY_LABEL) != "true":
            return False  # never delete a Secret that is not one of our keys
        try:
            await self._store.call_api(
                "delete",
                "delete_namespaced_secret",
                secret_name_for(name),
                self.namespace,
                name=secret_name_for(name),
            )
        except NotFound:
            return False
        return True

    async def close(self) -> None:
        """Nothing to release: the tenant store owns the client."""

    async def _read(self, name: str) -> dict[str, Any] | None:
        if not is_api_key_name(name):
            return None
        try:
            return await self._store.call_api(
                "get",
                "read_namespaced_secret",
                secret_name_for(name),
                self.namespace,
                name=secret_name_for(name),
            )
        except NotFound:
            return None
