"""Retained messages per instance, enforced by Zero EMQX (EMQX cannot: one global retainer).

EMQX's retainer is one table for every tenant, with one global cap
(`retainer.backend.max_retained_messages`) and nothing per namespace. Every
RETAINED_CHECK_INTERVAL_SECONDS this task lists the whole retainer
(`GET /mqtt/retainer/messages`, oldest first as EMQX sorts it), counts each live
instance's messages (the first topic level is the mountpoint `<id>/`), and deletes the
NEWEST ones beyond QUOTA_RETAINED_MESSAGES, one exact topic at a time
(`DELETE /mqtt/retainer/message/{topic}`). Newest, because that undoes the writes that
went over the quota and keeps the state the instance had within it, as a refused write
would. Between two passes an instance can be over its quota by what it retains meanwhile.

Instances without a live record are the reconciler's (it purges all their messages).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from exhook.emqx_api import EmqxApi, EmqxApiError
from exhook.kick_plan import backoff_delay
from tenants.record import Tenant

log = logging.getLogger(__name__)

_WILDCARDS = frozenset("+#")


def over_quota(
    topics: Iterable[str], tenants: Mapping[str, Tenant], now: datetime, quota: int
) -> dict[str, list[str]]:
    """Pure: for each live instance holding more than `quota` retained messages, the
    topics beyond its `quota` oldest (`topics` oldest first, as EMQX lists them)."""
    kept: dict[str, int] = {}
    extra: dict[str, list[str]] = {}
    for topic in topics:
        owner = topic.partition("/")[0]
        tenant = tenants.get(owner)
        if tenant is None or tenant.is_expired(now) or _WILDCARDS & set(topic):
            continue
        if kept.get(owner, 0) < quota:
            kept[owner] = kept.get(owner, 0) + 1
        else:
            extra.setdefault(owner, []).append(topic)
    return extra


class RetainedQuota:
    """The enforcement pass and its loop (one task, owned by exhook.lifecycle)."""

    def __init__(
        self,
        api: EmqxApi,
        tenants: Callable[[], Iterable[Tenant]],
        *,
        quota: int,
        clock: Callable[[], datetime],
        interval: float = 60.0,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        self._api = api
        self._tenants = tenants
        self._quota = quota
        self._clock = clock
        self._interval = interval
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self.passes = 0
        self.removed = 0  # retained messages deleted for being over an instance's quota

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self.enforce_once()
            except EmqxApiError as exc:
                failures += 1
                delay = backoff_delay(failures, self._retry_initial, self._retry_max)
                log.warning("retained quota pass failed, retrying in %.1fs: %s", delay, exc)
            except Exception:
                failures += 1
                delay = backoff_delay(failures, self._retry_initial, self._retry_max)
                log.exception("retained quota pass failed unexpectedly")
            else:
                failures = 0
                delay = self._interval
            await asyncio.sleep(delay)

    async def enforce_once(self) -> dict[str, int]:
        """One pass: how many messages were removed, by instance."""
        messages = await self._api.list_retained()
        tenants = {t.instance_id: t for t in self._tenants()}
        extra = over_quota((m.topic for m in messages), tenants, self._clock(), self._quota)
        removed: dict[str, int] = {}
        for instance_id, topics in sorted(extra.items()):
            for topic in topics:
                await self._api.delete_retained(topic)  # 404: gone meanwhile, as wanted
                removed[instance_id] = removed.get(instance_id, 0) + 1
                self.removed += 1
            log.info(
                "%s: %d retained message(s) over the quota of %d removed (the newest)",
                instance_id,
                len(topics),
                self._quota,
            )
        self.passes += 1
        return removed
