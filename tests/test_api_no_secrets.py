"""No answer of any route ever carries a hash, and a password or API secret appears only
in the one answer that issues it (creation, rotation, scoped credential creation, key
creation)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from tenants.operations import create_credential
from tenants.record import format_time, utc_now
from tenants.store import TenantStore
from tenants.stores import api_key_store_for
from tests.fakes.emqx_api import running_emqx_api
from tests.manager_client import ADMIN, VIEWER, basic, keys_file, manager_for
from tests.test_management_api import seed

METHOD_ORDER = {"HEAD": 0, "GET": 1, "POST": 2, "PUT": 3, "DELETE": 4}


def _issued(response: httpx.Response) -> str | None:
    """The secret this answer hands out once, if it is one of those answers."""
    if response.status_code not in (200, 201):
        return None
    try:
        body: Any = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("credentials"), dict):
        return str(body["credentials"]["password"])
    if isinstance(body, dict) and "api_secret" in body:
        return str(body["api_secret"])
    if isinstance(body, dict) and "password" in body:  # a new scoped credential
        return str(body["password"])
    return None


async def test_no_route_leaks_a_secret(store: TenantStore, tmp_path: Path) -> None:
    mine, doomed = await seed(store, tag="walk"), await seed(store)
    _, _, scoped_password = await create_credential(
        store,
        mine.tenant.instance_id,
        label="seeded",
        allow_publish=True,
        allow_subscribe=False,
        now=utc_now(),
        max_credentials=20,
    )
    async with running_emqx_api() as api:
        env = {
            "MANAGEMENT_API_KEYS_FILE": str(keys_file(tmp_path)),
            "PER_IP_RATE": "0",
            "PER_IP_MAX_LIVE": "0",
            "EMQX_API_URL": api.url,
            "EMQX_API_KEY": api.key,
            "EMQX_API_SECRET": api.secret,
        }
        async with manager_for(store, env) as m:
            admin = basic(*ADMIN)
            temp = await m.client.post("/api/v1/api_keys", headers=admin, json={"name": "temp"})
            known = [ADMIN[1], VIEWER[1], mine.password, doomed.password, temp.json()["api_secret"]]
            known.append(scoped_password)
            current = {"password": mine.password, "username": ""}
            routes = sorted(
                (r for r in m.app.router.routes() if r.resource is not None),
                key=lambda r: (METHOD_ORDER[r.method], r.resource.canonical if r.resource else ""),
            )
            walked = []
            issuers: set[tuple[str, str]] = set()
            for route in routes:
                assert route.resource is not None
                path, method = route.resource.canonical, route.method
                doomed_path = path.startswith("/api/v1/instances/") and "/credentials" not in path
                target = doomed if doomed_path and method == "DELETE" else mine
                concrete = path.replace("{instance_id}", target.tenant.instance_id)
                concrete = concrete.replace("{name}", "temp")
                concrete = concrete.replace("/static/temp", "/static/console.js")
                concrete = concrete.replace("{username}", current["username"])
                headers: dict[str, str] = {}
                if path.startswith("/api/v1/"):
                    headers = admin
                elif path.startswith("/v1/instances/"):
                    headers = basic(target.tenant.instance_id, current["password"])
                body: Any = None
                if path.endswith("/expiry"):
                    body = {"expires_at": format_time(utc_now() + timedelta(days=1))}
                elif path == "/api/v1/api_keys":
                    body = {"name": "walker"}
                elif path == "/v1/instances":
                    body = {"tag": "walked"}
                elif path.endswith("/credentials") and method == "POST":
                    body = {"label": "walked", "allow_subscribe": True}
                response = await m.client.request(method, concrete, headers=headers, json=body)
                assert response.status_code < 400, (method, path, response.text)
                text = response.text + "".join(f"{k}: {v}\n" for k, v in response.headers.items())
                assert "argon2" not in text.lower(), (method, path)
                for secret in known:
                    assert secret not in text, (method, path)
                issued = _issued(response)
                if issued is not None:
                    known.append(issued)
                    issuers.add((method, path))
                    if path.endswith("rotate-credentials"):
                        current["password"] = issued
                    if path.endswith("/credentials"):  # deleted by the DELETE walked later
                        current["username"] = response.json()["username"]
                walked.append((method, path))

            tenants = (await store.list()).tenants
            hashes = [t.password_hash for t in tenants]
            hashes += [c.password_hash for t in tenants for c in t.credentials]
            keys = api_key_store_for(store)
            try:
                hashes += [k.secret_hash for k in await keys.list()]
            finally:
                await keys.close()
            assert hashes and all(h.startswith("$argon2") for h in hashes)
    one_time = {
        ("POST", "/v1/instances"),
        ("POST", "/v1/instances/{instance_id}/rotate-credentials"),
        ("POST", "/api/v1/instances/{instance_id}/rotate-credentials"),
        ("POST", "/api/v1/instances/{instance_id}/credentials"),
        ("POST", "/api/v1/api_keys"),
    }
    assert issuers == one_time
    assert len(walked) == len(routes) == 36  # 12 GET (+ HEAD), 7 POST, 1 PUT, 4 DELETE
