"""The pure core of the hook: what to answer EMQX, given what the index says.

No I/O, no clock, no gRPC: every input is a parameter, every output a frozen value.

The hook registers `client.authenticate` only: which topics a client may use is decided
inside EMQX by its file authorization source (emqx-config/acl.conf), from the username,
so no PUBLISH or SUBSCRIBE waits for us. Two usernames name an instance: its id (the
owner, every right) and `<instance id>.<r><7 hex>` (a scoped credential: its own
password, and the rights its letter `r` names, which must be exactly the record's).
EMQX's namespace is the first 21 characters of the username, so any other username
starting with an instance id would land in that instance's namespace: such a username
is never ignored (whatever UNKNOWN_USER_ACTION says) but denied.

The username is parsed once, at the edge, into a `Username` (None: not one of ours).

Authentication runs in two steps so that timing says nothing about the user:
`plan_authenticate` either answers at once (decisions that do not depend on which
tenant is named: index not synced, a username that is not one of ours, a password
of the wrong shape) or returns a `VerifyPlan` naming the one argon2 hash to check,
the tenant's, the credential's or the decoy, and the reason to deny whatever the
verify says. `conclude` turns the verify's outcome into the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tenants.credentials import (
    PASSWORD_LENGTH,
    Rights,
    Username,
    claims_a_namespace,
    rights_of,
)
from tenants.hashing import DECOY_HASH
from tenants.record import ScopedCredential, Tenant

AUTHENTICATE = "client.authenticate"
HOOKS = (AUTHENTICATE,)
"""The only hook we register: a registered hook is a blocking round trip for EMQX, and
this one is paid once per CONNECT, never per message."""


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
    RIGHTS_MISMATCH = "rights_mismatch"  # the username's rights letter is not the record's
    LEGACY_CREDENTIAL = "legacy_credential"  # an 8-hex id from before rights letters
    BAD_SETTINGS = "bad_settings"  # EMQX's effective settings would not isolate the tenant
    BAD_REQUEST = "bad_request"  # a request protobuf could not decode (invalid UTF-8)
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


def not_ours(username: str, ignore_unknown: bool) -> Decision:
    """The answer for a username in neither form: a username in one of our namespaces is
    always denied; anything else is ignored when the operator asked for it."""
    if claims_a_namespace(username):
        return deny(Reason.BAD_USERNAME)
    return Decision(Verdict.IGNORE if ignore_unknown else Verdict.DENY, Reason.NOT_OURS)


def client_id_fits(username: str, clientid: str) -> bool:
    """EMQX's `clientid_override = concat([username, '-', clientid])` makes
    `<username>-<own id>`: each username has a client-id space of its own, so no
    credential can take over or resume another username's session."""
    prefix = username + "-"
    return len(clientid) > len(prefix) and clientid.startswith(prefix)


def credential_problem(cred_id: str, credential: ScopedCredential | None) -> Reason | None:
    """Why the scoped username with `cred_id` may not use this record entry (None: it
    may). The rights letter in the username is what EMQX's ACL enforces, so it must name
    exactly the record's rights; a legacy id names none."""
    if credential is None:
        return Reason.NO_SUCH_CREDENTIAL
    rights = rights_of(cred_id)
    if rights is None:
        return Reason.LEGACY_CREDENTIAL
    if rights is not Rights.of(credential.allow_publish, credential.allow_subscribe):
        return Reason.RIGHTS_MISMATCH
    return None


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
    user: Username | None,
    username: str,
    password: str,
    clientid: str,
    *,
    synced: bool,
    tenant: Tenant | None,
    now: datetime,
    ignore_unknown: bool,
) -> Decision | VerifyPlan:
    """The first step of `client.authenticate`: `user` is `username` parsed (None: not
    one of ours), `tenant` the index's entry for `user.instance_id`."""
    if not synced:
        return deny(Reason.NOT_SYNCED)
    if user is None:
        return not_ours(username, ignore_unknown)
    if len(password) != PASSWORD_LENGTH:  # empty, truncated or huge: says nothing of the user
        return deny(Reason.BAD_PASSWORD_FORMAT)
    problem = tenant_problem(tenant, now)
    if problem is not None or tenant is None or tenant.instance_id != user.instance_id:
        return VerifyPlan(DECOY_HASH, problem or Reason.NO_SUCH_TENANT, None)
    password_hash = tenant.password_hash
    if user.cred_id is not None:
        credential = tenant.credential(user.cred_id)
        wrong = credential_problem(user.cred_id, credential)
        if wrong is not None or credential is None:
            return VerifyPlan(DECOY_HASH, wrong or Reason.NO_SUCH_CREDENTIAL, None)
        password_hash = credential.password_hash
    if not client_id_fits(user.text, clientid):
        return VerifyPlan(DECOY_HASH, Reason.BAD_CLIENT_ID, None)
    return VerifyPlan(password_hash, None, tenant, user.cred_id)


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
        wrong = credential_problem(plan.cred_id, credential)
        if wrong is not None or credential is None:
            return deny(wrong or Reason.NO_SUCH_CREDENTIAL)
        stored = credential.password_hash
    if stored != plan.password_hash:
        return deny(Reason.WRONG_PASSWORD)
    return allow()
