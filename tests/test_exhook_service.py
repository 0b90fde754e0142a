"""End to end through a real gRPC port: a fake EMQX asks, the real runtime answers from
an index kept by list + watch of a real store (each store kind)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from exhook.decision import AUTHENTICATE
from exhook.rpc import rpc_types
from exhook.wire import exhook_pb2 as pb
from tenants.credentials import new_instance_id, new_password
from tenants.hashing import hash_password, verify_password
from tenants.store import TenantStore
from tests.conftest import Minted, make_credential, make_tenant
from tests.emqx_harness import ALLOW, DENY, IGNORE, Answer, FakeEmqx, eventually, running_exhook


class CountingVerify:
    """The real argon2 verify, counted (and optionally slowed down)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self, password_hash: str, password: str) -> bool:
        with self._lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        return verify_password(password_hash, password)


async def stored(store: TenantStore, **kwargs: object) -> Minted:
    minted = make_tenant(**kwargs)  # type: ignore[arg-type]
    return Minted(await store.create(minted.tenant), minted.password)


def assert_explicit(answer: Answer, verdict: str) -> None:
    assert answer.verdict == verdict
    assert answer.explicit, f"{answer} is not STOP_AND_RETURN with bool_result"


async def test_provider_registers_only_authenticate(store: TenantStore) -> None:
    async with running_exhook(store) as (_, emqx):
        assert await emqx.load() == ["client.authenticate"]


@pytest.mark.parametrize("version", ["6.0.3", "6.2.2"])
async def test_a_publish_costs_no_hook_call(store: TenantStore, version: str) -> None:
    """EMQX follows the hooks the server registered: after CONNECT, a client on 200
    topics publishes without one call to the hook (EMQX's file ACL decides)."""
    good = await stored(store)
    gid = good.tenant.instance_id
    async with running_exhook(store, version=version) as (_, emqx):
        await emqx.load()
        assert_explicit(await emqx.connect(gid, good.password), ALLOW)
        before = sum(emqx.calls.values())
        verdicts = {await emqx.publish(gid, f"sensors/{n}") for n in range(200)}
        assert verdicts == {ALLOW}
        assert sum(emqx.calls.values()) == before
        assert emqx.calls["OnClientAuthorize"] == emqx.calls["OnMessagePublish"] == 0


async def test_every_other_rpc_answers_cheaply(store: TenantStore) -> None:
    async with running_exhook(store) as (_, emqx):
        for name, (request_type, response_type) in rpc_types().items():
            if name in {"OnProviderLoaded", "OnClientAuthenticate"}:
                continue
            response = await emqx.call(name, request_type(), response_type)
            if name in {"OnMessagePublish", "OnClientAuthorize"}:  # EMQX's ACL decides
                assert Answer.of(response).type == pb.ValuedResponse.IGNORE  # type: ignore[arg-type]
            else:
                assert response == pb.EmptySuccess()
        assert len(rpc_types()) == 21


async def test_authenticate(store: TenantStore) -> None:
    good = await stored(store)
    other = await stored(store)
    paused = await stored(store, paused=True)
    expired = await stored(store, ttl=timedelta(seconds=-1))
    verify = CountingVerify()
    async with running_exhook(store, verify_fn=verify) as (runtime, emqx):
        gid = good.tenant.instance_id
        assert_explicit(await emqx.connect(gid, good.password), ALLOW)
        calls = verify.calls
        denied = {
            "wrong password": await emqx.connect(gid, new_password()),
            "unknown": await emqx.connect(new_instance_id(), good.password),
            "expired": await emqx.connect(expired.tenant.instance_id, expired.password),
            "paused": await emqx.connect(paused.tenant.instance_id, paused.password),
            "no prefix": await emqx.connect(gid, good.password, override=False),
            "other prefix": await emqx.connect(
                gid, good.password, f"{other.tenant.instance_id}-x", override=False
            ),
            "nothing after the dash": await emqx.connect(
                gid, good.password, f"{gid}-", override=False
            ),
        }
        for case, answer in denied.items():
            assert answer.verdict == DENY, case
            assert answer.explicit, case
        # Each of those paid exactly one argon2 verify: no answer is faster for a bad user.
        assert verify.calls - calls == len(denied)
        calls = verify.calls
        fast = {
            "empty password": await emqx.connect(gid, ""),
            "short password": await emqx.connect(gid, good.password[:-1]),
            "empty request": await emqx.authenticate_info(pb.ClientInfo()),
            "no username": await emqx.connect("", good.password),
            "not ours": await emqx.connect("alice", "secret"),
        }
        for case, answer in fast.items():
            assert answer.verdict == DENY, case
            assert answer.explicit, case
        assert verify.calls == calls
        metrics = runtime.metrics
        for reason in ["wrong_password", "no_such_tenant", "expired", "paused", "bad_client_id"]:
            assert metrics.count(AUTHENTICATE, "deny", reason) >= 1, reason
        assert metrics.count(AUTHENTICATE, "deny", "bad_password_format") == 2
        assert metrics.count(AUTHENTICATE, "deny", "not_ours") == 3


async def test_a_64_kib_password_is_denied_quickly(store: TenantStore) -> None:
    good = await stored(store)
    async with running_exhook(store) as (_, emqx):
        started = time.monotonic()
        answer = await emqx.connect(good.tenant.instance_id, "x" * 65536)
        assert_explicit(answer, DENY)
        assert time.monotonic() - started < 0.5
        assert_explicit(await emqx.connect(good.tenant.instance_id, good.password), ALLOW)


@pytest.mark.parametrize("field", ["username", "password", "clientid"])
async def test_a_field_that_is_not_utf8_gets_an_explicit_deny(
    store: TenantStore, field: str
) -> None:
    """EMQX's gpb does not check UTF-8; protobuf-python refuses to decode it. The hook
    answers such a request with an explicit deny (reason bad_request), not an RPC error,
    and the server carries on."""
    good = await stored(store)
    gid = good.tenant.instance_id
    async with running_exhook(store) as (runtime, emqx):
        info = emqx.clientinfo(gid, f"{gid}-x", password=good.password)
        marker = "\x00" * 12
        setattr(info, field, getattr(info, field)[:-12] + marker)
        payload = pb.ClientAuthenticateRequest(clientinfo=info).SerializeToString()
        bad = payload.replace(marker.encode(), b"\xff" * 12)
        assert bad != payload
        answer = Answer.of(
            pb.ValuedResponse.FromString(await emqx.call_raw("OnClientAuthenticate", bad))
        )
        assert_explicit(answer, DENY)
        assert runtime.metrics.count(AUTHENTICATE, "deny", "bad_request") == 1
        assert_explicit(await emqx.connect(gid, good.password), ALLOW)


async def test_usernames_not_ours_are_ignored_when_asked(store: TenantStore) -> None:
    async with running_exhook(store, unknown_user_action="ignore") as (_, emqx):
        answer = await emqx.connect("alice", "secret")
        assert answer.verdict == IGNORE
        assert answer.type == pb.ValuedResponse.IGNORE
        # ...but a username shaped like ours is ours: never ignored.
        assert_explicit(await emqx.connect(new_instance_id(), new_password()), DENY)


async def test_expiry_is_enforced_by_the_clock(store: TenantStore) -> None:
    good = await stored(store)
    now = [datetime.now(UTC)]
    async with running_exhook(store, clock=lambda: now[0]) as (_, emqx):
        gid = good.tenant.instance_id
        assert_explicit(await emqx.connect(gid, good.password), ALLOW)
        now[0] = good.tenant.expires_at  # the record is still in the store and the index
        assert_explicit(await emqx.connect(gid, good.password), DENY)  # even from the cache


async def test_answers_follow_the_store(store: TenantStore) -> None:
    async with running_exhook(store) as (_, emqx):
        fresh = await stored(store)
        fid = fresh.tenant.instance_id

        async def connect() -> str:
            return (await emqx.connect(fid, fresh.password)).verdict

        assert await eventually(connect, ALLOW) == ALLOW  # created
        current = await store.get(fid)
        assert current is not None
        paused = await store.update(replace(current, paused=True))  # edited by an operator
        assert await eventually(connect, DENY) == DENY
        await store.update(replace(paused, paused=False))
        assert await eventually(connect, ALLOW) == ALLOW
        assert await store.delete(fid)  # deleted
        assert await eventually(connect, DENY) == DENY


async def test_the_cache_skips_argon2_until_the_record_changes(store: TenantStore) -> None:
    good = await stored(store)
    verify = CountingVerify()
    async with running_exhook(store, verify_fn=verify) as (runtime, emqx):
        gid = good.tenant.instance_id
        assert_explicit(await emqx.connect(gid, good.password), ALLOW)
        assert verify.calls == 1
        for _ in range(3):
            assert_explicit(await emqx.connect(gid, good.password, "another-device"), ALLOW)
        assert verify.calls == 1
        assert runtime.metrics.count(AUTHENTICATE, "allow", "cached") == 3
        assert (
            runtime.metrics.registry.get_sample_value(
                "zero_emqx_exhook_verify_cache_total", {"result": "hit"}
            )
            == 3
        )
        # A wrong password is never a cache hit.
        assert_explicit(await emqx.connect(gid, new_password()), DENY)
        assert verify.calls == 2
        # Rotation: a new hash in the store; the old password stops working at once.
        new_password_ = new_password()
        current = await store.get(gid)
        assert current is not None
        await store.update(replace(current, password_hash=hash_password(new_password_)))

        async def old() -> str:
            return (await emqx.connect(gid, good.password)).verdict

        assert await eventually(old, DENY) == DENY
        assert_explicit(await emqx.connect(gid, new_password_), ALLOW)
        calls = verify.calls
        assert_explicit(await emqx.connect(gid, new_password_), ALLOW)
        assert verify.calls == calls


async def test_overload_is_a_fast_explicit_deny(
    store: TenantStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="exhook.service")
    good = await stored(store)
    verify = CountingVerify(delay=0.5)
    async with running_exhook(
        store, verify_fn=verify, verify_workers=1, verify_queue_timeout=0.1
    ) as (runtime, emqx):
        gid = good.tenant.instance_id
        started = time.monotonic()
        answers = await asyncio.gather(
            *(emqx.connect(gid, good.password, f"d{n}") for n in range(5))
        )
        elapsed = time.monotonic() - started
        assert all(answer.explicit for answer in answers)
        verdicts = sorted(answer.verdict for answer in answers)
        assert verdicts == [ALLOW] + [DENY] * 4
        assert runtime.metrics.count(AUTHENTICATE, "deny", "overloaded") == 4
        assert verify.calls == 1
        assert elapsed < 1.5
        sheds = runtime.metrics.registry.get_sample_value("zero_emqx_exhook_overload_sheds_total")
        assert sheds == 4
    warnings = [r for r in caplog.records if "overloaded" in r.getMessage()]
    assert len(warnings) == 1  # throttled: not one line per shed call


async def test_a_failing_verify_is_an_explicit_deny(store: TenantStore) -> None:
    good = await stored(store)

    def broken(password_hash: str, password: str) -> bool:
        raise RuntimeError("argon2 library exploded")

    async with running_exhook(store, verify_fn=broken) as (runtime, emqx):
        assert_explicit(await emqx.connect(good.tenant.instance_id, good.password), DENY)
        assert runtime.metrics.count(AUTHENTICATE, "deny", "internal_error") == 1
        assert_explicit(await emqx.connect(good.tenant.instance_id, good.password), DENY)


async def test_overload_answers_before_emqx_gives_up(store: TenantStore) -> None:
    """The wait for a worker ends before the call's deadline (EMQX request_timeout)."""
    good = await stored(store)
    verify = CountingVerify(delay=0.6)
    async with running_exhook(
        store, verify_fn=verify, verify_workers=1, verify_queue_timeout=5.0, deadline_margin=0.1
    ) as (runtime, emqx):
        gid = good.tenant.instance_id
        blocker = asyncio.create_task(emqx.connect(gid, good.password, "a"))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        answer = await emqx.connect(gid, good.password, "b", timeout=0.4)
        assert_explicit(answer, DENY)
        assert time.monotonic() - started < 0.4
        assert runtime.metrics.count(AUTHENTICATE, "deny", "overloaded") == 1
        assert_explicit(await blocker, ALLOW)


async def test_logs_never_hold_passwords_or_hashes(
    store: TenantStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = await stored(store)
    paused = await stored(store, paused=True)
    huge = "S" * 65536
    secrets = [
        good.password,
        paused.password,
        good.tenant.password_hash,
        paused.tenant.password_hash,
        huge[:64],
    ]
    async with running_exhook(store) as (_, emqx):
        gid = good.tenant.instance_id
        await emqx.connect(gid, good.password)
        await emqx.connect(gid, good.password)  # cached
        await emqx.connect(gid, good.password[::-1])
        await emqx.connect(gid, good.password, override=False)
        await emqx.connect(paused.tenant.instance_id, paused.password)
        await emqx.connect(new_instance_id(), good.password)
        await emqx.connect(gid, huge)
        await emqx.connect(good.password, good.password)  # a password typed as the username
        await emqx.connect(huge, huge)
    text = "\n".join(f"{record.getMessage()} {record.exc_text or ''}" for record in caplog.records)
    assert caplog.records, "expected debug logs of the decisions"
    for secret in secrets:
        assert secret not in text


async def test_two_emqx_nodes_share_one_server(store: TenantStore) -> None:
    good = await stored(store)
    async with (
        running_exhook(store) as (runtime, emqx),
        FakeEmqx(f"127.0.0.1:{runtime.grpc_port}", node="emqx@10.0.0.2", version="6.0.3") as other,
    ):
        gid = good.tenant.instance_id
        assert await other.load() == await emqx.load()
        assert_explicit(await other.connect(gid, good.password), ALLOW)
        assert_explicit(await emqx.connect(gid, good.password, "b"), ALLOW)


async def test_scoped_credentials_cost_one_verify_and_are_cached_apart(
    store: TenantStore,
) -> None:
    device = make_credential()
    minted = make_tenant()
    tenant = await store.create(replace(minted.tenant, credentials=(device.credential,)))
    owner, scoped = tenant.usernames()
    verify = CountingVerify()
    async with running_exhook(store, verify_fn=verify) as (runtime, emqx):
        assert_explicit(await emqx.connect(owner, minted.password), ALLOW)
        assert_explicit(await emqx.connect(scoped, device.password), ALLOW)
        assert verify.calls == 2
        for _ in range(2):
            assert_explicit(await emqx.connect(owner, minted.password, "again"), ALLOW)
            assert_explicit(await emqx.connect(scoped, device.password, "again"), ALLOW)
        assert verify.calls == 2  # each username hit its own cache entry
        assert_explicit(await emqx.connect(scoped, minted.password), DENY)  # the owner's
        assert_explicit(await emqx.connect(owner, device.password), DENY)  # the device's
        denied = {
            "unknown credential": await emqx.connect(f"{owner}.00000000", device.password),
            "the owner's client ids": await emqx.connect(
                scoped, device.password, f"{owner}-x", override=False
            ),
            "claims the namespace": await emqx.connect(f"{owner}zzz", minted.password),
        }
        for answer in denied.values():
            assert_explicit(answer, DENY)
        # Every refusal that names an instance paid one verify; the malformed one none.
        assert verify.calls == 2 + 2 + 2
        metrics = runtime.metrics
        assert metrics.count(AUTHENTICATE, "deny", "no_such_credential") == 1
        assert metrics.count(AUTHENTICATE, "deny", "bad_username") == 1
        assert metrics.count(AUTHENTICATE, "deny", "bad_client_id") == 1
        # The rights are EMQX's ACL's to enforce, from the letter in the username.
        assert emqx.acl(scoped, "t", action="publish") == ALLOW
        assert emqx.acl(scoped, "t", action="subscribe") == DENY
