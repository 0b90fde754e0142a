"""The lifecycle's counters reach Prometheus under their documented names."""

from __future__ import annotations

from dataclasses import dataclass

from exhook.observability import PREFIX, ExhookMetrics


@dataclass
class Counters:
    kicks_ok: int = 3
    kick_retries: int = 4
    namespaces_removed: int = 2
    reaped: int = 1
    reconcile_runs: int = 7
    retained_purges: int = 2
    retained_purge_deletes: int = 5
    retained_orphans: int = 1
    retained_over_quota: int = 8
    pending_jobs: int = 6


def test_lifecycle_counters_are_exported() -> None:
    metrics = ExhookMetrics()
    counters = Counters()
    metrics.watch_lifecycle(counters)
    value = metrics.registry.get_sample_value
    assert value(f"{PREFIX}_kicks_total") == 3
    assert value(f"{PREFIX}_namespaces_removed_total") == 2
    assert value(f"{PREFIX}_retained_purges_total") == 2
    assert value(f"{PREFIX}_retained_purge_deletes_total") == 5
    assert value(f"{PREFIX}_retained_orphans_total") == 1
    assert value(f"{PREFIX}_retained_over_quota_total") == 8
    assert value(f"{PREFIX}_kick_jobs_pending") == 6
    counters.retained_purges = 9  # read at each scrape
    assert value(f"{PREFIX}_retained_purges_total") == 9
