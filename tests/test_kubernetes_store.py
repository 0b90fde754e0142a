"""KubernetesStore through the real kubernetes client against the in-process API server."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from kubernetes import client as k8s

from tenants.errors import (
    AlreadyExists,
    Conflict,
    NotFound,
    StoreError,
    StoreForbidden,
    StoreTimeout,
    StoreUnavailable,
    WatchExpired,
)
from tenants.index import IndexSync, TenantIndex
from tenants.kubernetes_api import kubernetes_api_client
from tenants.kubernetes_store import KubernetesStore
from tenants.secret_format import (
    CREATED_AT_ANNOTATION,
    EXPIRES_AT_ANNOTATION,
    IP_HASH_LABEL,
    PAUSED_ANNOTATION,
    TAG_LABEL,
    TENANT_LABEL,
    tenant_to_secret,
)
from tenants.store import Change, ChangeType
from tests import hostile_values
from tests.conftest import make_tenant
from tests.fakes.kubernetes_api import FakeKubernetesApi, running_kubernetes_api, store_for
from tests.waiting import until

TOKEN = "test-bearer-token"


@pytest.fixture
async def api() -> AsyncIterator[FakeKubernetesApi]:
    async with running_kubernetes_api(token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def kube(api: FakeKubernetesApi) -> AsyncIterator[KubernetesStore]:
    store = store_for(api, timeout_seconds=2.0, page_size=3)
    try:
        yield store
    finally:
        await store.close()


class Watching:
    """A task draining `store.watch(revision)`; changes (or the error) land in a queue."""

    def __init__(self, store: KubernetesStore, revision: str) -> None:
        self._items: asyncio.Queue[Change | Exception] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(store, revision))

    async def _run(self, store: KubernetesStore, revision: str) -> None:
        try:
            async for change in store.watch(revision):
                self._items.put_nowait(change)
        except Exception as exc:
            self._items.put_nowait(exc)

    async def next(self, timeout: float = 1.0) -> Change:
        item = await asyncio.wait_for(self._items.get(), timeout)
        if isinstance(item, Exception):
            raise item
        return item

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def watching(store: KubernetesStore, api: FakeKubernetesApi, revision: str) -> Watching:
    watch = Watching(store, revision)
    await until(lambda: api.watching >= 1)
    return watch


def invalid_secret(name: str = "emqx-00000000000000aa") -> dict[str, Any]:
    """What a careless hand edit could leave: a proper record but for a hash that is none."""
    secret = tenant_to_secret(replace(make_tenant().tenant, instance_id=name), "zero")
    secret["data"]["password-hash"] = base64.b64encode(b"not a hash").decode()
    return secret


def merge_patch(api: FakeKubernetesApi, name: str, body: dict[str, Any]) -> None:
    """An operator's `kubectl annotate`: a merge PATCH through the real client over HTTP."""
    with kubernetes_api_client(api.url, token=TOKEN) as client:
        k8s.CoreV1Api(client).patch_namespaced_secret(
            name, api.namespace, body, _content_type="application/merge-patch+json"
        )


# -- CRUD ------------------------------------------------------------------------------


async def test_create_get_update_delete(api: FakeKubernetesApi, kube: KubernetesStore) -> None:
    tenant = make_tenant(tag="blue").tenant
    created = await kube.create(tenant)
    assert created.revision == api.resource_version
    assert created == tenant.with_revision(created.revision)

    stored = api.secret(tenant.instance_id)
    assert stored is not None
    expected = tenant_to_secret(tenant, api.namespace)
    assert stored["metadata"]["labels"] == expected["metadata"]["labels"]
    assert stored["metadata"]["annotations"] == expected["metadata"]["annotations"]
    assert stored["data"] == expected["data"]
    assert stored["type"] == "Opaque"

    assert await kube.get(tenant.instance_id) == created
    paused = await kube.update(replace(created, paused=True))
    assert int(paused.revision) > int(created.revision)
    assert await kube.get(tenant.instance_id) == paused

    assert await kube.delete(tenant.instance_id) is True
    assert await kube.delete(tenant.instance_id) is False
    assert await kube.get(tenant.instance_id) is None


async def test_get_of_a_name_that_is_no_instance_id_asks_nobody(
    api: FakeKubernetesApi, kube: KubernetesStore
) -> None:
    assert await kube.get("../../etc") is None
    assert await kube.get("emqx-0000000000000000") is None
    assert [r.verb for r in api.requests] == ["get"]


async def test_duplicate_create_is_already_exists(kube: KubernetesStore) -> None:
    tenant = make_tenant().tenant
    await kube.create(tenant)
    with pytest.raises(AlreadyExists, match=tenant.instance_id):
        await kube.create(tenant)


async def test_stale_or_missing_update(kube: KubernetesStore) -> None:
    created = await kube.create(make_tenant().tenant)
    await kube.update(replace(created, paused=True))
    with pytest.raises(Conflict):
        await kube.update(replace(created, tag="late"))
    with pytest.raises(Conflict):
        await kube.update(replace(created, revision=""))
    await kube.delete(created.instance_id)
    with pytest.raises(NotFound):
        await kube.update(created)


async def test_list_pages_through_every_tenant(
    api: FakeKubernetesApi, kube: KubernetesStore
) -> None:
    created = {(await kube.create(make_tenant().tenant)).instance_id for _ in range(7)}
    api.put_secret({"metadata": {"name": "unrelated"}, "data": {}})
    listing = await kube.list()
    assert {t.instance_id for t in listing.tenants} == created
    assert listing.revision == api.resource_version
    pages = [r for r in api.requests if r.verb == "list"]
    assert len(pages) == 3
    assert all(r.query["limit"] == "3" for r in pages)
    assert all(r.query["labelSelector"] == "zero-emqx.io/tenant=true" for r in pages)


async def test_list_starts_over_when_the_continue_token_expires(
    api: FakeKubernetesApi, kube: KubernetesStore
) -> None:
    created = {(await kube.create(make_tenant().tenant)).instance_id for _ in range(5)}
    expired: list[str] = []

    def compact_once(request: Any) -> None:
        if request.query.get("continue") and not expired:
            expired.append(request.query["continue"])
            api.compact()

    api.on_request = compact_once
    listing = await kube.list()
    assert {t.instance_id for t in listing.tenants} == created
    assert expired
    assert [bool(r.query.get("continue")) for r in api.requests if r.verb == "list"] == [
        False,
        True,  # 410 Expired: start over
        False,
        True,
    ]


# -- watch -----------------------------------------------------------------------------


async def test_watch_sees_added_modified_deleted(
    api: FakeKubernetesApi, kube: KubernetesStore
) -> None:
    watch = await watching(kube, api, (await kube.list()).revision)
    try:
        tenant = await kube.create(make_tenant().tenant)
        added = await watch.next()
        assert (added.type, added.tenant) == (ChangeType.ADDED, tenant)

        patch = {"metadata": {"annotations": {PAUSED_ANNOTATION: "true"}}}
        await asyncio.to_thread(merge_patch, api, tenant.instance_id, patch)
        modified = await watch.next()
        assert modified.type is ChangeType.MODIFIED
        assert modified.tenant is not None and modified.tenant.paused
        assert modified.revision == modified.tenant.revision == api.resource_version

        api.delete(tenant.instance_id)
        deleted = await watch.next()
        assert (deleted.type, deleted.instance_id) == (ChangeType.DELETED, tenant.instance_id)
        assert deleted.revision == api.resource_version
    finally:
        await watch.stop()


async def test_a_secret_that_loses_its_label_is_deleted_for_the_watch(
    api: FakeKubernetesApi, kube: KubernetesStore
) -> None:
    tenant = await kube.create(make_tenant().tenant)
    watch = await watching(kube, api, tenant.revision)
    try:
        api.patch(tenant.instance_id, {"metadata": {"labels": {TENANT_LABEL: None}}})
        change = await watch.next()
        assert (change.type, change.instance_id) == (ChangeType.DELETED, tenant.instance_id)
    finally:
        await watch.stop()


async def test_watch_from_a_compacted_revision_expires(
    api: FakeKubernetesApi, kube: KubernetesStore
) -> None:
    old = (await kube.create(make_tenant().tenant)).revision
    await kube.create(make_tenant().tenant)
    api.compact()
    with pytest.raises(WatchExpired):
        await anext(aiter(kube.watch(old)))


async def test_watch_resumes_from_the_last_bookmark(
    api: FakeKubernetesApi, kube: KubernetesStore
) -> None:
    watch = await watching(kube, api, (await kube.list()).revision)
    try:
        api.put_secret({"metadata": {"name": "not-ours"}})  # moves the revision on
        api.send_bookmarks()
        api.compact()  # only a watch from the bookmark's revision is still possible
        api.end_watches()
        await until(lambda: len([r for r in api.requests if r.verb == "watch"]) == 2)
        rewatch = [r for r in api.requests if r.verb == "watch"][-1]
        assert rewatch.query["resourceVersion"] == api.resource_version
        tenant = await kube.create(make_tenant().tenant)
        assert (await watch.next(2.0)).tenant == tenant
    finally:
        await watch.stop()


async def test_watch_reopens_after_an_idle_timeout() -> None:
    async with running_kubernetes_api(bookmark_interval=60) as api:
        store = store_for(api, timeout_seconds=2.0, watch_idle_seconds=0.3)
        try:
            watch = await watching(store, api, (await store.list()).revision)
            await asyncio.sleep(0.5)  # the first stream timed out quietly
            tenant = await store.create(make_tenant().tenant)
            assert (await watch.next(2.0)).tenant == tenant
            assert len([r for r in api.requests if r.verb == "watch"]) >= 2
            await watch.stop()
        finally:
            await store.close()


async def test_cancelling_the_watch_closes_the_stream_promptly(
    api: FakeKubernetesApi, kube: KubernetesStore
) -> None:
    before = {t for t in threading.enumerate() if t.name == "kube-watch"}
    watch = await watching(kube, api, (await kube.list()).revision)
    ours = [t for t in threading.enumerate() if t.name == "kube-watch" and t not in before]
    assert ours, "the watch reads its stream on a thread of its own"
    started = time.monotonic()
    await watch.stop()
    assert time.monotonic() - started < 1.0
    for thread in ours:  # other tests' stores may still be winding down theirs
        await asyncio.to_thread(thread.join, 1.0)
        assert not thread.is_alive()
    await until(lambda: api.watching == 0)


async def test_closing_the_store_ends_its_watches(
    api: FakeKubernetesApi, kube: KubernetesStore
) -> None:
    watch = await watching(kube, api, (await kube.list()).revision)
    await kube.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await watch.next()


# -- unreadable records ----------------------------------------------------------------


async def test_invalid_secret_is_reported_by_list_and_watch_as_unreadable(
    api: FakeKubernetesApi, kube: KubernetesStore
) -> None:
    good = await kube.create(make_tenant().tenant)
    watch = await watching(kube, api, good.revision)
    try:
        api.put_secret(invalid_secret())
        change = await watch.next()
        assert change.type is ChangeType.ADDED
        assert (change.instance_id, change.tenant) == ("emqx-00000000000000aa", None)
        assert "data.password-hash" in change.unreadable
    finally:
        await watch.stop()
    listing = await kube.list()
    assert listing.tenants == (good,)
    assert [u.instance_id for u in listing.unreadable] == ["emqx-00000000000000aa"]
    assert "data.password-hash" in listing.unreadable[0].reason


async def test_get_of_an_invalid_secret_is_none(
    api: FakeKubernetesApi, kube: KubernetesStore
) -> None:
    api.put_secret(invalid_secret())
    assert await kube.get("emqx-00000000000000aa") is None


async def test_no_error_or_log_line_carries_the_hash(
    api: FakeKubernetesApi, kube: KubernetesStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tenant = make_tenant(tag="t").tenant
    secrets = (tenant.password_hash, base64.b64encode(tenant.password_hash.encode()).decode())
    errors: list[Exception] = []
    created = await kube.create(tenant)
    broken = tenant_to_secret(make_tenant().tenant, api.namespace)
    broken["metadata"]["annotations"]["zero-emqx.io/expires-at"] = "never"
    api.put_secret(broken)
    unreadable = (await kube.list()).unreadable
    assert await kube.get(broken["metadata"]["name"]) is None
    for attempt in (kube.create(tenant), kube.update(replace(created, revision="1"))):
        try:
            await attempt
        except Exception as exc:
            errors.append(exc)
    api.forbid("update")
    api.fail_next(1, 500, verb="create")
    for attempt in (kube.update(created), kube.create(make_tenant().tenant)):
        try:
            await attempt
        except Exception as exc:
            errors.append(exc)
    assert len(errors) == 4
    texts = [caplog.text, repr(unreadable), *(str(e) for e in errors), *(repr(e) for e in errors)]
    for text in texts:
        for secret in secrets:
            assert secret not in text


# -- failures --------------------------------------------------------------------------


async def test_server_error_is_unavailable(api: FakeKubernetesApi, kube: KubernetesStore) -> None:
    api.fail_next(1, 500)
    with pytest.raises(StoreUnavailable, match="500"):
        await kube.get("emqx-0000000000000001")
    api.fail_next(1, 503)
    with pytest.raises(StoreUnavailable):
        await kube.ping()
    await kube.ping()


async def test_slow_server_times_out_without_blocking_the_loop(api: FakeKubernetesApi) -> None:
    store = store_for(api, timeout_seconds=0.3)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    counting = asyncio.create_task(ticker())
    try:
        api.delay_next(1, 2.0)
        started = time.monotonic()
        with pytest.raises(StoreTimeout):
            await store.get("emqx-0000000000000001")
        assert time.monotonic() - started < 1.5
        assert ticks >= 10  # the loop kept running while the call waited
    finally:
        counting.cancel()
        await store.close()


@pytest.mark.parametrize("verb", ["create", "get", "list", "update", "delete", "watch"])
async def test_forbidden_names_the_verb(
    api: FakeKubernetesApi, kube: KubernetesStore, caplog: pytest.LogCaptureFixture, verb: str
) -> None:
    tenant = await kube.create(make_tenant().tenant)
    api.forbid(verb)
    calls: dict[str, Callable[[], Any]] = {
        "create": lambda: kube.create(make_tenant().tenant),
        "get": lambda: kube.get(tenant.instance_id),
        "list": kube.list,
        "update": lambda: kube.update(replace(tenant, paused=True)),
        "delete": lambda: kube.delete(tenant.instance_id),
        "watch": lambda: anext(aiter(kube.watch(tenant.revision))),
    }
    with pytest.raises(StoreForbidden) as caught:
        await calls[verb]()
    assert f"'{verb}'" in str(caught.value)
    assert "403" in str(caught.value) and "Role" in str(caught.value)
    assert api.namespace in str(caught.value)
    assert any(r.levelno == logging.ERROR and f"'{verb}'" in r.getMessage() for r in caplog.records)


async def test_a_wrong_token_is_forbidden(api: FakeKubernetesApi) -> None:
    store = KubernetesStore(kubernetes_api_client(api.url, token="wrong"), api.namespace)
    try:
        with pytest.raises(StoreForbidden, match="401"):
            await store.ping()
    finally:
        await store.close()


async def test_server_down_is_unavailable_and_recovers(
    api: FakeKubernetesApi, kube: KubernetesStore
) -> None:
    tenant = await kube.create(make_tenant().tenant)
    watch = await watching(kube, api, tenant.revision)
    await api.set_down(True)
    with pytest.raises(StoreUnavailable):
        await kube.get(tenant.instance_id)
    with pytest.raises(StoreUnavailable):
        await watch.next(3.0)
    await api.set_down(False)
    assert await kube.get(tenant.instance_id) == tenant


async def test_an_unreachable_port_is_unavailable() -> None:
    async with running_kubernetes_api() as api:
        url, namespace = api.url, api.namespace
    store = KubernetesStore(kubernetes_api_client(url), namespace, timeout_seconds=1.0)
    try:
        with pytest.raises(StoreUnavailable):
            await store.list()
    finally:
        await store.close()


def test_the_client_does_not_retry_behind_our_back() -> None:
    with kubernetes_api_client("http://127.0.0.1:9") as client:
        assert client.configuration.retries is False
        assert client.configuration.keep_alive is True


async def test_create_in_a_missing_namespace_says_so(api: FakeKubernetesApi) -> None:
    store = KubernetesStore(kubernetes_api_client(api.url, token=TOKEN), "elsewhere")
    try:
        with pytest.raises(StoreError, match="namespace elsewhere does not exist"):
            await store.create(make_tenant().tenant)
        assert (await store.list()).tenants == ()
    finally:
        await store.close()


async def test_a_410_when_the_watch_opens_expires_it(
    api: FakeKubernetesApi, kube: KubernetesStore
) -> None:
    api.fail_next(1, 410, verb="watch")
    with pytest.raises(WatchExpired):
        await anext(aiter(kube.watch(api.resource_version)))


# -- the stand-in's own conventions ----------------------------------------------------


def _raw_call(api: FakeKubernetesApi, call: Callable[[k8s.CoreV1Api], Any]) -> dict[str, Any]:
    """The Status body of a failing call made with the real client."""
    with (
        kubernetes_api_client(api.url, token=TOKEN) as client,
        pytest.raises(k8s.ApiException) as caught,
    ):
        call(k8s.CoreV1Api(client))
    body: dict[str, Any] = json.loads(caught.value.body or "{}")
    return body


@pytest.mark.parametrize(
    ("name", "code", "reason"),
    [("emqx-0000000000000001", 404, "NotFound"), ("Not_A_Name", 422, "Invalid")],
)
async def test_the_stand_in_answers_with_status_objects(
    api: FakeKubernetesApi, name: str, code: int, reason: str
) -> None:
    body = {"metadata": {"name": name}}
    call = (
        (lambda core: core.read_namespaced_secret(name, api.namespace))
        if code == 404
        else (lambda core: core.create_namespaced_secret(api.namespace, body))
    )
    status = await asyncio.to_thread(_raw_call, api, call)
    assert status["kind"] == "Status" and status["apiVersion"] == "v1"
    assert (status["status"], status["code"], status["reason"]) == ("Failure", code, reason)
    assert status["details"]["name"] == name


async def test_the_stand_in_does_not_bump_the_revision_for_a_no_op(
    api: FakeKubernetesApi, kube: KubernetesStore
) -> None:
    tenant = await kube.create(make_tenant().tenant)
    api.patch(tenant.instance_id, {"metadata": {"labels": {TENANT_LABEL: "true"}}})
    assert api.resource_version == tenant.revision
    assert await kube.update(tenant) == tenant


# -- whatever an operator writes into a Secret, the index goes on following the store ----


def _api_accepted_edits() -> st.SearchStrategy[tuple[tuple[str, ...], str]]:
    """Edits the API server itself accepts (string annotations, label values, base64 data):
    everything a `kubectl edit` can leave in one of our Secrets."""
    annotations = st.sampled_from(
        [CREATED_AT_ANNOTATION, EXPIRES_AT_ANNOTATION, PAUSED_ANNOTATION]
    ).map(lambda key: ("metadata", "annotations", key))
    labels = st.sampled_from([TAG_LABEL, IP_HASH_LABEL, TENANT_LABEL]).map(
        lambda key: ("metadata", "labels", key)
    )
    data = st.sampled_from(["password-hash", "credential.0123abcd"]).map(lambda key: ("data", key))
    canonical = st.one_of(hostile_values.json_texts(), st.text(max_size=40)).map(
        lambda text: base64.b64encode(text.encode()).decode()
    )
    return st.one_of(
        st.tuples(annotations, st.one_of(hostile_values.time_texts(), st.text(max_size=40))),
        st.tuples(labels, hostile_values.label_values()),
        st.tuples(
            data,
            st.one_of(
                canonical, st.binary(max_size=40).map(lambda raw: base64.b64encode(raw).decode())
            ),
        ),
    )


def _edit(api: FakeKubernetesApi, name: str, path: tuple[str, ...], value: str) -> None:
    secret = api.secret(name)
    assert secret is not None
    *parents, last = path
    target = secret
    for key in parents:
        target = target.setdefault(key, {})
    target[last] = value
    api.put_secret(secret)


async def _edits_then_deletions(edits: list[tuple[tuple[str, ...], str]]) -> None:
    async with running_kubernetes_api() as api:
        store = store_for(api, timeout_seconds=5.0)
        try:
            listed = await store.create(make_tenant().tenant)
            _edit(api, listed.instance_id, *edits[0])  # the first list sees this one
            index = TenantIndex()
            async with IndexSync(store, index, retry_initial=0.05) as sync:
                assert await sync.wait_synced(5)
                edited = [listed]
                for path, value in edits[1:]:  # the watch sees these
                    victim = await store.create(make_tenant().tenant)
                    doomed = await store.create(make_tenant().tenant)
                    await until(lambda: index.get(doomed.instance_id) is not None)  # noqa: B023
                    _edit(api, victim.instance_id, path, value)
                    assert api.delete(doomed.instance_id)
                    await until(lambda: index.get(doomed.instance_id) is None)  # noqa: B023
                    edited.append(victim)
                for tenant in edited:
                    seen = index.get(tenant.instance_id)
                    assert seen == await store.get(tenant.instance_id)  # get never raises either
                    secret = api.secret(tenant.instance_id) or {}
                    ours = secret["metadata"]["labels"].get(TENANT_LABEL) == "true"
                    assert (seen is None and ours) == (tenant.instance_id in index.unreadable())
            fresh = TenantIndex()  # a new ExHook starting now syncs too
            async with IndexSync(store, fresh) as sync:
                assert await sync.wait_synced(5)
            assert sorted(fresh.tenants(), key=str) == sorted(index.tenants(), key=str)
        finally:
            await store.close()


_ISSUE_EDITS = [  # issue 13's two hand edits, once for the list and once for the watch
    (("metadata", "annotations", EXPIRES_AT_ANNOTATION), "9999-12-31T23:59:59-01:00"),
    (("metadata", "annotations", EXPIRES_AT_ANNOTATION), "9999-12-31T23:59:59-01:00"),
    (
        ("data", "credential.0123abcd"),
        base64.b64encode(hostile_values.deep_json(100_000).encode()).decode(),
    ),
]


@hostile_values.BOUNDED_SLOW
@given(edits=st.lists(_api_accepted_edits(), min_size=1, max_size=12))
@example(edits=_ISSUE_EDITS)
@example(edits=_ISSUE_EDITS[2:] + _ISSUE_EDITS[:2])
def test_no_hand_edit_stops_the_index_following_the_store(
    edits: list[tuple[tuple[str, ...], str]],
) -> None:
    asyncio.run(_edits_then_deletions(edits))
