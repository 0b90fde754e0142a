"""What a record change asks of EMQX (pure): jobs, merges, sessions to end, backoff."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from exhook.emqx_api import EmqxClient
from exhook.kick_plan import (
    JobKind,
    KickRequest,
    backoff_delay,
    job_for_change,
    merge_kinds,
    sessions_to_end,
)
from tests.conftest import make_credential, make_tenant


def test_job_for_change() -> None:
    t = make_tenant().tenant
    iid = t.instance_id
    assert job_for_change(None, t) == ()  # created
    assert job_for_change(t, None) == (KickRequest(iid, JobKind.REMOVE, frozenset({iid})),)
    assert job_for_change(t, replace(t, paused=True)) == (
        KickRequest(iid, JobKind.PAUSE, frozenset({iid})),
    )
    assert job_for_change(replace(t, paused=True), t) == ()  # unpause: the hook allows again
    rehashed = replace(t, password_hash="$argon2id$new")
    assert job_for_change(t, rehashed) == (KickRequest(iid, JobKind.REAUTH),)
    paused_and_rehashed = replace(t, paused=True, password_hash="$argon2id$new")
    assert [r.kind for r in job_for_change(t, paused_and_rehashed)] == [JobKind.PAUSE]
    assert job_for_change(t, replace(t, tag="x", revision="9")) == ()


def test_job_for_change_of_scoped_credentials() -> None:
    reader = make_credential(allow_publish=False, allow_subscribe=True).credential
    device = make_credential().credential
    t = replace(make_tenant().tenant, credentials=(reader, device))
    iid, reader_name, device_name = t.usernames()
    everyone = frozenset({iid, reader_name, device_name})
    assert job_for_change(t, None) == (KickRequest(iid, JobKind.REMOVE, everyone),)
    assert job_for_change(t, replace(t, paused=True, credentials=(device,))) == (
        KickRequest(iid, JobKind.PAUSE, everyone),  # a credential removed meanwhile too
    )
    assert job_for_change(replace(t, credentials=(device,)), t) == ()  # a credential added
    assert job_for_change(t, replace(t, credentials=(device,))) == (
        KickRequest(reader_name, JobKind.REVOKE),
    )
    for changed in (
        replace(reader, password_hash="$argon2id$other"),
        replace(reader, allow_subscribe=False),  # a right taken away
    ):
        assert job_for_change(t, replace(t, credentials=(changed, device))) == (
            KickRequest(reader_name, JobKind.REAUTH),
        )
    relabelled = replace(reader, label="other", allow_publish=True)  # nothing taken away
    assert job_for_change(t, replace(t, credentials=(relabelled, device))) == ()
    both = replace(t, password_hash="$argon2id$new", credentials=(reader,))
    assert job_for_change(t, both) == (
        KickRequest(iid, JobKind.REAUTH),  # the owner's sessions only
        KickRequest(device_name, JobKind.REVOKE),
    )


def test_merge_kinds_keeps_the_stronger() -> None:
    assert merge_kinds(JobKind.REAUTH, JobKind.REMOVE) is JobKind.REMOVE
    assert merge_kinds(JobKind.REMOVE, JobKind.PAUSE) is JobKind.REMOVE
    assert merge_kinds(JobKind.PAUSE, JobKind.REAUTH) is JobKind.PAUSE
    assert merge_kinds(JobKind.REAUTH, JobKind.REVOKE) is JobKind.REVOKE


def test_backoff_delay() -> None:
    assert [backoff_delay(n, 0.5, 30) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff_delay(10, 0.5, 30) == 30
    assert backoff_delay(10_000, 0.5, 30) == 30
    assert backoff_delay(1, 1.0, 30, jitter=0.2) == pytest.approx(0.8)


def test_sessions_to_end() -> None:
    cutoff = datetime(2030, 1, 1, 12, 0, 1, tzinfo=UTC)
    old = EmqxClient("c1", "u", "2030-01-01T12:00:00.000+00:00")
    at_cutoff = EmqxClient("c2", "u", "2030-01-01T20:00:01+08:00")  # EMQX's local offset
    new = EmqxClient("c3", "u", "2030-01-01T12:00:01.001+00:00")  # after the window
    unreadable = EmqxClient("c4", "u", "yesterday")
    naive = EmqxClient("c5", "u", "2030-01-01T12:00:05")
    everyone = [old, at_cutoff, new, unreadable, naive]
    assert sessions_to_end(JobKind.REMOVE, everyone, None) == everyone
    assert sessions_to_end(JobKind.PAUSE, everyone, cutoff) == everyone
    # A password change ends what connected up to the cutoff; unreadable times count as old.
    assert sessions_to_end(JobKind.REAUTH, everyone, cutoff) == [old, at_cutoff, unreadable, naive]
