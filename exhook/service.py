"""The `emqx.exhook.v3.HookProvider` servicer: wire <-> domain, nothing else.

It registers `client.authenticate` only (topics are EMQX's file ACL's to decide, in
process). Every authenticate answer is explicit: `STOP_AND_RETURN` with `bool_result`
set, or `IGNORE` only for usernames that are not ours when the operator asked for it.
The proto3 default `ValuedResponse()` would be read by EMQX as "ignore", which admits
everyone when the authn chain is empty. A request protobuf cannot decode (a string
field that is not UTF-8) is denied explicitly too, not answered with an RPC error.
The username is parsed once here, into a `Username`, and that value is passed on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from exhook.decision import (
    AUTHENTICATE,
    HOOKS,
    Decision,
    Reason,
    Verdict,
    VerifyPlan,
    conclude,
    deny,
    plan_authenticate,
)
from exhook.lookup import StoreLookup
from exhook.observability import ExhookMetrics
from exhook.rpc import IGNORE_ANSWER, Context, Undecodable, UnregisteredHooks
from exhook.settings import ExhookSettings, UnknownUserAction
from exhook.verifier import Overloaded, Verifier
from exhook.wire import exhook_pb2 as pb
from tenants.credentials import Username
from tenants.index import TenantIndex
from tenants.record import Tenant

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Gate = Callable[[], bool]
"""Whether EMQX's effective settings are right (exhook.emqx_settings): while not, every
CONNECT is refused."""


def always_open() -> bool:
    return True


# Answers are immutable once built: one shared message per verdict, not one per call.
_ALLOW = pb.ValuedResponse(type=pb.ValuedResponse.STOP_AND_RETURN, bool_result=True)
_DENY = pb.ValuedResponse(type=pb.ValuedResponse.STOP_AND_RETURN, bool_result=False)
_CACHED = Decision(Verdict.ALLOW, Reason.CACHED)
_UNSEEN = frozenset({Reason.NO_SUCH_TENANT, Reason.NO_SUCH_CREDENTIAL})
OVERLOAD_LOG_INTERVAL = 10.0  # seconds


def utc_clock() -> datetime:
    return datetime.now(UTC)


def valued(decision: Decision) -> pb.ValuedResponse:
    """The wire answer (a shared message: grpc only serializes it, nobody mutates it)."""
    if decision.verdict is Verdict.IGNORE:
        return IGNORE_ANSWER
    return _ALLOW if decision.verdict is Verdict.ALLOW else _DENY


def loggable_user(user: Username | None, username: str) -> str:
    """Our usernames are not secret; anything else might be a mistyped password."""
    return user.text if user is not None else f"<not an instance id, {len(username)} chars>"


class HookProvider(UnregisteredHooks):
    """The hooks Zero EMQX registers (client.authenticate), over the index."""

    def __init__(
        self,
        *,
        settings: ExhookSettings,
        index: TenantIndex,
        verifier: Verifier,
        metrics: ExhookMetrics,
        clock: Clock = utc_clock,
        lookup: StoreLookup | None = None,
        settings_ok: Gate = always_open,
    ) -> None:
        self._index = index
        self._settings_ok = settings_ok
        self._lookup = lookup
        self._verifier = verifier
        self._metrics = metrics
        self._clock = clock
        self._ignore_unknown = settings.unknown_user_action is UnknownUserAction.IGNORE
        self._queue_timeout = settings.verify_queue_timeout
        self._margin = settings.deadline_margin
        self._sheds = 0
        self._last_overload_log = -OVERLOAD_LOG_INTERVAL
        # The labelled metric children of each (hook, decision): `labels()` takes a lock
        # and hashes its arguments, which cost as much as the rest of a cached answer.
        self._observers: dict[tuple[str, Decision], tuple[Any, Any]] = {}

    # -- the two hooks we register ------------------------------------------------

    async def OnProviderLoaded(
        self, request: pb.ProviderLoadedRequest, context: Context
    ) -> pb.LoadedResponse:
        log.info(
            "provider loaded by EMQX %s on %s; registering %s",
            request.broker.version,
            request.meta.node,
            ", ".join(HOOKS),
        )
        return pb.LoadedResponse(hooks=[pb.HookSpec(name=name) for name in HOOKS])

    async def OnClientAuthenticate(
        self, request: pb.ClientAuthenticateRequest | Undecodable, context: Context
    ) -> pb.ValuedResponse:
        started = time.perf_counter()
        if isinstance(request, Undecodable):
            log.warning("authenticate request with a field that is not valid UTF-8: denied")
            self._done(AUTHENTICATE, deny(Reason.BAD_REQUEST), started, None, "")
            return _DENY
        info = request.clientinfo
        user = Username.parse(info.username)
        try:
            if not self._settings_ok():  # EMQX would not isolate this client: nobody
                decision = deny(Reason.BAD_SETTINGS)
            else:
                decision = await self._authenticate(
                    user, info.username, info.password, info.clientid, context
                )
        except Exception:
            log.exception("authenticate failed for %s", loggable_user(user, info.username))
            decision = deny(Reason.INTERNAL_ERROR)
        self._done(AUTHENTICATE, decision, started, user, info.username)
        return valued(decision)

    def _unseen(self, tenant: Tenant | None, user: Username) -> bool:
        """Whether the synced index lacks the record of `user` (`tenant` is its entry) or,
        for a scoped username, the credential."""
        if self._lookup is None or not self._index.synced:
            return False
        if tenant is None:
            return True
        return user.cred_id is not None and tenant.credential(user.cred_id) is None

    async def _authenticate(
        self, user: Username | None, username: str, password: str, clientid: str, context: Context
    ) -> Decision:
        plan = plan_authenticate(
            user,
            username,
            password,
            clientid,
            synced=self._index.synced,
            tenant=self._index.get(user.instance_id) if user is not None else None,
            now=self._clock(),
            ignore_unknown=self._ignore_unknown,
        )
        if isinstance(plan, Decision):
            return plan
        assert user is not None  # only our usernames get a plan
        if plan.failure in _UNSEEN and self._lookup is not None:
            return await self._authenticate_unseen(user, password, clientid, plan, context)
        if (
            plan.tenant is not None
            and plan.cacheable
            and self._verifier.cached(
                plan.tenant, password, username=user.text, password_hash=plan.password_hash
            )
        ):
            return _CACHED
        try:
            matched = await self._verifier.verify(
                plan.password_hash, password, budget=self._budget(context)
            )
        except Overloaded:
            return deny(Reason.OVERLOADED)
        return self._settle(plan, matched, user, password)

    async def _authenticate_unseen(
        self,
        user: Username,
        password: str,
        clientid: str,
        plan: VerifyPlan,
        context: Context,
    ) -> Decision:
        """A username of ours whose record (or scoped credential) the index lacks: read
        the store while the decoy verify runs (so this takes as long as a known tenant),
        and if the record is there after all (created a moment ago), verify against it."""
        assert self._lookup is not None
        instance_id = user.instance_id
        try:
            decoy, found = await asyncio.gather(
                self._verifier.verify(plan.password_hash, password, budget=self._budget(context)),
                self._lookup.get(instance_id),
            )
        except Overloaded:
            return deny(Reason.OVERLOADED)
        # The index may have caught up while the store was read: then it is the truth.
        indexed = self._index.get(instance_id)
        known = indexed if indexed is not None and not self._unseen(indexed, user) else found
        if known is None:
            return self._settle(plan, decoy, user, password)
        fresh = plan_authenticate(
            user,
            user.text,
            password,
            clientid,
            synced=True,
            tenant=known,
            now=self._clock(),
            ignore_unknown=self._ignore_unknown,
        )
        if isinstance(fresh, Decision):
            return fresh
        if fresh.failure is not None:  # refused there too: one verify (the decoy) is enough
            return self._settle(fresh, decoy, user, password)
        try:
            matched = await self._verifier.verify(
                fresh.password_hash, password, budget=self._budget(context)
            )
        except Overloaded:
            return deny(Reason.OVERLOADED)
        # Judge by the index if the watch has caught up meanwhile, else by what was read.
        indexed = self._index.get(instance_id)
        current = found if indexed is None or self._unseen(indexed, user) else indexed
        return self._settle(fresh, matched, user, password, current=current)

    def _settle(
        self,
        plan: VerifyPlan,
        matched: bool,
        user: Username,
        password: str,
        current: Tenant | None = None,
    ) -> Decision:
        # The record may have changed during the verify: judge by the index as it is now.
        if current is None and plan.tenant is not None:
            current = self._index.get(plan.tenant.instance_id)
        decision = conclude(plan, matched, current=current, now=self._clock())
        if decision.allowed and current is not None:
            self._verifier.remember(
                current, password, username=user.text, password_hash=plan.password_hash
            )
        return decision

    def _budget(self, context: Context) -> float:
        """How long a call may wait for a verify worker: the configured bound, and never
        past EMQX's deadline (minus a margin to get the answer back)."""
        remaining: float | None = context.time_remaining()
        if remaining is None:
            return self._queue_timeout
        return min(self._queue_timeout, remaining - self._margin)

    def _done(
        self,
        hook: str,
        decision: Decision,
        started: float,
        user: Username | None,
        username: str,
    ) -> None:
        elapsed = time.perf_counter() - started
        observers = self._observers.get((hook, decision))
        if observers is None:  # what ExhookMetrics.observe records, its children kept
            observers = (
                self._metrics.decisions.labels(hook, decision.verdict.value, decision.reason.value),
                self._metrics.latency.labels(hook),
            )
            self._observers[(hook, decision)] = observers
        observers[0].inc()
        observers[1].observe(elapsed)
        if decision.reason is Reason.OVERLOADED:
            self._note_overload()
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s %s: %s for %s (%.1f ms)",
                hook,
                decision.verdict.value,
                decision.reason.value,
                loggable_user(user, username),
                elapsed * 1000,
            )

    def _note_overload(self) -> None:
        """One warning per OVERLOAD_LOG_INTERVAL, not one per shed call."""
        self._sheds += 1
        now = time.monotonic()
        if now - self._last_overload_log >= OVERLOAD_LOG_INTERVAL:
            log.warning(
                "overloaded: %d authenticate calls denied since the last report (%d workers)",
                self._sheds,
                self._verifier.workers,
            )
            self._sheds = 0
            self._last_overload_log = now
