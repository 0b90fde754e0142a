"""Open the tenant store the settings name, and the API key store beside it."""

from __future__ import annotations

from tenants.api_keys import ApiKeyStore
from tenants.errors import ConfigError
from tenants.settings import StoreSettings
from tenants.store import TenantStore


def open_store(settings: StoreSettings) -> TenantStore:
    if settings.kind == "kubernetes":
        from tenants.kubernetes_api import load_api_client
        from tenants.kubernetes_store import KubernetesStore

        return KubernetesStore(
            load_api_client(),
            settings.kube_namespace,
            timeout_seconds=settings.kube_timeout_seconds,
        )
    from tenants.local_store import LocalStore

    return LocalStore(settings.data_dir)


def api_key_store_for(store: TenantStore) -> ApiKeyStore:
    """The API keys kept beside `store`: the same sqlite file, or Secrets in the same
    namespace through the same client. Close it before the tenant store."""
    from tenants.kubernetes_store import KubernetesStore
    from tenants.local_store import LocalStore

    if isinstance(store, LocalStore):
        from tenants.local_api_keys import LocalApiKeyStore

        return LocalApiKeyStore(store.path)
    if isinstance(store, KubernetesStore):
        from tenants.kubernetes_api_keys import KubernetesApiKeyStore

        return KubernetesApiKeyStore(store)
    raise ConfigError(f"{store!r} cannot keep management API keys")
