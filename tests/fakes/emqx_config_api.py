"""The read-only settings routes of the EMQX REST stand-in (mounted by
tests/fakes/emqx_api.py): EMQX's effective configuration as the hook reads it
(exhook/emqx_settings.py). The answers follow EMQX's source (tag 6.2.2, and 6.0.2 where
it differs); the default state is our emqx-config/ for that version.

- `GET /configs/global_zone`: `emqx_mgmt_api_configs.erl` `global_zone_configs/3` answers
  `get_zones/0`, every zone root with its defaults filled (`mqtt` holds all of
  `emqx_schema.erl` `mqtt_general()`: `namespace_as_mountpoint` only since 6.1.0;
  `clientid_override` is "disabled" unless set).
- `GET /authorization/settings`: `emqx_authz_api_settings.erl` `authorization_settings/0`,
  `authz_fields()` with defaults (`include_mountpoint` only since 6.1.0).
- `GET /authorization/sources`: `emqx_authz_api_sources.erl` `sources/2`,
  `{"sources": [...]}` in chain order; a file source's `path` is replaced by its
  `rules` text (`emqx_authz_file:read_files/1`).
- `GET /listeners`: `emqx_mgmt_api_listeners.erl` `list_listeners/2` via
  `format_status/4`: id, name, type, enable, bind, acceptors, status, node_status,
  number; no mountpoint.
- `GET /listeners/{id}`: `crud_listeners_by_id/2` via `find_listeners_by_id/1`: the
  listener's raw config with defaults (`mountpoint` "" when unset), id and type; 404
  `BAD_LISTENER_ID` for an unknown id.

Tests change `mqtt`, `authorization`, `sources` and `listeners` to make a setting wrong.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
MOUNTPOINT = "${client_attrs.tns}/"
BINDS = {"ssl:default": "0.0.0.0:8883", "wss:default": "0.0.0.0:8084"}
OFF = {"tcp:default": "0.0.0.0:1883", "ws:default": "0.0.0.0:8083"}


def _listeners(newer: bool) -> dict[str, dict[str, Any]]:
    listeners = {}
    for listener_id, bind in {**BINDS, **OFF}.items():
        kind, name = listener_id.split(":")
        listeners[listener_id] = {
            "id": listener_id,
            "type": kind,
            "name": name,
            "bind": bind,
            "enable": listener_id in BINDS,
            "enable_authn": True,
            "mountpoint": "" if newer else MOUNTPOINT,
            "acceptors": 16,
            "max_connections": "infinity",
        }
    return listeners


@dataclass
class FakeEmqxConfig:
    """EMQX's effective settings; `newer` (6.1+) or not (6.0) shapes the answers."""

    newer: bool = True
    mqtt: dict[str, Any] = field(default_factory=dict)
    authorization: dict[str, Any] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    listeners: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def ours(cls, version: str = "6.2.2") -> FakeEmqxConfig:
        """What our emqx-config/ gives on `version`."""
        newer = not version.startswith("6.0")
        acl = ROOT / "emqx-config" / ("acl.conf" if newer else "acl-6.0.conf")
        mqtt: dict[str, Any] = {
            "client_attrs_init": [{"expression": "substr(username, 0, 21)", "set_as_attr": "tns"}],
            "clientid_override": "concat([username, '-', clientid])",
            "max_packet_size": "256KB",
            "max_clientid_len": 65535,
        }
        authorization: dict[str, Any] = {
            "no_match": "deny",
            "deny_action": "ignore",
            "cache": {"enable": True, "max_size": 32, "ttl": "1m", "excludes": []},
        }
        if newer:
            mqtt["namespace_as_mountpoint"] = True
            authorization["include_mountpoint"] = True
        sources = [{"type": "file", "enable": True, "rules": acl.read_text()}]
        return cls(newer, mqtt, authorization, sources, _listeners(newer))

    def add_routes(self, router: web.UrlDispatcher, prefix: str) -> None:
        router.add_get(prefix + "/configs/global_zone", self._global_zone)
        router.add_get(prefix + "/authorization/settings", self._authz_settings)
        router.add_get(prefix + "/authorization/sources", self._authz_sources)
        router.add_get(prefix + "/listeners", self._listeners)
        router.add_get(prefix + "/listeners/{id}", self._listener)

    async def _global_zone(self, request: web.Request) -> web.Response:
        zone = {
            "mqtt": copy.deepcopy(self.mqtt),
            "force_shutdown": {"enable": True, "max_mailbox_size": 1000},
            "flapping_detect": {"enable": False},
        }
        return web.json_response(zone)

    async def _authz_settings(self, request: web.Request) -> web.Response:
        return web.json_response(self.authorization)

    async def _authz_sources(self, request: web.Request) -> web.Response:
        return web.json_response({"sources": self.sources})

    async def _listeners(self, request: web.Request) -> web.Response:
        rows = [
            {
                "id": listener_id,
                "name": conf["name"],
                "type": conf["type"],
                "enable": conf["enable"],
                "bind": conf["bind"],
                "acceptors": conf["acceptors"],
                "status": {"running": conf["enable"], "current_connections": 0},
                "node_status": [{"node": "emqx@127.0.0.1", "status": {"running": True}}],
                "number": 1,
            }
            for listener_id, conf in self.listeners.items()
        ]
        return web.json_response(rows)

    async def _listener(self, request: web.Request) -> web.Response:
        conf = self.listeners.get(request.match_info["id"])
        if conf is None:
            body = {"code": "BAD_LISTENER_ID", "message": "Listener id not found"}
            return web.json_response(body, status=404)
        return web.json_response(conf)
