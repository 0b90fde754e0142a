"""EMQX's effective settings, checked: without the hook on the message path, isolation
rests on EMQX's own configuration, so the hook reads it through the REST API at start
and every EMQX_SETTINGS_CHECK_SECONDS, and while any setting is wrong it refuses every
CONNECT and reports unready, with a log line naming the setting.

What is read (EMQX 6.2.2 and 6.0.2 unless noted; each route's scope in its `scopes/0`):

- `GET /configs/global_zone` (`emqx_mgmt_api_configs.erl` `global_zone_configs/3`,
  `get_zones/0`: each zone root with defaults filled, so `mqtt` holds every field of
  `emqx_schema.erl` `mqtt_general()`; scope `system`): `mqtt.client_attrs_init`,
  `mqtt.clientid_override`, and `mqtt.namespace_as_mountpoint`, a field only since 6.1.0
  (its presence is how the version is told apart);
- `GET /authorization/settings` (`emqx_authz_api_settings.erl` `settings/2`,
  `authorization_settings/0`: `authz_fields()` with defaults; scope `access_control`):
  `no_match`, and `include_mountpoint` on 6.1+;
- `GET /authorization/sources` (`emqx_authz_api_sources.erl` `sources/2`:
  `{"sources": [...]}` in chain order; a file source's `path` is replaced by its `rules`
  text, `emqx_authz_file:read_files/1`; scope `access_control`): the first source must
  be our enabled file source, its rules exactly emqx-config's ACL for the version
  (comments and layout aside: EMQX's default acl.conf there would allow everything);
- `GET /listeners` then `GET /listeners/{id}` (`emqx_mgmt_api_listeners.erl`
  `list_listeners/2`, whose rows carry no mountpoint, and `crud_listeners_by_id/2`,
  `find_listeners_by_id/1`: the raw listener config with defaults, `mountpoint` ""
  when unset; scope `system`): every enabled listener's `mountpoint` and `enable_authn`.

`problems` is pure; `EmqxSettingsCheck` is the background task. A read that fails with
401/403 (a key without the `system` or `access_control` scope) is a problem; EMQX
unreachable keeps the last verdict (before the first successful read: a problem).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Self
from urllib.parse import quote

from exhook.emqx_api import EmqxApiError, EmqxAuthError
from tenants.tasks import BackgroundTask

log = logging.getLogger(__name__)

TNS_EXPRESSION = "substr(username, 0, 21)"
CLIENTID_OVERRIDE = "concat([username, '-', clientid])"
LISTENER_MOUNTPOINT = "${client_attrs.tns}/"
MAX_LISTENERS = 64
# The rules as the file spells them (in an Erlang string `\\` is one backslash).
_SCOPED = r'{deny, {username, {re, "^emqx-[0-9a-f]{16}\\.%s[0-9a-f]{7}\\z"}}, %s, all}.'
_OURS = r'{allow, {username, {re, "^emqx-[0-9a-f]{16}(\\.[psx][0-9a-f]{7})?\\z"}}, all, %s}.'
_CLAIMED = '{deny, {username, {re, "^emqx-[0-9a-f]{16}"}}, all, all}.'
ACL_RULES_61 = (
    _SCOPED % ("s", "publish"),
    _SCOPED % ("p", "subscribe"),
    _OURS % '["${client_attrs.tns}/#"]',
    _CLAIMED,
)
"""emqx-config/acl.conf's rules, as written (tests/test_emqx_acl.py checks the file)."""
ACL_RULES_60 = (*ACL_RULES_61[:2], _OURS % "all", _CLAIMED)
"""emqx-config/acl-6.0.conf's rules."""
RETRY_SECONDS = 2.0  # while something is wrong, look again this often


@dataclass(frozen=True, slots=True)
class Problem:
    """One setting that is not what Zero EMQX relies on."""

    setting: str
    detail: str

    def __str__(self) -> str:
        return f"{self.setting}: {self.detail}"


@dataclass(frozen=True, slots=True)
class EffectiveSettings:
    """The JSON bodies as EMQX returned them (untrusted: `problems` checks every shape)."""

    zone: Any
    authorization: Any
    sources: Any
    listeners: Mapping[str, Any]


def _field(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _has(data: Any, *path: str) -> bool:
    parent = _field(data, *path[:-1])
    return isinstance(parent, Mapping) and path[-1] in parent


def is_61_or_later(settings: EffectiveSettings) -> bool:
    """`mqtt.namespace_as_mountpoint` exists (defaults filled) from 6.1.0 on."""
    return _has(settings.zone, "mqtt", "namespace_as_mountpoint")


def _tns_attribute(zone: Any) -> Problem | None:
    attrs = _field(zone, "mqtt", "client_attrs_init")
    rows = attrs if isinstance(attrs, list) else []
    tns = [row for row in rows if _field(row, "set_as_attr") == "tns"]
    if len(tns) != 1 or _field(tns[0], "expression") != TNS_EXPRESSION:
        return Problem(
            "mqtt.client_attrs_init",
            f'must set tns once, with expression "{TNS_EXPRESSION}"',
        )
    return None


def acl_rules(text: str) -> tuple[str, ...]:
    """The rules of an ACL file, one normalised string each: `%` comments dropped (our
    rules hold no `%`), whitespace runs made one space, split after each `}.`."""
    lines = (line.split("%", 1)[0] for line in text.splitlines())
    flat = " ".join(" ".join(lines).split())
    return tuple(rule.strip() for rule in re.findall(r".*?\}\.(?= |$)", flat))


def _authorization(settings: EffectiveSettings, newer: bool) -> list[Problem]:
    found = []
    if _field(settings.authorization, "no_match") != "deny":
        found.append(Problem("authorization.no_match", "must be deny"))
    if newer and _field(settings.authorization, "include_mountpoint") is not True:
        found.append(
            Problem(
                "authorization.include_mountpoint",
                "must be true (the ACL allows only topics under the mounted namespace)",
            )
        )
    sources = _field(settings.sources, "sources")
    first = sources[0] if isinstance(sources, list) and sources else None
    if _field(first, "type") != "file" or _field(first, "enable") is not True:
        found.append(
            Problem(
                "authorization.sources",
                "the first source must be the enabled file source with emqx-config's ACL",
            )
        )
        return found
    rules = _field(first, "rules")
    wanted = ACL_RULES_61 if newer else ACL_RULES_60
    if not isinstance(rules, str) or acl_rules(rules) != wanted:
        name = "acl.conf" if newer else "acl-6.0.conf"
        found.append(
            Problem(
                "authorization.sources",
                f"the file source's rules must be emqx-config/{name}'s (EMQX read other rules)",
            )
        )
    return found


def _listeners(settings: EffectiveSettings, newer: bool) -> list[Problem]:
    by_namespace = newer and _field(settings.zone, "mqtt", "namespace_as_mountpoint") is True
    if newer and not by_namespace:
        return [Problem("mqtt.namespace_as_mountpoint", "must be true")]
    found = []
    for listener_id, conf in sorted(settings.listeners.items()):
        if _field(conf, "enable") is False:
            continue
        where = f"listeners.{listener_id.replace(':', '.')}"
        if _field(conf, "enable_authn") is False:
            found.append(Problem(f"{where}.enable_authn", "must not be false"))
        mountpoint = _field(conf, "mountpoint") or ""
        allowed = ("", LISTENER_MOUNTPOINT) if by_namespace else (LISTENER_MOUNTPOINT,)
        if mountpoint not in allowed:
            wanted = "empty" if by_namespace else f'"{LISTENER_MOUNTPOINT}"'
            found.append(Problem(f"{where}.mountpoint", f"must be {wanted}"))
    return found


def problems(settings: EffectiveSettings) -> tuple[Problem, ...]:
    """Every setting that is not what emqx-config/ says, for the version the answers
    show (6.0: listener mountpoints; 6.1+: namespace_as_mountpoint, include_mountpoint)."""
    newer = is_61_or_later(settings)
    found: list[Problem] = []
    tns = _tns_attribute(settings.zone)
    if tns is not None:
        found.append(tns)
    if _field(settings.zone, "mqtt", "clientid_override") != CLIENTID_OVERRIDE:
        found.append(Problem("mqtt.clientid_override", f'must be "{CLIENTID_OVERRIDE}"'))
    found += _authorization(settings, newer)
    found += _listeners(settings, newer)
    return tuple(found)


class ConfigSource(Protocol):
    """The read-only slice of EMQX's REST API the check uses (HttpxEmqxApi.get_json)."""

    async def get_json(self, path: str, what: str) -> Any: ...


async def read_settings(source: ConfigSource) -> EffectiveSettings:
    zone = await source.get_json("/configs/global_zone", "read the global zone settings")
    authorization = await source.get_json(
        "/authorization/settings", "read the authorization settings"
    )
    sources = await source.get_json("/authorization/sources", "list the authorization sources")
    listing = await source.get_json("/listeners", "list the listeners")
    rows = listing if isinstance(listing, list) else []
    ids = [row["id"] for row in rows if isinstance(_field(row, "id"), str)][:MAX_LISTENERS]
    listeners = {
        listener_id: await source.get_json(
            f"/listeners/{quote(listener_id, safe='')}", f"read listener {listener_id}"
        )
        for listener_id in ids
    }
    return EffectiveSettings(zone, authorization, sources, listeners)


NOT_CHECKED = (Problem("emqx", "EMQX's settings have not been read yet"),)


class EmqxSettingsCheck(BackgroundTask):
    """`async with EmqxSettingsCheck(api, interval=...)`: checks once on entry (at load),
    then every `interval` seconds (every RETRY_SECONDS while something is wrong)."""

    task_name = "emqx-settings-check"

    def __init__(self, source: ConfigSource, *, interval: float) -> None:
        self._source = source
        self.interval = interval
        self.problems: tuple[Problem, ...] = NOT_CHECKED
        self.checks = 0
        self._read_once = False

    @property
    def ok(self) -> bool:
        return not self.problems

    async def check(self) -> tuple[Problem, ...]:
        """Read and judge EMQX's settings now; the problems found (also kept)."""
        self.checks += 1
        try:
            found = problems(await read_settings(self._source))
        except EmqxAuthError as exc:
            found = (Problem("EMQX_API_KEY", str(exc)),)
        except EmqxApiError as exc:
            if self._read_once:
                log.warning("cannot read EMQX's settings, keeping the last verdict: %s", exc)
                return self.problems
            found = (Problem("emqx", f"cannot read EMQX's settings: {exc}"),)
        except Exception as exc:  # a body we cannot judge is a wrong setting, not a crash
            log.exception("checking EMQX's settings failed")
            found = (Problem("emqx", f"cannot judge EMQX's settings: {type(exc).__name__}"),)
        else:
            self._read_once = True
        self._record(found)
        return found

    def _record(self, found: tuple[Problem, ...]) -> None:
        if found != self.problems:
            if found:
                for problem in found:
                    log.error("EMQX setting %s; refusing every CONNECT until fixed", problem)
            elif self.problems is not NOT_CHECKED:
                log.info("EMQX's settings are right again: admitting CONNECTs")
        self.problems = found

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval if self.ok else min(self.interval, RETRY_SECONDS))
            await self.check()

    async def __aenter__(self) -> Self:
        await self.check()  # the first answer is there before any CONNECT
        return await super().__aenter__()
