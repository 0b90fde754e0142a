"""The manager's Prometheus metrics, on a registry of its own, served at `/metrics`.

`zero_emqx_manager_refusals_total{tier}` counts requests refused by a limit, so an
operator sees an attack: `rate` (creations per group per minute), `group` (live
instances per group), `network` (live instances per network), `global`
(MAX_LIVE_INSTANCES, or its reserve), `auth_failures` (failed authentications per group).
"""

from __future__ import annotations

from enum import StrEnum

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter
from prometheus_client.exposition import generate_latest

PREFIX = "zero_emqx_manager"


class Tier(StrEnum):
    RATE = "rate"
    GROUP = "group"
    NETWORK = "network"
    GLOBAL = "global"
    AUTH_FAILURES = "auth_failures"


class ManagerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._refusals = Counter(
            f"{PREFIX}_refusals",
            "Requests refused by a limit, by tier.",
            ["tier"],
            registry=self.registry,
        )
        for tier in Tier:
            self._refusals.labels(tier.value)

    def refused(self, tier: Tier) -> None:
        self._refusals.labels(tier.value).inc()

    def refusals(self, tier: Tier) -> float:
        value = self.registry.get_sample_value(f"{PREFIX}_refusals_total", {"tier": tier.value})
        return value or 0.0


METRICS: web.AppKey[ManagerMetrics] = web.AppKey("metrics", ManagerMetrics)


async def metrics_route(request: web.Request) -> web.Response:
    registry = request.app[METRICS].registry
    return web.Response(
        body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
