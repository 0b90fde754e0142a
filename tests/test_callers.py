"""Who is calling, as the running manager sees it: the proxy header and its warnings."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from manager.callers import WARN_INTERVAL, UntrustedForwardingWarner
from tenants.local_store import LocalStore
from tests.manager_client import manager_for

ONE_EACH = {"PER_IP_RATE": "0", "PER_IP_MAX_LIVE": "1"}


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "manager.callers"]


def test_warner_warns_once_per_peer_and_at_most_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    now = [0.0]
    warner = UntrustedForwardingWarner(clock=lambda: now[0])
    warner.seen("192.0.2.1", "X-Forwarded-For")
    warner.seen("192.0.2.1", "X-Forwarded-For")
    warner.seen("192.0.2.2", "Forwarded")  # too soon after the first
    assert len(warnings_in(caplog)) == 1
    assert "192.0.2.1" in warnings_in(caplog)[0]
    assert "TRUSTED_PROXIES" in warnings_in(caplog)[0]
    now[0] = WARN_INTERVAL
    warner.seen("192.0.2.1", "X-Forwarded-For")  # already warned about
    warner.seen("192.0.2.2", "Forwarded")
    assert len(warnings_in(caplog)) == 2
    assert "Forwarded from 192.0.2.2" in warnings_in(caplog)[1]


async def test_forwarding_headers_from_an_untrusted_peer_are_ignored_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    store = LocalStore(tmp_path)
    try:
        async with manager_for(store, ONE_EACH) as m:
            forged = {"X-Forwarded-For": "198.51.100.1"}
            assert (await m.client.post("/v1/instances", headers=forged)).status_code == 201
            forged = {"X-Forwarded-For": "198.51.100.2"}
            assert (await m.client.post("/v1/instances", headers=forged)).status_code == 429
            assert (await m.client.get("/healthz", headers=forged)).status_code == 200
        logged = warnings_in(caplog)
        assert len(logged) == 1
        assert "X-Forwarded-For from 127.0.0.1" in logged[0]
    finally:
        await store.close()


async def test_no_warning_without_forwarding_headers_or_from_a_trusted_proxy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    store = LocalStore(tmp_path)
    try:
        async with manager_for(store, ONE_EACH) as m:
            assert (await m.client.post("/v1/instances")).status_code == 201
        async with manager_for(store, {**ONE_EACH, "TRUSTED_PROXIES": "127.0.0.1"}) as m:
            proxied = {"X-Forwarded-For": "198.51.100.1"}
            assert (await m.client.post("/v1/instances", headers=proxied)).status_code == 201
        assert warnings_in(caplog) == []
    finally:
        await store.close()


async def test_proxy_header_forwarded_reads_rfc_7239_and_ignores_x_forwarded_for(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    env = {**ONE_EACH, "TRUSTED_PROXIES": "127.0.0.1", "PROXY_HEADER": "forwarded"}
    try:
        async with manager_for(store, env) as m:
            for n in (1, 2):
                headers = {
                    "Forwarded": f'for="[2001:db8:{n}::1]:4711";proto=https',
                    "X-Forwarded-For": "198.51.100.1",  # a client's: not the proxy's header
                }
                response = await m.client.post("/v1/instances", headers=headers)
                assert response.status_code == 201
            again = {"Forwarded": "for=2001:db8:1::ffff"}  # the same /64 as the first
            assert (await m.client.post("/v1/instances", headers=again)).status_code == 429
            hidden = {"Forwarded": "for=_hidden"}
            assert (await m.client.post("/v1/instances", headers=hidden)).status_code == 201
            assert (await m.client.post("/v1/instances", headers=hidden)).status_code == 429
    finally:
        await store.close()


async def test_a_proxy_that_appends_its_own_line_is_believed_not_the_forged_line(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    env = {**ONE_EACH, "TRUSTED_PROXIES": "127.0.0.1"}
    try:
        async with manager_for(store, env) as m:
            for client in ("198.51.100.1", "198.51.100.2"):
                # Two header lines: the client's forged one, then the proxy's.
                headers = [("X-Forwarded-For", "203.0.113.66"), ("X-Forwarded-For", client)]
                response = await m.client.post("/v1/instances", headers=headers)
                assert response.status_code == 201
            headers = [("X-Forwarded-For", "203.0.113.67"), ("X-Forwarded-For", "198.51.100.1")]
            assert (await m.client.post("/v1/instances", headers=headers)).status_code == 429
    finally:
        await store.close()


async def test_proxy_hops_keep_a_private_caller_from_forging_its_way_out(tmp_path: Path) -> None:
    """Behind one proxy whose trusted range holds callers too, the hop it wrote is the
    caller: rotating what lies to its left gives no new caller group."""
    store = LocalStore(tmp_path)
    env = {**ONE_EACH, "TRUSTED_PROXIES": "127.0.0.0/8,10.0.0.0/8", "TRUSTED_PROXY_HOPS": "1"}
    try:
        async with manager_for(store, env) as m:
            first = {"X-Forwarded-For": "203.0.113.1, 10.0.0.7"}
            forged = {"X-Forwarded-For": "203.0.113.2, 10.0.0.7"}
            assert (await m.client.post("/v1/instances", headers=first)).status_code == 201
            assert (await m.client.post("/v1/instances", headers=forged)).status_code == 429
        async with manager_for(store, {**env, "TRUSTED_PROXY_HOPS": "0"}) as m:
            # Unbounded, 10.0.0.7 is one more proxy and the forged hop a new caller.
            assert (await m.client.post("/v1/instances", headers=forged)).status_code == 201
    finally:
        await store.close()
