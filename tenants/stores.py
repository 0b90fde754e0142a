"""Open the tenant store the settings name."""

from __future__ import annotations

from tenants.settings import StoreSettings
from tenants.store import TenantStore


def open_store(settings: StoreSettings) -> TenantStore:
    if settings.kind == "kubernetes":
        from tenants.kubernetes_store import KubernetesStore, load_api_client

        return KubernetesStore(
            load_api_client(),
            settings.kube_namespace,
            timeout_seconds=settings.kube_timeout_seconds,
        )
    from tenants.local_store import LocalStore

    return LocalStore(settings.data_dir)
