"""The pure rules of the hook, without gRPC."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from exhook.decision import (
    HOOKS,
    Decision,
    Reason,
    Verdict,
    VerifyPlan,
    client_id_fits,
    conclude,
    plan_authenticate,
)
from exhook.settings import ExhookSettings, UnknownUserAction
from tenants.credentials import Username
from tenants.errors import ConfigError
from tenants.hashing import DECOY_HASH
from tenants.record import ScopedCredential, Tenant

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
ID = "emqx-0123456789abcdef"
PASSWORD = "p" * 43
TENANT = Tenant(
    instance_id=ID,
    password_hash="$argon2id$v=19$m=2048,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
    created_at=NOW - timedelta(days=1),
    expires_at=NOW + timedelta(days=6),
    revision="7",
)


def plan(
    username: str = ID,
    password: str = PASSWORD,
    clientid: str | None = None,
    *,
    synced: bool = True,
    tenant: Tenant | None = TENANT,
    now: datetime = NOW,
    ignore_unknown: bool = False,
) -> Decision | VerifyPlan:
    return plan_authenticate(
        Username.parse(username),
        username,
        password,
        f"{username}-dev" if clientid is None else clientid,
        synced=synced,
        tenant=tenant,
        now=now,
        ignore_unknown=ignore_unknown,
    )


def test_only_authenticate_is_registered() -> None:
    """Topics are decided by EMQX's file ACL in process: no PUBLISH waits for the hook."""
    assert HOOKS == ("client.authenticate",)


def test_a_good_request_verifies_against_the_tenants_hash() -> None:
    result = plan()
    assert result == VerifyPlan(TENANT.password_hash, None, TENANT)
    assert isinstance(result, VerifyPlan) and result.cacheable
    assert conclude(result, True, current=TENANT, now=NOW) == Decision(Verdict.ALLOW, Reason.OK)
    assert conclude(result, False, current=TENANT, now=NOW).reason is Reason.WRONG_PASSWORD


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"tenant": None}, Reason.NO_SUCH_TENANT),
        ({"now": TENANT.expires_at}, Reason.EXPIRED),  # now >= expires_at
        ({"tenant": replace(TENANT, paused=True)}, Reason.PAUSED),
        ({"clientid": "dev"}, Reason.BAD_CLIENT_ID),
        ({"clientid": f"{ID}-"}, Reason.BAD_CLIENT_ID),  # nothing after the dash
        ({"clientid": f"{ID}dev"}, Reason.BAD_CLIENT_ID),
        ({"clientid": "emqx-ffffffffffffffff-dev"}, Reason.BAD_CLIENT_ID),
        ({"clientid": ""}, Reason.BAD_CLIENT_ID),
    ],
)
def test_failures_still_pay_one_verify_against_the_decoy(
    kwargs: dict[str, object], reason: Reason
) -> None:
    result = plan(**kwargs)  # type: ignore[arg-type]
    assert isinstance(result, VerifyPlan)
    assert result.password_hash == DECOY_HASH
    assert result.failure is reason
    assert not result.cacheable
    # Even a "match" (impossible with the decoy) cannot turn it into an allow.
    assert conclude(result, True, current=TENANT, now=NOW) == Decision(Verdict.DENY, reason)


@pytest.mark.parametrize(
    ("kwargs", "decision"),
    [
        ({"synced": False}, Decision(Verdict.DENY, Reason.NOT_SYNCED)),
        ({"password": ""}, Decision(Verdict.DENY, Reason.BAD_PASSWORD_FORMAT)),
        ({"password": "x" * 42}, Decision(Verdict.DENY, Reason.BAD_PASSWORD_FORMAT)),
        ({"password": "x" * 65536}, Decision(Verdict.DENY, Reason.BAD_PASSWORD_FORMAT)),
        ({"tenant": None, "password": ""}, Decision(Verdict.DENY, Reason.BAD_PASSWORD_FORMAT)),
        ({"username": "alice", "tenant": None}, Decision(Verdict.DENY, Reason.NOT_OURS)),
        ({"username": "", "tenant": None}, Decision(Verdict.DENY, Reason.NOT_OURS)),
        ({"username": ID.upper(), "tenant": None}, Decision(Verdict.DENY, Reason.NOT_OURS)),
        (
            {"username": "alice", "tenant": None, "ignore_unknown": True},
            Decision(Verdict.IGNORE, Reason.NOT_OURS),
        ),
        (
            {"username": "alice", "password": "", "ignore_unknown": True},
            Decision(Verdict.IGNORE, Reason.NOT_OURS),
        ),
        # A username shaped like ours but absent is denied even in ignore mode.
        (
            {"tenant": None, "password": "", "ignore_unknown": True},
            Decision(Verdict.DENY, Reason.BAD_PASSWORD_FORMAT),
        ),
    ],
)
def test_answers_that_need_no_verify(kwargs: dict[str, object], decision: Decision) -> None:
    assert plan(**kwargs) == decision  # type: ignore[arg-type]


def test_an_index_entry_of_another_instance_is_no_tenant() -> None:
    """The plan checks the entry it was given is the username's own instance."""
    other = replace(TENANT, instance_id="emqx-fedcba9876543210")
    result = plan(ID, tenant=other)
    assert isinstance(result, VerifyPlan)
    assert (result.password_hash, result.failure) == (DECOY_HASH, Reason.NO_SUCH_TENANT)
    assert result.tenant is None


def test_ignore_mode_never_ignores_a_username_shaped_like_ours() -> None:
    result = plan(tenant=None, ignore_unknown=True)
    assert isinstance(result, VerifyPlan) and result.failure is Reason.NO_SUCH_TENANT


def test_conclude_judges_the_record_as_it_is_after_the_verify() -> None:
    good = plan()
    assert isinstance(good, VerifyPlan)
    rotated = replace(TENANT, password_hash="$argon2id$other", revision="8")
    assert conclude(good, True, current=None, now=NOW).reason is Reason.NO_SUCH_TENANT
    assert conclude(good, True, current=rotated, now=NOW).reason is Reason.WRONG_PASSWORD
    paused = replace(TENANT, paused=True, revision="9")
    assert conclude(good, True, current=paused, now=NOW).reason is Reason.PAUSED
    assert conclude(good, True, current=TENANT, now=TENANT.expires_at).reason is Reason.EXPIRED


def test_client_id_prefix_is_the_whole_username() -> None:
    """`clientid_override = concat([username, '-', clientid])`: one id space per username."""
    assert client_id_fits(ID, f"{ID}-x")
    assert client_id_fits(ID, f"{ID}-{ID}-x")
    assert not client_id_fits(ID, f"{ID}-")
    assert not client_id_fits(ID, ID)
    assert client_id_fits(READER_NAME, f"{READER_NAME}-x")
    assert not client_id_fits(READER_NAME, f"{ID}-x")  # the owner's space is not its own
    assert not client_id_fits(ID, f"{READER_NAME}-x")  # nor the other way round


def test_settings_from_environ() -> None:
    settings = ExhookSettings.from_environ({})
    assert settings.addr == ("0.0.0.0", 9000)
    assert settings.http_addr == ("0.0.0.0", 9001)
    assert settings.verify_workers >= 1
    assert settings.verify_cache_size == 100_000
    assert settings.verify_queue_timeout == 2.0
    assert settings.unknown_user_action is UnknownUserAction.DENY
    assert settings.settings_check_interval == 30.0
    assert not settings.tls
    custom = ExhookSettings.from_environ(
        {
            "EXHOOK_ADDR": "[::1]:7000",
            "EXHOOK_HTTP_ADDR": "127.0.0.1:7001",
            "UNKNOWN_USER_ACTION": "IGNORE",
            "VERIFY_WORKERS": "3",
            "VERIFY_CACHE_SIZE": "0",
            "VERIFY_QUEUE_TIMEOUT_SECONDS": "0.5",
            "EMQX_SETTINGS_CHECK_SECONDS": "5",
            "EXHOOK_TLS_CERT": "/c.pem",
            "EXHOOK_TLS_KEY": "/k.pem",
        }
    )
    assert custom.addr == ("::1", 7000)
    assert custom.http_addr == ("127.0.0.1", 7001)
    assert custom.unknown_user_action is UnknownUserAction.IGNORE
    assert (custom.verify_workers, custom.verify_cache_size) == (3, 0)
    assert custom.verify_queue_timeout == 0.5
    assert custom.settings_check_interval == 5.0
    assert custom.tls


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"EXHOOK_TLS_CERT": "/c.pem"}, "EXHOOK_TLS_KEY"),
        ({"EXHOOK_TLS_KEY": "/k.pem"}, "EXHOOK_TLS_CERT"),
        ({"EXHOOK_ADDR": "9000"}, "EXHOOK_ADDR"),
        ({"EXHOOK_HTTP_ADDR": "host:http"}, "EXHOOK_HTTP_ADDR"),
        ({"UNKNOWN_USER_ACTION": "allow"}, "UNKNOWN_USER_ACTION"),
        ({"VERIFY_WORKERS": "0"}, "VERIFY_WORKERS"),
        ({"VERIFY_WORKERS": "many"}, "VERIFY_WORKERS"),
        ({"VERIFY_CACHE_SIZE": "-1"}, "VERIFY_CACHE_SIZE"),
        ({"VERIFY_QUEUE_TIMEOUT_SECONDS": "0"}, "VERIFY_QUEUE_TIMEOUT_SECONDS"),
        ({"EXHOOK_SHUTDOWN_GRACE_SECONDS": "soon"}, "EXHOOK_SHUTDOWN_GRACE_SECONDS"),
        ({"EMQX_SETTINGS_CHECK_SECONDS": "0"}, "EMQX_SETTINGS_CHECK_SECONDS"),
    ],
)
def test_bad_settings_are_config_errors(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ExhookSettings.from_environ(environ)


# -- scoped credentials -------------------------------------------------------------------

READER = ScopedCredential(
    cred_id="s0a1b2c3",
    label="dashboard",
    password_hash="$argon2id$v=19$m=2048,t=1,p=1$c2FsdHNhbHQ$cmVhZGVycmVhZGVy",
    allow_publish=False,
    allow_subscribe=True,
    created_at=NOW - timedelta(hours=1),
)
DEVICE = replace(
    READER,
    cred_id="pfff0000",
    label="device",
    password_hash="$argon2id$v=19$m=2048,t=1,p=1$c2FsdHNhbHQ$ZGV2aWNlZGV2aWNl",
    allow_publish=True,
    allow_subscribe=False,
)
SCOPED = replace(TENANT, credentials=(READER, DEVICE))
READER_NAME, DEVICE_NAME = f"{ID}.s0a1b2c3", f"{ID}.pfff0000"


def test_a_scoped_username_verifies_against_its_credentials_hash() -> None:
    result = plan(READER_NAME, tenant=SCOPED)
    assert result == VerifyPlan(READER.password_hash, None, SCOPED, "s0a1b2c3")
    assert isinstance(result, VerifyPlan) and result.cacheable
    assert conclude(result, True, current=SCOPED, now=NOW).allowed
    owner = plan(ID, tenant=SCOPED)
    assert owner == VerifyPlan(SCOPED.password_hash, None, SCOPED)
    device = plan(DEVICE_NAME, tenant=SCOPED, clientid=f"{DEVICE_NAME}-dev")
    assert device == VerifyPlan(DEVICE.password_hash, None, SCOPED, "pfff0000")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"username": f"{ID}.s0000000"}, Reason.NO_SUCH_CREDENTIAL),
        ({"clientid": f"{ID}-dev"}, Reason.BAD_CLIENT_ID),  # the owner's id space, no
        ({"clientid": f"{DEVICE_NAME}-dev"}, Reason.BAD_CLIENT_ID),  # another credential's
        ({"clientid": "dev"}, Reason.BAD_CLIENT_ID),
        ({"tenant": replace(SCOPED, paused=True)}, Reason.PAUSED),
        ({"tenant": None}, Reason.NO_SUCH_TENANT),
        ({"now": SCOPED.expires_at}, Reason.EXPIRED),
    ],
)
def test_scoped_failures_pay_the_decoy(kwargs: dict[str, object], reason: Reason) -> None:
    arguments: dict[str, object] = {
        "username": READER_NAME,
        "clientid": f"{READER_NAME}-dev",
        "tenant": SCOPED,
        **kwargs,
    }
    result = plan(**arguments)  # type: ignore[arg-type]
    assert isinstance(result, VerifyPlan)
    assert (result.password_hash, result.failure, result.cacheable) == (DECOY_HASH, reason, False)


@pytest.mark.parametrize(
    ("cred_id", "publish", "subscribe", "reason"),
    [
        ("s0a1b2c3", True, False, Reason.RIGHTS_MISMATCH),  # the username says subscribe
        ("s0a1b2c3", True, True, Reason.RIGHTS_MISMATCH),
        ("p0a1b2c3", False, True, Reason.RIGHTS_MISMATCH),
        ("x0a1b2c3", False, True, Reason.RIGHTS_MISMATCH),
        ("x0a1b2c3", True, False, Reason.RIGHTS_MISMATCH),
        ("0a1b2c3d", False, True, Reason.LEGACY_CREDENTIAL),  # 8 hex: before rights letters
        ("0a1b2c3d", True, True, Reason.LEGACY_CREDENTIAL),
    ],
)
def test_the_usernames_rights_must_be_exactly_the_records(
    cred_id: str, publish: bool, subscribe: bool, reason: Reason
) -> None:
    """EMQX's ACL enforces the letter in the username; the record must say the same."""
    credential = replace(READER, cred_id=cred_id, allow_publish=publish, allow_subscribe=subscribe)
    tenant = replace(TENANT, credentials=(credential,))
    name = f"{ID}.{cred_id}"
    result = plan(name, clientid=f"{name}-dev", tenant=tenant)
    assert isinstance(result, VerifyPlan)
    assert (result.password_hash, result.failure) == (DECOY_HASH, reason)


@pytest.mark.parametrize(
    ("cred_id", "publish", "subscribe"),
    [("p1234567", True, False), ("s1234567", False, True), ("x1234567", True, True)],
)
def test_each_rights_letter_admits_its_own_rights(
    cred_id: str, publish: bool, subscribe: bool
) -> None:
    credential = replace(READER, cred_id=cred_id, allow_publish=publish, allow_subscribe=subscribe)
    tenant = replace(TENANT, credentials=(credential,))
    name = f"{ID}.{cred_id}"
    result = plan(name, clientid=f"{name}-dev", tenant=tenant)
    assert result == VerifyPlan(credential.password_hash, None, tenant, cred_id)
    assert conclude(result, True, current=tenant, now=NOW).allowed
    # An operator who edits the rights in the record during the verify: refused.
    edited = replace(credential, allow_publish=not publish or not subscribe, allow_subscribe=True)
    if edited != credential:
        changed = replace(tenant, credentials=(edited,), revision="8")
        decision = conclude(result, True, current=changed, now=NOW)
        assert decision == Decision(Verdict.DENY, Reason.RIGHTS_MISMATCH)


def test_conclude_for_a_credential_removed_or_replaced_during_the_verify() -> None:
    good = plan(READER_NAME, clientid=f"{READER_NAME}-dev", tenant=SCOPED)
    assert isinstance(good, VerifyPlan)
    removed = replace(SCOPED, credentials=(DEVICE,), revision="8")
    assert conclude(good, True, current=removed, now=NOW).reason is Reason.NO_SUCH_CREDENTIAL
    rehashed = replace(READER, password_hash="$argon2id$other")
    changed = replace(SCOPED, credentials=(rehashed, DEVICE), revision="9")
    assert conclude(good, True, current=changed, now=NOW).reason is Reason.WRONG_PASSWORD
    rotated = replace(SCOPED, password_hash="$argon2id$owner-rotated", revision="10")
    assert conclude(good, True, current=rotated, now=NOW).allowed  # the owner's rotation
    assert conclude(good, False, current=SCOPED, now=NOW).reason is Reason.WRONG_PASSWORD


@pytest.mark.parametrize("ignore_unknown", [False, True])
@pytest.mark.parametrize(
    "username",
    [
        f"{ID}zzz",
        f"{ID}-x",
        f"{ID}.",
        f"{READER_NAME}x",
        f"{READER_NAME}.s0a1b2c3",
        f"{ID}\n",
        f"{ID}.g0a1b2c3",  # not a rights letter
        f"{ID}.P0a1b2c3",
        f"{ID}.s0a1b2c",
    ],
)
def test_a_username_in_our_namespace_is_never_ignored(username: str, ignore_unknown: bool) -> None:
    """EMQX's namespace is the first 21 characters: `emqx-<id>zzz` would land in the
    instance's namespace, so another authenticator must never be asked about it."""
    denied = Decision(Verdict.DENY, Reason.BAD_USERNAME)
    assert plan(username, tenant=SCOPED, ignore_unknown=ignore_unknown) == denied
