"""Prometheus metrics on a per-instance registry, and the side HTTP app that serves
them with the liveness and readiness probes (`/healthz`, `/readyz`, `/metrics`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from exhook.decision import Decision
from exhook.verifier import Verifier
from tenants.index import IndexSync, TenantIndex

PREFIX = "zero_emqx_exhook"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5)


class ExhookMetrics:
    """Everything the hook counts. One instance per server, on its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.decisions = Counter(
            f"{PREFIX}_decisions",
            "Answers given to EMQX, by hook, result and reason.",
            ["hook", "result", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_decision_seconds",
            "Time from request to answer inside the hook.",
            ["hook"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe(self, hook: str, decision: Decision, seconds: float) -> None:
        self.decisions.labels(hook, decision.verdict.value, decision.reason.value).inc()
        self.latency.labels(hook).observe(seconds)

    def count(self, hook: str, result: str, reason: str) -> float:
        """The current value of one decisions counter (for tests and tools)."""
        value = self.registry.get_sample_value(
            f"{PREFIX}_decisions_total", {"hook": hook, "result": result, "reason": reason}
        )
        return value or 0.0

    def watch_lifecycle(self, lifecycle: LifecycleCounters) -> None:
        """Export the lifecycle's counters (kicks, reaps, reconciles)."""
        self.registry.register(_LifecycleCollector(lifecycle))

    def watch(self, index: TenantIndex, verifier: Verifier, sync: IndexSync | None) -> None:
        """Export the live state of the index, its sync task and the verifier."""
        self.registry.register(_StateCollector(index, verifier, sync))


class LifecycleCounters(Protocol):
    @property
    def kicks_ok(self) -> int: ...
    @property
    def kick_retries(self) -> int: ...
    @property
    def namespaces_removed(self) -> int: ...
    @property
    def reaped(self) -> int: ...
    @property
    def reconcile_runs(self) -> int: ...
    @property
    def retained_purges(self) -> int: ...
    @property
    def retained_purge_deletes(self) -> int: ...
    @property
    def retained_orphans(self) -> int: ...
    @property
    def retained_over_quota(self) -> int: ...
    @property
    def pending_jobs(self) -> int: ...


class _LifecycleCollector(Collector):
    def __init__(self, lifecycle: LifecycleCounters) -> None:
        self._lifecycle = lifecycle

    def collect(self) -> Iterable[Metric]:
        work = self._lifecycle
        for name, help_text, value in (
            ("kicks", "Kick jobs EMQX confirmed.", work.kicks_ok),
            ("kick_retries", "Kick job attempts that had to be retried.", work.kick_retries),
            ("namespaces_removed", "EMQX namespaces removed.", work.namespaces_removed),
            ("reaped", "Expired records deleted.", work.reaped),
            ("reconcile_runs", "Reconcile passes over EMQX's namespaces.", work.reconcile_runs),
            (
                "retained_purges",
                "Removed instances whose retained messages EMQX confirmed gone.",
                work.retained_purges,
            ),
            (
                "retained_purge_deletes",
                "Purge calls that deleted an instance's retained messages.",
                work.retained_purge_deletes,
            ),
            (
                "retained_orphans",
                "Gone instances found by reconcile only through their retained messages.",
                work.retained_orphans,
            ),
            (
                "retained_over_quota",
                "Retained messages removed for being over an instance's quota (the newest).",
                work.retained_over_quota,
            ),
        ):
            yield CounterMetricFamily(f"{PREFIX}_{name}", help_text, value)
        yield GaugeMetricFamily(
            f"{PREFIX}_kick_jobs_pending", "Kick jobs waiting or retrying.", work.pending_jobs
        )


class _StateCollector(Collector):
    def __init__(self, index: TenantIndex, verifier: Verifier, sync: IndexSync | None) -> None:
        self._index = index
        self._verifier = verifier
        self._sync = sync

    def collect(self) -> Iterable[Metric]:
        stats = self._verifier.stats
        cache = CounterMetricFamily(
            f"{PREFIX}_verify_cache", "Verified-credential cache lookups.", labels=["result"]
        )
        cache.add_metric(["hit"], stats.cache_hits)
        cache.add_metric(["miss"], stats.cache_misses)
        yield cache
        yield CounterMetricFamily(
            f"{PREFIX}_argon2_verifications", "argon2 verifies run.", stats.verifications
        )
        yield CounterMetricFamily(
            f"{PREFIX}_overload_sheds",
            "Calls denied because no verify worker was free in time.",
            stats.overloaded,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_verify_busy_workers", "Verify workers in use.", self._verifier.busy
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_verify_cache_entries",
            "Entries in the verified-credential cache.",
            len(self._verifier.cache),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_index_tenants", "Tenants in the index.", len(self._index)
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_index_synced", "1 once the index has synced.", int(self._index.synced)
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_unreadable_records",
            "Stored tenant records that cannot be read (treated as deleted).",
            len(self._index.unreadable()),
        )
        yield CounterMetricFamily(
            f"{PREFIX}_unreadable_records_found",
            "Times a stored tenant record was found unreadable.",
            self._index.unreadable_found,
        )
        if self._sync is not None:
            yield CounterMetricFamily(
                f"{PREFIX}_watch_restarts",
                "Times the store watch ended and was restarted.",
                self._sync.watch_restarts,
            )
            yield GaugeMetricFamily(
                f"{PREFIX}_store_reachable",
                "1 while the tenant store answers.",
                int(self._sync.store_reachable),
            )


def create_http_app(*, ready: Callable[[], bool], registry: CollectorRegistry) -> web.Application:
    """`/healthz` is 200 while the process runs; `/readyz` is 200 only when `ready()`."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
