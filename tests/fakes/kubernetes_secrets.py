"""The Secrets of one namespace with the API server's semantics, without HTTP.

- one global, monotonically increasing resourceVersion; `uid`, `creationTimestamp`;
  a write that changes nothing does not bump it (k8s.io/apiserver
  pkg/storage/etcd3/store.go `GuaranteedUpdate` returns the current object unwritten);
- replace with a stale resourceVersion is a 409 Conflict (pkg/registry/generic/registry
  store.go `Update`, OptimisticLockErrorMsg); create of an existing name 409
  AlreadyExists; an unknown name 404 NotFound;
- objects validated as the API server validates Secrets (names, label values, data keys,
  base64 data, string labels and annotations: 400/422 Invalid);
- list with `labelSelector`, `limit` and opaque `continue` tokens served from the
  snapshot of the first page, 410 Expired once `compact()` dropped it (the message of
  k8s.io/apiserver pkg/storage/etcd3/errors.go `continueExpired`);
- retained events for watches; a watch from before the retained window is 410 Gone
  ("too old resource version", pkg/storage/cacher/watch_cache.go).
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import uuid
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tests.fakes.kubernetes_events import Event, Selector, Watcher
from tests.fakes.kubernetes_status import ApiError, Obj, invalid, not_found

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_DATA_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_IMMUTABLE_META = ("name", "namespace", "uid", "creationTimestamp")


class SecretsModel:
    """The stored Secrets, their history and the open watches' queues."""

    def __init__(self, namespace: str, *, retain_events: int = 1000) -> None:
        self.namespace = namespace
        self._retain = retain_events
        self._secrets: dict[str, Obj] = {}
        self._revision = 1
        self._events: deque[Event] = deque()
        self._compacted = 1  # a watch from a revision older than this gets 410
        self._snapshots: dict[int, list[Obj]] = {}
        self._watchers: set[Watcher] = set()

    @property
    def resource_version(self) -> str:
        return str(self._revision)

    def compact(self) -> None:
        """Forget the event history and list snapshots, as etcd compaction does."""
        self._events.clear()
        self._snapshots.clear()
        self._compacted = self._revision

    @property
    def watching(self) -> int:
        """How many watch streams are open."""
        return len(self._watchers)

    def end_watches(self) -> None:
        """End every watch stream cleanly, as the server does when timeoutSeconds is up."""
        for watcher in self._watchers:
            watcher.queue.put_nowait(None)

    def send_bookmarks(self) -> None:
        """Every watcher that asked for bookmarks gets one at the current revision."""
        for watcher in self._watchers:
            if watcher.bookmarks:
                watcher.queue.put_nowait(self._revision)

    # -- operator-style writes (the same code paths as HTTP) ------------------------

    def put_secret(self, manifest: Mapping[str, Any]) -> Obj:
        """Create or unconditionally replace a Secret, as `kubectl apply` would."""
        body = copy.deepcopy(dict(manifest))
        body.setdefault("metadata", {}).pop("resourceVersion", None)
        name = str(body["metadata"].get("name", ""))
        if name in self._secrets:
            return self.replace(self.namespace, name, body)
        return self.create(self.namespace, body)

    def patch(self, name: str, patch: Mapping[str, Any]) -> Obj:
        """A JSON merge patch, as `kubectl annotate` / `kubectl label` send."""
        return self.merge_patch(self.namespace, name, patch)

    def delete(self, name: str) -> bool:
        try:
            self.remove(self.namespace, name, None)
        except ApiError:
            return False
        return True

    def secret(self, name: str) -> Obj | None:
        found = self._secrets.get(name)
        return copy.deepcopy(found) if found is not None else None

    # -- the API's semantics ----------------------------------------------------------

    def create(self, namespace: str, body: Obj) -> Obj:
        if namespace != self.namespace:
            raise ApiError(
                404, f'namespaces "{namespace}" not found', name=namespace, kind="namespaces"
            )
        meta = body.get("metadata") or {}
        if meta.get("resourceVersion"):
            raise ApiError(400, "resourceVersion should not be set on objects to be created")
        obj = self._validated(namespace, body)
        name = obj["metadata"]["name"]
        if name in self._secrets:
            raise ApiError(
                409, f'secrets "{name}" already exists', "AlreadyExists", name=name, kind="secrets"
            )
        obj["metadata"]["uid"] = str(uuid.uuid4())
        obj["metadata"]["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._commit("ADDED", obj, None)

    def replace(self, namespace: str, name: str, body: Obj) -> Obj:
        current = self._current(namespace, name)
        meta = body.get("metadata") or {}
        if meta.get("name", name) != name:
            raise ApiError(400, "the name of the object does not match the name on the URL")
        wanted = meta.get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                f'Operation cannot be fulfilled on secrets "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
                name=name,
                kind="secrets",
            )
        obj = self._validated(namespace, body)
        for key in _IMMUTABLE_META:
            if key in current["metadata"]:
                obj["metadata"][key] = current["metadata"][key]
        if obj.get("type") != current.get("type"):
            raise invalid(name, "type", "field is immutable")
        return self._commit("MODIFIED", obj, current)

    def merge_patch(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Obj:
        current = self._current(namespace, name)
        merged = _merge(current, patch)
        merged["metadata"].setdefault("resourceVersion", current["metadata"]["resourceVersion"])
        for key in ("name", "namespace", "uid"):
            if merged["metadata"].get(key) != current["metadata"].get(key):
                raise invalid(name, f"metadata.{key}", "field is immutable")
        return self.replace(namespace, name, merged)

    def remove(self, namespace: str, name: str, preconditions: Mapping[str, Any] | None) -> Obj:
        current = self._current(namespace, name)
        wanted = (preconditions or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                f'Operation cannot be fulfilled on secrets "{name}": '
                "the ResourceVersion in the precondition does not match",
                name=name,
                kind="secrets",
            )
        self._commit("DELETED", copy.deepcopy(current), current)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "kind": "secrets", "uid": current["metadata"]["uid"]},
        }

    def list(self, namespace: str, selector: Selector, limit: int, token: str) -> Obj:
        if token:
            revision, start = _decode_continue(token)
            snapshot = self._snapshots.get(revision)
            if snapshot is None:
                raise ApiError(
                    410,
                    "The provided continue parameter is too old to display a "
                    "consistent list result. You can start a new list without "
                    "the continue parameter.",
                    "Expired",
                )
        else:
            revision, start = self._revision, ""
            snapshot = [self._secrets[name] for name in sorted(self._secrets)]
            if namespace != self.namespace:
                snapshot = []
        matching = [o for o in snapshot if o["metadata"]["name"] > start and selector.matches(o)]
        page = matching[:limit] if limit > 0 else matching
        metadata: Obj = {"resourceVersion": str(revision)}
        if len(page) < len(matching):
            self._snapshots[revision] = snapshot
            metadata["continue"] = _encode_continue(revision, page[-1]["metadata"]["name"])
            metadata["remainingItemCount"] = len(matching) - len(page)
        items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in page]
        return {"kind": "SecretList", "apiVersion": "v1", "metadata": metadata, "items": items}

    def _current(self, namespace: str, name: str) -> Obj:
        found = self._secrets.get(name) if namespace == self.namespace else None
        if found is None:
            raise not_found(name)
        return found

    def _validated(self, namespace: str, body: Obj) -> Obj:
        """A stored copy of `body`: checked like the API server does, defaults filled in."""
        obj = copy.deepcopy(body)
        if obj.get("kind", "Secret") != "Secret" or obj.get("apiVersion", "v1") != "v1":
            raise ApiError(400, "the body is not a v1 Secret")
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if meta.setdefault("namespace", namespace) != namespace:
            raise ApiError(
                400,
                "the namespace of the provided object does not match the "
                "namespace sent on the request",
            )
        if not isinstance(name, str) or not name:
            raise invalid("", "metadata.name", "Required value: name or generateName is required")
        if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
            raise invalid(
                name,
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC '
                "1123 subdomain must consist of lower case alphanumeric characters, "
                "'-' or '.', and must start and end with an alphanumeric character",
            )
        for kind in ("labels", "annotations"):
            values = meta.get(kind) or {}
            if not isinstance(values, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in values.items()
            ):
                raise ApiError(400, f"metadata.{kind} must map strings to strings")
        for key, value in (meta.get("labels") or {}).items():
            if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
                raise invalid(name, f"metadata.labels[{key}]", "Invalid value: not a label value")
        data = obj.get("data") or {}
        for key, value in (obj.pop("stringData", None) or {}).items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        for key, value in data.items():
            if not _DATA_KEY.fullmatch(key):
                raise invalid(name, f"data[{key}]", "Invalid value: not a valid config key")
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise ApiError(400, f"illegal base64 data in data[{key}]") from None
        if data:
            obj["data"] = data
        else:
            obj.pop("data", None)  # empty maps are omitted, as in the API server's JSON
        obj.setdefault("type", "Opaque")
        obj["kind"], obj["apiVersion"] = "Secret", "v1"
        return obj

    def _commit(self, kind: str, obj: Obj, previous: Obj | None) -> Obj:
        name = obj["metadata"]["name"]
        if kind == "MODIFIED" and previous is not None and _same(obj, previous):
            return copy.deepcopy(previous)  # a no-op write changes nothing, not even the RV
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        if kind == "DELETED":
            del self._secrets[name]
        else:
            self._secrets[name] = obj
        event = Event(self._revision, kind, obj, previous)
        self._events.append(event)
        while len(self._events) > self._retain:
            self._compacted = self._events.popleft().revision
        for watcher in self._watchers:
            watcher.queue.put_nowait(event)
        return copy.deepcopy(obj)


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(copy.deepcopy(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _same(a: Obj, b: Obj) -> bool:
    def strip(o: Obj) -> Obj:
        return {**o, "metadata": {k: v for k, v in o["metadata"].items() if k != "resourceVersion"}}

    return strip(a) == strip(b)


def _encode_continue(revision: int, start: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": start + "\x00"})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(raw["rv"]), str(raw["start"]).rstrip("\x00")
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ApiError(400, "continue key is not valid") from None
