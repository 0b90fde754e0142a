"""A test client that plays EMQX 6 against a real ExHook port.

It speaks `emqx.exhook.v3.HookProvider` over a grpc.aio channel, fills the requests the
way EMQX's `emqx_exhook_handler` does (`emqx_exhook_handler.erl`, tag 6.2.2), and reads the
answers the way EMQX reads them (`merge_responsed_bool/2`, `ret/1`): IGNORE, or a type
without `bool_result`, is "ignore"; otherwise the boolean is the verdict.

What EMQX does to the client's data before asking (our emqx-config):
- `mqtt.client_attrs_init` sets `tns = substr(username, 0, 21)` (the instance id, also
  for a scoped credential `<instance id>.<r><7 hex>`);
- `mqtt.clientid_override = concat([username, '-', clientid])`, so the hook sees
  `<username>-<client's own id>`;
- at `client.authenticate` the mountpoint is not resolved yet: `""` on 6.1+
  (`namespace_as_mountpoint`), the raw listener template on 6.0.

A PUBLISH or SUBSCRIBE is decided the way EMQX decides it (`emqx_access_control.erl`
`authorize/3`): our file ACL first (emqx-config/acl.conf on 6.1+ with the mounted topic
`<tns>/t`, acl-6.0.conf on 6.0 with the client's topic; evaluated by tests/emqx_acl.py,
the shared subscription's real topic `$share/g/t` -> `t`, `$delayed/<n>/t` -> `t`), the
hook only if it registered `client.authorize` and no rule matched, and then
`message.publish` only if registered. `calls` counts every RPC made to the hook.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exhook.emqx_settings import EmqxSettingsCheck
from exhook.server import Attachment, ExhookRuntime
from exhook.service import Clock, utc_clock
from exhook.settings import ExhookSettings
from exhook.verifier import VerifyFn
from exhook.wire import exhook_pb2 as pb
from tenants.hashing import verify_password
from tenants.store import TenantStore
from tests.emqx_acl import Action, Client, authorize, load_rules, match
from tests.test_emqx_config import ACL_FILE_60, ACL_FILE_61

SERVICE = "emqx.exhook.v3.HookProvider"
LISTENER_TEMPLATE_60 = "${client_attrs.tns}/"  # 6.0's listener mountpoint, unrendered at authn
R = TypeVar("R", bound=Message)

ALLOW, DENY, IGNORE = "allow", "deny", "ignore"


@dataclass(frozen=True)
class Answer:
    """A ValuedResponse as EMQX reads it."""

    type: int
    value: bool | None

    @classmethod
    def of(cls, response: pb.ValuedResponse) -> Answer:
        value = response.bool_result if response.WhichOneof("value") == "bool_result" else None
        return cls(response.type, value)

    @property
    def verdict(self) -> str:
        if self.type == pb.ValuedResponse.IGNORE or self.value is None:
            return IGNORE
        return ALLOW if self.value else DENY

    @property
    def explicit(self) -> bool:
        """STOP_AND_RETURN with the boolean set: the only form we ever want to allow/deny with."""
        return self.type == pb.ValuedResponse.STOP_AND_RETURN and self.value is not None


ACL_61 = load_rules(ACL_FILE_61)
ACL_60 = load_rules(ACL_FILE_60)


def real_topic(topic: str) -> str:
    """The topic EMQX authorizes for a client topic: a shared subscription's real topic
    (`emqx_channel.erl`), `$delayed/<n>/t` -> `t` (`emqx_access_control:authorize/3`)."""
    share = re.match(r"^\$(?:share/[^/]+|queue)/(.*)$", topic)
    if share:
        topic = share[1]
    delayed = re.match(r"^\$delayed/[^/]+/(.*)$", topic)
    if delayed:
        topic = delayed[1]
    return topic


def at_least_61(version: str) -> bool:
    major_minor = re.match(r"^[ve]?(\d+)\.(\d+)", version)
    return major_minor is None or (int(major_minor[1]), int(major_minor[2])) >= (6, 1)


def tns_of(username: str) -> str:
    """`substr(username, 0, 21)`: EMQX's namespace for a username (emqx-config/)."""
    return username[:21]


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


class FakeEmqx:
    """One EMQX node's gRPC client for one ExHook server."""

    def __init__(
        self,
        target: str,
        *,
        version: str = "6.2.2",
        node: str = "emqx@127.0.0.1",
        request_timeout: float = 5.0,
        root_certificates: bytes | None = None,
        server_name: str | None = None,
    ) -> None:
        self.target = target
        self.version = version
        self.calls: Counter[str] = Counter()  # RPCs made to the hook, by method
        self.registered: frozenset[str] = frozenset()  # hook names from the last load()
        # Our file ACL is the authorization source (False: no source at all, the
        # pre-issue-10 emqx-config with `sources = []`, for the benchmark's baseline).
        self.file_source = True
        self.node = node
        self.request_timeout = request_timeout
        if root_certificates is None:
            self.channel = grpc.aio.insecure_channel(target)
        else:
            options = (
                [] if server_name is None else [("grpc.ssl_target_name_override", server_name)]
            )
            credentials = grpc.ssl_channel_credentials(root_certificates)
            self.channel = grpc.aio.secure_channel(target, credentials, options=options)

    async def __aenter__(self) -> FakeEmqx:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    def meta(self, version: str | None = None) -> pb.RequestMeta:
        return pb.RequestMeta(
            node=self.node,
            version=self.version if version is None else version,
            sysdescr="EMQX",
            cluster_name="emqxcl",
        )

    async def call(
        self, method: str, request: Message, response_type: type[R], timeout: float | None = None
    ) -> R:
        self.calls[method] += 1
        rpc = self.channel.unary_unary(
            f"/{SERVICE}/{method}",
            request_serializer=_serialize,
            response_deserializer=response_type.FromString,
        )
        response: R = await rpc(request, timeout=timeout or self.request_timeout)
        return response

    async def call_raw(self, method: str, payload: bytes) -> bytes:
        """Send already-serialized bytes (for inputs a typed message cannot hold)."""
        self.calls[method] += 1
        rpc: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]
        rpc = self.channel.unary_unary(f"/{SERVICE}/{method}")
        result: bytes = await rpc(payload, timeout=self.request_timeout)
        return result

    async def load(self) -> list[str]:
        """OnProviderLoaded: the hook names EMQX would register."""
        request = pb.ProviderLoadedRequest(
            broker=pb.BrokerInfo(
                version=self.version, sysdescr="EMQX", uptime=1000, datetime="2026-01-01 00:00:00"
            ),
            meta=self.meta(),
        )
        response = await self.call("OnProviderLoaded", request, pb.LoadedResponse)
        names = [hook.name for hook in response.hooks]
        self.registered = frozenset(names)
        return names

    async def authenticate_info(
        self, clientinfo: pb.ClientInfo, *, chain_result: bool = False, timeout: float | None = None
    ) -> Answer:
        """OnClientAuthenticate with a ClientInfo as given. `chain_result` is what the
        authn chain decided before us (False: our empty built-in-database authenticator)."""
        request = pb.ClientAuthenticateRequest(
            clientinfo=clientinfo, result=chain_result, meta=self.meta()
        )
        response = await self.call(
            "OnClientAuthenticate", request, pb.ValuedResponse, timeout=timeout
        )
        return Answer.of(response)

    def clientinfo(self, username: str, clientid: str, *, password: str = "") -> pb.ClientInfo:
        parsed = re.match(r"^[ve]?(\d+)\.(\d+)", self.version)
        mounted_at_authn = parsed is not None and (int(parsed[1]), int(parsed[2])) < (6, 1)
        return pb.ClientInfo(
            node=self.node,
            clientid=clientid,
            username=username,
            password=password,
            peerhost="127.0.0.1",
            sockport=1883,
            peerport=50000,
            protocol="mqtt",
            mountpoint=LISTENER_TEMPLATE_60 if mounted_at_authn else "",
        )

    async def connect(
        self,
        username: str,
        password: str,
        client_id: str = "sensor-1",
        *,
        override: bool = True,
        timeout: float | None = None,
    ) -> Answer:
        """A CONNECT as EMQX asks about it: `override` applies clientid_override."""
        clientid = f"{username}-{client_id}" if override else client_id
        info = self.clientinfo(username, clientid, password=password)
        return await self.authenticate_info(info, timeout=timeout)

    def client(
        self, username: str, client_id: str = "sensor-1", *, mountpoint: str | None = None
    ) -> Client:
        """The clientinfo EMQX's authorizer sees after authentication: tns, the client id
        `<username>-<own id>`, the mountpoint `<tns>/` (or `mountpoint`; "" for none)."""
        tns = tns_of(username)
        mounted = f"{tns}/" if mountpoint is None else (mountpoint or None)
        return Client(username, f"{username}-{client_id}", {"tns": tns}, mounted)

    def acl(
        self,
        username: str,
        topic: str,
        *,
        action: Action = "publish",
        mountpoint: str | None = None,
        version: str | None = None,
    ) -> str:
        """What EMQX's authorizer answers for a client topic with our emqx-config for
        `version` (no_match = deny), without any hook."""
        newer = at_least_61(self.version if version is None else version)
        rules = ACL_61 if newer else ACL_60
        found = authorize(
            rules,
            self.client(username, mountpoint=mountpoint),
            action,
            real_topic(topic),
            include_mountpoint=newer,
        )
        return ALLOW if found == "allow" else DENY

    async def publish(self, username: str, topic: str, *, client_id: str = "sensor-1") -> str:
        """A PUBLISH as EMQX handles it with the hooks registered at load(): the file ACL,
        then `client.authorize` only when no rule matched and the hook registered it,
        then `message.publish` only when registered. Returns the authorization verdict."""
        newer = at_least_61(self.version)
        client = self.client(username, client_id)
        shown = real_topic(topic)
        if newer and client.mountpoint is not None:
            shown = client.mountpoint + shown
        rules = (ACL_61 if newer else ACL_60) if self.file_source else ()
        found = match(rules, client, "publish", shown)
        verdict = ALLOW if found == "allow" else DENY  # no_match = deny
        if found == "nomatch" and "client.authorize" in self.registered:
            info = self.clientinfo(username, client.clientid)
            info.mountpoint = client.mountpoint or ""
            request = pb.ClientAuthorizeRequest(
                clientinfo=info, type=pb.ClientAuthorizeRequest.PUBLISH, topic=shown
            )
            answer = Answer.of(await self.call("OnClientAuthorize", request, pb.ValuedResponse))
            verdict = ALLOW if answer.verdict == ALLOW else DENY
        if verdict == ALLOW and "message.publish" in self.registered:
            message = pb.Message(node=self.node, topic=shown, payload=b"x")
            request_ = pb.MessagePublishRequest(message=message, meta=self.meta())
            await self.call("OnMessagePublish", request_, pb.ValuedResponse)
        return verdict

    async def health(self, service: str = "") -> int:
        stub = health_pb2_grpc.HealthStub(self.channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        status: int = response.status
        return status


def exhook_settings(**overrides: Any) -> ExhookSettings:
    """Settings for an in-process server on free loopback ports."""
    base = ExhookSettings(
        addr=("127.0.0.1", 0),
        http_addr=("127.0.0.1", 0),
        verify_workers=2,
        shutdown_grace=1.0,
    )
    return replace(base, **overrides)


@asynccontextmanager
async def running_exhook(
    store: TenantStore,
    *,
    verify_fn: VerifyFn = verify_password,
    clock: Clock = utc_clock,
    synced: bool = True,
    version: str = "6.2.2",
    attach: Sequence[Attachment] = (),
    settings_check: EmqxSettingsCheck | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[ExhookRuntime, FakeEmqx]]:
    """The real runtime on `store` (with `attach`ed work such as the lifecycle, and the
    check of EMQX's settings when given) and an EMQX client connected to it."""
    async with ExhookRuntime(
        exhook_settings(**overrides),
        store,
        verify_fn=verify_fn,
        clock=clock,
        attach=attach,
        settings_check=settings_check,
    ) as runtime:
        if synced:
            assert await runtime.sync.wait_synced(10), "the index did not sync"
        async with FakeEmqx(f"127.0.0.1:{runtime.grpc_port}", version=version) as emqx:
            yield runtime, emqx


T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], expect: T, *, timeout: float = 1.0, interval: float = 0.02
) -> T:
    """Poll `probe` until it returns `expect` (then return it) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value == expect or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(interval)
