"""The pure core of the hook: what to answer EMQX, given what the index says.

No I/O, no clock, no gRPC: every input is a parameter, every output a frozen value.

Two usernames name an instance: its id (the owner, every right) and
`<instance id>.<cred id>` (a scoped credential: its own password, publish and/or
subscribe). EMQX's namespace is the first 21 characters of the username, so any other
username starting with an instance id would land in that instance's namespace: such a
username is never ignored (whatever UNKNOWN_USER_ACTION says) but denied.

Authentication runs in two steps so that timing says nothing about the user:
`plan_authenticate` either answers at once (decisions that do not depend on which
tenant is named: index not synced, a username that is not one of ours, a password
of the wrong shape) or returns a `VerifyPlan` naming the one argon2 hash to check,
the tenant's, the credential's or the decoy, and the reason to deny whatever the
verify says. `conclude` turns the verify's outcome into the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tenants.credentials import PASSWORD_LENGTH, claims_a_namespace, parse_username
from tenants.hashing import DECOY_HASH
from tenants.record import ScopedCredential, Tenant

AUTHENTICATE = "client.authenticate"
AUTHORIZE = "client.authorize"
HOOKS = (AUTHENTICATE, AUTHORIZE)
"""The only hooks we register: each registered hook is a blocking round trip for EMQX."""


class Verdict(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    IGNORE = "ignore"  # let another authenticator / authorization source decide


class Reason(StrEnum):
    OK = "ok"
    CACHED = "cached"  # allowed from the verified-credential cache
    NOT_SYNCED = "not_synced"
    NOT_OURS = "not_ours"  # username is neither an instance id nor a scoped username
    BAD_USERNAME = "bad_username"  # starts with an instance id, but in neither exact form
    NO_SUCH_TENANT = "no_such_tenant"
    NO_SUCH_CREDENTIAL = "no_such_credential"  # the instance has no such scoped credential
    EXPIRED = "expired"
    PAUSED = "paused"
    BAD_CLIENT_ID = "bad_client_id"
    BAD_PASSWORD_FORMAT = "bad_password_format"  # noqa: S105 - a reason, not a secret
    WRONG_PASSWORD = "wrong_password"  # noqa: S105
    OVERLOADED = "overloaded"
    BAD_MOUNTPOINT = "bad_mountpoint"
    OUTSIDE_NAMESPACE = "outside_namespace"
    NOT_PERMITTED = "not_permitted"  # a scoped credential without that right
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: Reason

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW


def allow(reason: Reason = Reason.OK) -> Decision:
    return Decision(Verdict.ALLOW, reason)


def deny(reason: Reason) -> Decision:
    return Decision(Verdict.DENY, reason)


class Action(StrEnum):
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"


@dataclass(frozen=True, slots=True)
class VerifyPlan:
    """Verify the password against `password_hash`; deny with `failure` if it is set.
    `cred_id` names the scoped credential verified (None: the instance's own password)."""

    password_hash: str
    failure: Reason | None
    tenant: Tenant | None
    cred_id: str | None = None

    @property
    def cacheable(self) -> bool:
        """Only a plan that can end in allow may consult or fill the cache."""
        return self.failure is None and self.tenant is not None


def is_ours(username: str) -> bool:
    """One of the two exact forms: an instance id, or `<instance id>.<cred id>`."""
    return parse_username(username) is not None


def instance_of(username: str) -> str | None:
    """The instance id a username of ours names (the index's key), else None."""
    parsed = parse_username(username)
    return None if parsed is None else parsed[0]


def not_ours(username: str, ignore_unknown: bool) -> Decision:
    """The answer for a username in neither form: a username in one of our namespaces is
    always denied; anything else is ignored when the operator asked for it."""
    if claims_a_namespace(username):
        return deny(Reason.BAD_USERNAME)
    return Decision(Verdict.IGNORE if ignore_unknown else Verdict.DENY, Reason.NOT_OURS)


def credential_of(tenant: Tenant, cred_id: str | None) -> ScopedCredential | None:
    return None if cred_id is None else tenant.credential(cred_id)


def client_id_fits(instance_id: str, clientid: str) -> bool:
    """EMQX's `clientid_override = concat([tns, '-', clientid])` makes `<id>-<own id>`."""
    prefix = instance_id + "-"
    return len(clientid) > len(prefix) and clientid.startswith(prefix)


def tenant_problem(tenant: Tenant | None, now: datetime) -> Reason | None:
    """Why this tenant may not connect or act right now, or None if it may."""
    if tenant is None:
        return Reason.NO_SUCH_TENANT
    if tenant.is_expired(now):
        return Reason.EXPIRED
    if tenant.paused:
        return Reason.PAUSED
    return None


def plan_authenticate(
    username: str,
    password: str,
    clientid: str,
    *,
    synced: bool,
    tenant: Tenant | None,
    now: datetime,
    ignore_unknown: bool,
) -> Decision | VerifyPlan:
    """The first step of `client.authenticate`; `tenant` is the index's entry for the
    instance the username names (`instance_of(username)`)."""
    if not synced:
        return deny(Reason.NOT_SYNCED)
    parsed = parse_username(username)
    if parsed is None:
        return not_ours(username, ignore_unknown)
    if len(password) != PASSWORD_LENGTH:  # empty, truncated or huge: says nothing of the user
        return deny(Reason.BAD_PASSWORD_FORMAT)
    instance_id, cred_id = parsed
    problem = tenant_problem(tenant, now)
    if problem is not None or tenant is None or tenant.instance_id != instance_id:
        return VerifyPlan(DECOY_HASH, problem or Reason.NO_SUCH_TENANT, None)
    credential = credential_of(tenant, cred_id)
    if cred_id is not None and credential is None:
        return VerifyPlan(DECOY_HASH, Reason.NO_SUCH_CREDENTIAL, None, cred_id)
    if not client_id_fits(instance_id, clientid):
        return VerifyPlan(DECOY_HASH, Reason.BAD_CLIENT_ID, None)
    password_hash = tenant.password_hash if credential is None else credential.password_hash
    return VerifyPlan(password_hash, None, tenant, cred_id)


def conclude(plan: VerifyPlan, matched: bool, *, current: Tenant | None, now: datetime) -> Decision:
    """The second step: the plan's own failure wins, then the password's, then the record
    as the index has it now (`current`): it may have gone, expired, been paused, lost the
    credential or had the password replaced while the verify ran."""
    if plan.failure is not None:
        return deny(plan.failure)
    if not matched:
        return deny(Reason.WRONG_PASSWORD)
    problem = tenant_problem(current, now)
    if problem is not None or current is None:
        return deny(problem or Reason.NO_SUCH_TENANT)
    if plan.cred_id is None:
        stored = current.password_hash
    else:
        credential = current.credential(plan.cred_id)
        if credential is None:
            return deny(Reason.NO_SUCH_CREDENTIAL)
        stored = credential.password_hash
    if stored != plan.password_hash:
        return deny(Reason.WRONG_PASSWORD)
    return allow()


_VERSION_RE = re.compile(r"^[ve]?(\d+)\.(\d+)")


def parse_version(version: str) -> tuple[int, int] | None:
    """(major, minor) of `RequestMeta.version` such as "6.1.0", "e6.0.1", "v5.8.9"."""
    match = _VERSION_RE.match(version.strip())
    return None if match is None else (int(match[1]), int(match[2]))


def topics_arrive_mounted(version: str) -> bool:
    """EMQX 6.1+ with `authorization.include_mountpoint = true` (our emqx-config) shows the
    hook `<mountpoint><topic>`; earlier versions show the client's topic, mounted afterwards.
    An unknown version gets the stricter 6.1+ rule."""
    parsed = parse_version(version)
    return parsed is None or parsed >= (6, 1)


def decide_authorize(
    username: str,
    mountpoint: str,
    topic: str,
    version: str,
    *,
    synced: bool,
    tenant: Tenant | None,
    now: datetime,
    ignore_unknown: bool,
    action: Action | None,
) -> Decision:
    """`client.authorize`: a live tenant, its namespace mountpoint, a topic inside it, and
    for a scoped credential the right to `action` (None: an action we do not know, which
    only the instance's own username may take)."""
    if not synced:
        return deny(Reason.NOT_SYNCED)
    parsed = parse_username(username)
    if parsed is None:
        return not_ours(username, ignore_unknown)
    instance_id, cred_id = parsed
    problem = tenant_problem(tenant, now)
    if problem is not None or tenant is None or tenant.instance_id != instance_id:
        return deny(problem or Reason.NO_SUCH_TENANT)
    credential = credential_of(tenant, cred_id)
    if cred_id is not None and credential is None:
        return deny(Reason.NO_SUCH_CREDENTIAL)
    namespace = instance_id + "/"
    if mountpoint != namespace:
        return deny(Reason.BAD_MOUNTPOINT)
    if not topic:
        return deny(Reason.OUTSIDE_NAMESPACE)
    if topics_arrive_mounted(version) and not (
        topic.startswith(namespace) and len(topic) > len(namespace)
    ):
        return deny(Reason.OUTSIDE_NAMESPACE)
    if credential is not None and not may(credential, action):
        return deny(Reason.NOT_PERMITTED)
    return allow()


def may(credential: ScopedCredential, action: Action | None) -> bool:
    if action is Action.PUBLISH:
        return credential.allow_publish
    if action is Action.SUBSCRIBE:
        return credential.allow_subscribe
    return False
