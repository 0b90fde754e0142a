"""What operators and tenants may do to an instance, as changes of its record.

Every action is a write to the tenant store, so the ExHook reacts to an API call or a
CLI command exactly as to an operator editing the Secret by hand: pause is
`paused=True`, resume `paused=False`, rotate a new password hash, an expiry change a
new `expires_at`, adding or removing a scoped credential a new `credentials` tuple, and
revoke is `store.delete`. Updates carry the revision they read; on Conflict the record
is read again and the change applied again.

The changes are pure functions of the record (`Change`); `modify` is the one loop that
reads, applies and writes. An expired instance can only be deleted (the reaper is about
to): pausing, resuming, rotating, moving its expiry or adding a credential raises
InstanceExpired (removing a credential is allowed: it only takes access away).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta

from tenants.credential_format import is_valid_label
from tenants.credentials import Rights, new_credential_id, new_password
from tenants.errors import Conflict, NotFound, ZeroEmqxError
from tenants.hashing import hash_password
from tenants.record import ScopedCredential, Tenant, format_time, in_order
from tenants.store import TenantStore

UPDATE_ATTEMPTS = 5
CREDENTIAL_ID_ATTEMPTS = 3

Change = Callable[[Tenant], Tenant]
"""The record as it should be, given the record as it is (raise to refuse)."""


class OperationRefused(ZeroEmqxError):
    """The change does not apply to this record (a client error, not a store failure)."""


class InstanceExpired(OperationRefused):
    """The instance has expired: it can only be deleted."""


class ExpiryRefused(OperationRefused):
    """The requested expires_at is in the past or beyond the longest lifetime."""


class CredentialRefused(OperationRefused):
    """An invalid label or rights, or the instance has as many credentials as allowed."""


class CredentialNotFound(ZeroEmqxError):
    """The instance has no scoped credential with that id."""


class CredentialIdTaken(ZeroEmqxError):
    """A freshly minted credential id is in use already (mint another)."""


class CredentialsChanged(ZeroEmqxError):
    """The password hash changed since the caller was authenticated against it."""


def _live(tenant: Tenant, now: datetime) -> Tenant:
    if tenant.is_expired(now):
        raise InstanceExpired(f"instance {tenant.instance_id} has expired")
    return tenant


def set_paused(paused: bool, now: datetime) -> Change:
    def change(tenant: Tenant) -> Tenant:
        return dataclasses.replace(_live(tenant, now), paused=paused)

    return change


def set_password_hash(password_hash: str, now: datetime, *, expected: str | None = None) -> Change:
    """Replace the hash; with `expected`, only while the record still holds that hash."""

    def change(tenant: Tenant) -> Tenant:
        if expected is not None and tenant.password_hash != expected:
            raise CredentialsChanged(f"instance {tenant.instance_id}: credentials changed")
        return dataclasses.replace(_live(tenant, now), password_hash=password_hash)

    return change


def checked_expiry(tenant: Tenant, expires_at: datetime, now: datetime, max_ttl: int) -> datetime:
    """`expires_at` (whole seconds) when it is after now and within max_ttl of creation."""
    wanted = expires_at.replace(microsecond=0)
    try:
        latest = tenant.created_at + timedelta(seconds=max_ttl)
    except OverflowError:  # a hand-edited created_at near the end of time
        latest = datetime.max.replace(tzinfo=UTC)
    if wanted <= now:
        raise ExpiryRefused("expires_at must be in the future (DELETE revokes an instance now)")
    if wanted > latest:
        raise ExpiryRefused(
            f"expires_at must not be later than {format_time(latest)}"
            f" (created_at + MAX_TTL_SECONDS = {max_ttl} s)"
        )
    return wanted


def set_expiry(expires_at: datetime, now: datetime, max_ttl: int) -> Change:
    def change(tenant: Tenant) -> Tenant:
        wanted = checked_expiry(_live(tenant, now), expires_at, now, max_ttl)
        return dataclasses.replace(tenant, expires_at=wanted)

    return change


def check_credential_request(label: str, allow_publish: bool, allow_subscribe: bool) -> None:
    """A scoped credential needs a label (the tag rules, not empty) and at least one right."""
    if not is_valid_label(label):
        raise CredentialRefused(
            "label must be 1 to 63 characters: alphanumerics, with '-', '_' or '.' inside,"
            " starting and ending alphanumeric"
        )
    if not (allow_publish or allow_subscribe):
        raise CredentialRefused("at least one of allow_publish and allow_subscribe must be true")


def add_credential(credential: ScopedCredential, now: datetime, max_credentials: int) -> Change:
    """Add `credential` unless the instance has expired or holds `max_credentials`."""

    def change(tenant: Tenant) -> Tenant:
        _live(tenant, now)
        if tenant.credential(credential.cred_id) is not None:
            raise CredentialIdTaken(f"instance {tenant.instance_id}: credential id in use")
        if len(tenant.credentials) >= max_credentials:
            raise CredentialRefused(
                f"the instance has {len(tenant.credentials)} credentials, the most allowed"
                f" (MAX_CREDENTIALS_PER_INSTANCE = {max_credentials})"
            )
        return dataclasses.replace(tenant, credentials=in_order((*tenant.credentials, credential)))

    return change


def remove_credential(cred_id: str) -> Change:
    """Remove a scoped credential (also from an expired or paused instance)."""

    def change(tenant: Tenant) -> Tenant:
        if tenant.credential(cred_id) is None:
            raise CredentialNotFound(f"instance {tenant.instance_id}: no credential {cred_id}")
        kept = tuple(c for c in tenant.credentials if c.cred_id != cred_id)
        return dataclasses.replace(tenant, credentials=kept)

    return change


async def modify(store: TenantStore, instance_id: str, change: Change) -> Tenant:
    """Read, change, write with the revision read; again on Conflict. An unchanged record
    is not written. NotFound when there is no such instance; Conflict when it kept
    changing for UPDATE_ATTEMPTS rounds."""
    for _ in range(UPDATE_ATTEMPTS):
        current = await store.get(instance_id)
        if current is None:
            raise NotFound(f"instance {instance_id} not found")
        wanted = change(current)
        if wanted == current:
            return current
        try:
            return await store.update(wanted)
        except Conflict:
            continue
    raise Conflict(f"instance {instance_id} kept changing; gave up after {UPDATE_ATTEMPTS} tries")


async def rotate(
    store: TenantStore,
    instance_id: str,
    now: datetime,
    *,
    hasher: Executor | None = None,
    expected: str | None = None,
) -> tuple[Tenant, str]:
    """A new password for the instance: (the stored record, the password, shown once).
    Hashing runs on `hasher` (the default pool when None), never on the event loop."""
    password = new_password()
    loop = asyncio.get_running_loop()
    password_hash = await loop.run_in_executor(hasher, hash_password, password)
    tenant = await modify(
        store, instance_id, set_password_hash(password_hash, now, expected=expected)
    )
    return tenant, password


async def create_credential(
    store: TenantStore,
    instance_id: str,
    *,
    label: str,
    allow_publish: bool,
    allow_subscribe: bool,
    now: datetime,
    max_credentials: int,
    hasher: Executor | None = None,
) -> tuple[Tenant, ScopedCredential, str]:
    """A new scoped credential: (the stored record, the credential, its password, shown
    once). The request is checked first (CredentialRefused); hashing runs on `hasher`."""
    check_credential_request(label, allow_publish, allow_subscribe)
    rights = Rights.of(allow_publish, allow_subscribe)
    if rights is None:  # check_credential_request refused it already
        raise CredentialRefused("at least one of allow_publish and allow_subscribe must be true")
    password = new_password()
    loop = asyncio.get_running_loop()
    password_hash = await loop.run_in_executor(hasher, hash_password, password)
    for _ in range(CREDENTIAL_ID_ATTEMPTS):
        credential = ScopedCredential(
            cred_id=new_credential_id(rights),
            label=label,
            password_hash=password_hash,
            allow_publish=allow_publish,
            allow_subscribe=allow_subscribe,
            created_at=now,
        )
        try:
            tenant = await modify(
                store, instance_id, add_credential(credential, now, max_credentials)
            )
        except CredentialIdTaken:
            continue
        return tenant, credential, password
    raise Conflict(
        f"instance {instance_id}: no free credential id in {CREDENTIAL_ID_ATTEMPTS} tries"
    )
