"""The pure rules of the hook, without gRPC."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from exhook.decision import (
    Action,
    Decision,
    Reason,
    Verdict,
    VerifyPlan,
    client_id_fits,
    conclude,
    decide_authorize,
    instance_of,
    parse_version,
    plan_authenticate,
    topics_arrive_mounted,
)
from exhook.settings import ExhookSettings, UnknownUserAction
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
    clientid: str = f"{ID}-dev",
    *,
    synced: bool = True,
    tenant: Tenant | None = TENANT,
    now: datetime = NOW,
    ignore_unknown: bool = False,
) -> Decision | VerifyPlan:
    return plan_authenticate(
        username,
        password,
        clientid,
        synced=synced,
        tenant=tenant,
        now=now,
        ignore_unknown=ignore_unknown,
    )


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


def test_client_id_prefix() -> None:
    assert client_id_fits(ID, f"{ID}-x")
    assert client_id_fits(ID, f"{ID}-{ID}-x")
    assert not client_id_fits(ID, f"{ID}-")
    assert not client_id_fits(ID, ID)


@pytest.mark.parametrize(
    ("version", "parsed", "mounted"),
    [
        ("6.0.3", (6, 0), False),
        ("e6.0.1", (6, 0), False),
        ("5.9.0", (5, 9), False),
        ("v5.8.9", (5, 8), False),
        ("6.1.0", (6, 1), True),
        ("6.2.2", (6, 2), True),
        ("6.3.0-beta.2", (6, 3), True),
        ("7.0.0", (7, 0), True),
        ("", None, True),
        ("banana", None, True),
        ("6", None, True),
    ],
)
def test_version_rule(version: str, parsed: tuple[int, int] | None, mounted: bool) -> None:
    assert parse_version(version) == parsed
    assert topics_arrive_mounted(version) is mounted


def authz(
    topic: str,
    version: str = "6.2.2",
    *,
    username: str = ID,
    mountpoint: str = f"{ID}/",
    tenant: Tenant | None = TENANT,
    synced: bool = True,
    now: datetime = NOW,
    ignore_unknown: bool = False,
    action: Action | None = Action.PUBLISH,
) -> Decision:
    return decide_authorize(
        username,
        mountpoint,
        topic,
        version,
        synced=synced,
        tenant=tenant,
        now=now,
        ignore_unknown=ignore_unknown,
        action=action,
    )


def test_authorize_on_61_wants_the_mounted_topic() -> None:
    assert authz(f"{ID}/temperature/sensor1").allowed
    assert authz(f"{ID}/#").allowed
    assert authz(f"{ID}/$SYS/brokers").allowed  # a tenant's own "$SYS" lives in its namespace
    for outside in [
        "temperature/sensor1",
        "#",
        "$SYS/brokers",
        f"{ID}",
        f"{ID}/",
        "",
        "emqx-ffffffffffffffff/t",
        f"x{ID}/t",
    ]:
        assert authz(outside) == Decision(Verdict.DENY, Reason.OUTSIDE_NAMESPACE), outside
    assert not authz("temperature/sensor1", version="").allowed  # unknown version: 6.1+ rule


def test_authorize_on_60_takes_the_client_topic_as_is() -> None:
    for topic in ["temperature/sensor1", "#", f"{ID}/t", "$SYS/brokers"]:
        assert authz(topic, "6.0.3").allowed, topic
    assert authz("", "6.0.3").reason is Reason.OUTSIDE_NAMESPACE


@pytest.mark.parametrize("version", ["6.0.3", "6.2.2"])
@pytest.mark.parametrize(
    "mountpoint", ["", "emqx-ffffffffffffffff/", ID, f"{ID}/x/", "${client_attrs.tns}/"]
)
def test_authorize_needs_the_namespace_mountpoint(version: str, mountpoint: str) -> None:
    assert authz(f"{ID}/t", version, mountpoint=mountpoint) == Decision(
        Verdict.DENY, Reason.BAD_MOUNTPOINT
    )


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"synced": False}, Reason.NOT_SYNCED),
        ({"tenant": None}, Reason.NO_SUCH_TENANT),
        ({"now": TENANT.expires_at}, Reason.EXPIRED),
        ({"tenant": replace(TENANT, paused=True)}, Reason.PAUSED),
        ({"username": "alice", "tenant": None, "mountpoint": "alice/"}, Reason.NOT_OURS),
    ],
)
def test_authorize_denies_tenants_that_may_not_act(
    kwargs: dict[str, object], reason: Reason
) -> None:
    assert authz(f"{ID}/t", **kwargs) == Decision(Verdict.DENY, reason)  # type: ignore[arg-type]


def test_authorize_ignores_other_users_only_when_asked() -> None:
    decision = authz("t", username="alice", mountpoint="", tenant=None, ignore_unknown=True)
    assert decision == Decision(Verdict.IGNORE, Reason.NOT_OURS)


def test_settings_from_environ() -> None:
    settings = ExhookSettings.from_environ({})
    assert settings.addr == ("0.0.0.0", 9000)
    assert settings.http_addr == ("0.0.0.0", 9001)
    assert settings.verify_workers >= 1
    assert settings.verify_cache_size == 100_000
    assert settings.verify_queue_timeout == 2.0
    assert settings.unknown_user_action is UnknownUserAction.DENY
    assert not settings.tls
    custom = ExhookSettings.from_environ(
        {
            "EXHOOK_ADDR": "[::1]:7000",
            "EXHOOK_HTTP_ADDR": "127.0.0.1:7001",
            "UNKNOWN_USER_ACTION": "IGNORE",
            "VERIFY_WORKERS": "3",
            "VERIFY_CACHE_SIZE": "0",
            "VERIFY_QUEUE_TIMEOUT_SECONDS": "0.5",
            "EXHOOK_TLS_CERT": "/c.pem",
            "EXHOOK_TLS_KEY": "/k.pem",
        }
    )
    assert custom.addr == ("::1", 7000)
    assert custom.http_addr == ("127.0.0.1", 7001)
    assert custom.unknown_user_action is UnknownUserAction.IGNORE
    assert (custom.verify_workers, custom.verify_cache_size) == (3, 0)
    assert custom.verify_queue_timeout == 0.5
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
    ],
)
def test_bad_settings_are_config_errors(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ExhookSettings.from_environ(environ)


# -- scoped credentials -------------------------------------------------------------------

READER = ScopedCredential(
    cred_id="0a1b2c3d",
    label="dashboard",
    password_hash="$argon2id$v=19$m=2048,t=1,p=1$c2FsdHNhbHQ$cmVhZGVycmVhZGVy",
    allow_publish=False,
    allow_subscribe=True,
    created_at=NOW - timedelta(hours=1),
)
DEVICE = replace(
    READER,
    cred_id="ffff0000",
    label="device",
    password_hash="$argon2id$v=19$m=2048,t=1,p=1$c2FsdHNhbHQ$ZGV2aWNlZGV2aWNl",
    allow_publish=True,
    allow_subscribe=False,
)
SCOPED = replace(TENANT, credentials=(READER, DEVICE))
READER_NAME, DEVICE_NAME = f"{ID}.0a1b2c3d", f"{ID}.ffff0000"


def test_a_scoped_username_verifies_against_its_credentials_hash() -> None:
    result = plan(READER_NAME, tenant=SCOPED)
    assert result == VerifyPlan(READER.password_hash, None, SCOPED, "0a1b2c3d")
    assert isinstance(result, VerifyPlan) and result.cacheable
    assert conclude(result, True, current=SCOPED, now=NOW).allowed
    owner = plan(ID, tenant=SCOPED)
    assert owner == VerifyPlan(SCOPED.password_hash, None, SCOPED)
    assert instance_of(READER_NAME) == instance_of(ID) == ID
    assert instance_of(f"{ID}zzz") is None


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"username": f"{ID}.00000000"}, Reason.NO_SUCH_CREDENTIAL),
        ({"clientid": f"{READER_NAME}-dev"}, Reason.BAD_CLIENT_ID),  # "<id>.<cred>-", no
        ({"clientid": "dev"}, Reason.BAD_CLIENT_ID),
        ({"tenant": replace(SCOPED, paused=True)}, Reason.PAUSED),
        ({"tenant": None}, Reason.NO_SUCH_TENANT),
        ({"now": SCOPED.expires_at}, Reason.EXPIRED),
    ],
)
def test_scoped_failures_pay_the_decoy(kwargs: dict[str, object], reason: Reason) -> None:
    arguments: dict[str, object] = {"username": READER_NAME, "tenant": SCOPED, **kwargs}
    result = plan(**arguments)  # type: ignore[arg-type]
    assert isinstance(result, VerifyPlan)
    assert (result.password_hash, result.failure, result.cacheable) == (DECOY_HASH, reason, False)


def test_conclude_for_a_credential_removed_or_replaced_during_the_verify() -> None:
    good = plan(READER_NAME, tenant=SCOPED)
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
    [f"{ID}zzz", f"{ID}-x", f"{ID}.", f"{READER_NAME}x", f"{READER_NAME}.0a1b2c3d", f"{ID}\n"],
)
def test_a_username_in_our_namespace_is_never_ignored(username: str, ignore_unknown: bool) -> None:
    """EMQX's namespace is the first 21 characters: `emqx-<id>zzz` would land in the
    instance's namespace, so another authenticator must never be asked about it."""
    denied = Decision(Verdict.DENY, Reason.BAD_USERNAME)
    assert plan(username, tenant=SCOPED, ignore_unknown=ignore_unknown) == denied
    for action in Action:
        decision = authz(
            f"{ID}/t",
            username=username,
            tenant=SCOPED,
            ignore_unknown=ignore_unknown,
            action=action,
        )
        assert decision == denied


@pytest.mark.parametrize("version", ["6.0.3", "6.2.2"])
def test_authorize_enforces_a_credentials_rights(version: str) -> None:
    topic = f"{ID}/sensors/1" if version == "6.2.2" else "sensors/1"

    def check(username: str, action: Action | None) -> Decision:
        return authz(topic, version, username=username, tenant=SCOPED, action=action)

    assert check(READER_NAME, Action.SUBSCRIBE).allowed
    assert check(READER_NAME, Action.PUBLISH) == Decision(Verdict.DENY, Reason.NOT_PERMITTED)
    assert check(DEVICE_NAME, Action.PUBLISH).allowed
    assert check(DEVICE_NAME, Action.SUBSCRIBE) == Decision(Verdict.DENY, Reason.NOT_PERMITTED)
    assert check(ID, Action.PUBLISH).allowed and check(ID, Action.SUBSCRIBE).allowed
    assert check(ID, None).allowed  # the owner may do what we do not know of
    assert check(READER_NAME, None).reason is Reason.NOT_PERMITTED
    unknown = check(f"{ID}.00000000", Action.SUBSCRIBE)
    assert unknown == Decision(Verdict.DENY, Reason.NO_SUCH_CREDENTIAL)
    # The namespace rules hold for scoped usernames too.
    outside = authz(
        "emqx-ffffffffffffffff/t", username=READER_NAME, tenant=SCOPED, action=Action.SUBSCRIBE
    )
    assert outside.reason is Reason.OUTSIDE_NAMESPACE
    wrong_mount = authz(
        f"{ID}/t",
        username=READER_NAME,
        tenant=SCOPED,
        mountpoint=f"{READER_NAME}/",
        action=Action.SUBSCRIBE,
    )
    assert wrong_mount.reason is Reason.BAD_MOUNTPOINT
