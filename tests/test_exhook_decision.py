"""The pure rules of the hook, without gRPC."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from exhook.decision import (
    Decision,
    Reason,
    Verdict,
    VerifyPlan,
    client_id_fits,
    conclude,
    decide_authorize,
    parse_version,
    plan_authenticate,
    topics_arrive_mounted,
)
from exhook.settings import ExhookSettings, UnknownUserAction
from tenants.errors import ConfigError
from tenants.hashing import DECOY_HASH
from tenants.record import Tenant

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
