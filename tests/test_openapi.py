"""The OpenAPI document: served at /api-docs, committed as manager/openapi.json, covering
every route, and obeyed by the running app (schemathesis, in-process, few examples)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from manager.openapi import document, rendered
from tenants.local_store import LocalStore
from tests.conftest import make_tenant
from tests.manager_client import ADMIN, basic, keys_file, manager_for

COMMITTED = Path(__file__).resolve().parents[1] / "manager" / "openapi.json"
# Not the API:
UNDOCUMENTED = {"/healthz", "/readyz", "/metrics", "/api-docs", "/", "/static/{name}"}
EXAMPLES_PER_OPERATION = 12
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "MANAGEMENT_API_KEYS_FILE": str(keys_file(tmp_path)),
        "PER_IP_RATE": "0",
        "PER_IP_MAX_LIVE": "0",
        "AUTH_FAILURE_RATE": "0",
    }


async def test_served_document_is_the_committed_file(tmp_path: Path) -> None:
    assert COMMITTED.read_text() == rendered(), (
        "run: python -m manager.openapi > manager/openapi.json"
    )
    store = LocalStore(tmp_path / "data")
    try:
        async with manager_for(store) as m:
            response = await m.client.get("/api-docs")
            assert response.status_code == 200
            assert response.headers["Content-Type"].startswith("application/json")
            assert response.json() == json.loads(COMMITTED.read_text())
    finally:
        await store.close()


async def test_every_route_is_documented_and_nothing_else(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    try:
        async with manager_for(store, _env(tmp_path)) as m:
            served = {
                (route.resource.canonical, route.method.lower())
                for route in m.app.router.routes()
                if route.resource is not None
                and route.method != "HEAD"
                and route.resource.canonical not in UNDOCUMENTED
            }
    finally:
        await store.close()
    documented = {
        (path, method)
        for path, item in document()["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert served == documented


class _Fuzz:
    """Generated cases for one operation, sent with the right credentials."""

    def __init__(self, base_url: str, instance_id: str, owner: dict[str, str]) -> None:
        self.base_url = base_url
        self.instance_id = instance_id
        self.owner = owner  # the real instance's current password (rotations change it)
        self.failures: list[str] = []
        self.sent = 0

    def headers_for(self, case: Any) -> dict[str, str]:
        path, method = case.operation.path, case.method.upper()
        self.sent += 1
        real = self.sent % 2 == 1  # every other case is about the real instance
        if path.startswith("/api/v1/instances/") and method != "DELETE" and real:
            case.path_parameters["instance_id"] = self.instance_id
        if path.startswith("/api/v1/"):
            return basic(*ADMIN)
        if path.startswith("/v1/instances/"):
            if real and method == "GET":
                case.path_parameters["instance_id"] = self.instance_id
            return basic(case.path_parameters["instance_id"], self.owner["password"])
        return {}

    def send(self, case: Any) -> None:
        headers = self.headers_for(case)
        response = case.call(base_url=self.base_url, headers=headers, timeout=10)
        about_real = case.path_parameters.get("instance_id") == self.instance_id
        if response.status_code == 200 and case.path.endswith("rotate-credentials") and about_real:
            self.owner["password"] = response.json()["credentials"]["password"]
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except AssertionError as exc:
            self.failures.append(f"{case.operation.label}: {str(exc)[:2000]}")

    def run(self, operation: Any) -> None:
        @given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        def one(case: Any) -> None:
            self.send(case)

        one()


def _run_schemathesis(base_url: str, instance_id: str, password: str) -> list[str]:
    """Every documented operation with a few generated cases; the failures found."""
    fuzz = _Fuzz(base_url, instance_id, {"password": password})
    for result in schemathesis.openapi.from_dict(document()).get_all_operations():
        assert isinstance(result, Ok)
        fuzz.run(result.ok())
    assert fuzz.sent >= EXAMPLES_PER_OPERATION
    return fuzz.failures


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data", poll_interval=0.05)
    try:
        minted = make_tenant(tag="seeded")
        await store.create(minted.tenant)
        async with manager_for(store, _env(tmp_path)) as m:
            failures = await asyncio.wait_for(
                asyncio.to_thread(
                    _run_schemathesis, m.url, minted.tenant.instance_id, minted.password
                ),
                timeout=50,
            )
    finally:
        await store.close()
    assert failures == []


def test_schema_is_valid_openapi() -> None:
    schema = schemathesis.openapi.from_dict(document())
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert len(operations) == sum(
        1 for item in document()["paths"].values() for method in item if method != "parameters"
    )


@pytest.mark.parametrize("path", ["/api/v1/instances", "/api/v1/instances/{instance_id}"])
def test_management_operations_require_the_api_key(path: str) -> None:
    for method, operation in document()["paths"][path].items():
        if method != "parameters":
            assert operation["security"] == [{"apiKey": []}]
