"""What a watcher sees: label selectors, committed events, and how one event is written
to one watch stream (selector transitions, bookmarks), as the API server's watch cache
does it (k8s.io/apiserver pkg/storage/cacher/cache_watcher.go `convertToWatchEvent`:
an object entering the selection is ADDED, one leaving it DELETED with its previous
state; BOOKMARK events carry only a resourceVersion)."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.kubernetes_status import Obj


@dataclass(frozen=True)
class Selector:
    """A label selector: `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-joined (all must hold)."""

    requirements: tuple[tuple[str, str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Selector:
        found: list[tuple[str, str, str]] = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "!=" in part:
                key, value = part.split("!=", 1)
                found.append(("!=", key.strip(), value.strip()))
            elif "=" in part:
                key, value = part.replace("==", "=", 1).split("=", 1)
                found.append(("=", key.strip(), value.strip()))
            elif part.startswith("!"):
                found.append(("!", part[1:].strip(), ""))
            else:
                found.append(("exists", part, ""))
        return cls(tuple(found))

    def matches(self, obj: Mapping[str, Any] | None) -> bool:
        if obj is None:
            return False
        labels = obj.get("metadata", {}).get("labels") or {}
        for op, key, value in self.requirements:
            ok = {
                "=": labels.get(key) == value,
                "!=": labels.get(key) != value,
                "exists": key in labels,
                "!": key not in labels,
            }[op]
            if not ok:
                return False
        return True


@dataclass(frozen=True)
class Event:
    """One committed change. `previous` is the object before it (None for a creation)."""

    revision: int
    type: str  # ADDED | MODIFIED | DELETED
    object: Obj
    previous: Obj | None


@dataclass(eq=False)
class Watcher:
    selector: Selector
    bookmarks: bool
    queue: asyncio.Queue[Event | int | None] = field(default_factory=asyncio.Queue)


def bookmark(revision: int) -> Obj:
    return {
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": str(revision), "creationTimestamp": None},
    }


def line(kind: str, obj: Obj) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


async def send(response: web.StreamResponse, event: Event, selector: Selector) -> None:
    """Write `event` as this watcher sees it: selector transitions become ADDED/DELETED."""
    now, before = selector.matches(event.object), selector.matches(event.previous)
    if event.type == "DELETED":
        kind = "DELETED" if before else None
        obj = event.object
    elif now:
        kind = "MODIFIED" if before else "ADDED"
        obj = event.object
    elif before:  # it left the selection: the previous state, at this event's revision
        kind = "DELETED"
        obj = copy.deepcopy(event.previous or {})
        obj["metadata"]["resourceVersion"] = str(event.revision)
    else:
        kind = None
    if kind is not None:
        await response.write(line(kind, obj))
