"""The gRPC side of `emqx.exhook.v3.HookProvider`: the service's RPCs read from the
proto, their registration on a grpc.aio server, lenient decoding of the requests whose
answer admits or refuses, and the answers of the hooks we never register.

An undecodable request (a string field that is not UTF-8) becomes `UNDECODABLE`, so the
handler answers it with an explicit deny instead of gRPC failing the call (which EMQX
would treat by `failed_action`, with no reason logged on our side).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from exhook.wire import exhook_pb2 as pb

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE_NAME = "emqx.exhook.v3.HookProvider"
EMPTY_ANSWER = pb.EmptySuccess()
IGNORE_ANSWER = pb.ValuedResponse(type=pb.ValuedResponse.IGNORE)


class Undecodable:
    """A request protobuf refused to decode (a string field that is not valid UTF-8)."""

    __slots__ = ()


UNDECODABLE = Undecodable()


def lenient(message: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    """A request deserializer that returns UNDECODABLE instead of raising, so that the
    handler can answer it (an explicit deny) rather than gRPC failing the call."""

    def decode(data: bytes) -> Message | Undecodable:
        try:
            return message.FromString(data)
        except DecodeError:
            return UNDECODABLE

    return decode


class UnregisteredHooks:
    """Cheap answers for the hooks we never register, in case EMQX calls anyway."""

    async def OnProviderUnloaded(
        self, request: pb.ProviderUnloadedRequest, context: Context
    ) -> pb.EmptySuccess:
        log.info("provider unloaded by EMQX on %s", request.meta.node)
        return EMPTY_ANSWER

    async def OnClientConnect(self, request: Any, context: Context) -> pb.EmptySuccess:
        return EMPTY_ANSWER

    async def OnClientConnack(self, request: Any, context: Context) -> pb.EmptySuccess:
        return EMPTY_ANSWER

    async def OnClientConnected(self, request: Any, context: Context) -> pb.EmptySuccess:
        return EMPTY_ANSWER

    async def OnClientDisconnected(self, request: Any, context: Context) -> pb.EmptySuccess:
        return EMPTY_ANSWER

    async def OnClientSubscribe(self, request: Any, context: Context) -> pb.EmptySuccess:
        return EMPTY_ANSWER

    async def OnClientUnsubscribe(self, request: Any, context: Context) -> pb.EmptySuccess:
        return EMPTY_ANSWER

    async def OnSessionCreated(self, request: Any, context: Context) -> pb.EmptySuccess:
        return EMPTY_ANSWER

    async def OnSessionSubscribed(self, request: Any, context: Context) -> pb.EmptySuccess:
        return EMPTY_ANSWER

    async def OnSessionUnsubscribed(self, request: Any, context: Context) -> pb.EmptySuccess:
        return EMPTY_ANSWER

    async def OnSessionResumed(self, request: Any, context: Context) -> pb.EmptySuccess:
        return EMPTY_ANSWER

    async def OnSessionDiscarded(self, request: Any, context: Context) -> pb.EmptySuccess:
        return EMPTY_ANSWER

    async def OnSessionTakenover(self, request: Any, context: Context) -> pb.EmptySuccess:
        return EMPTY_ANSWER

    async def OnSessionTerminated(self, request: Any, context: Context) -> pb.EmptySuccess:
        return EMPTY_ANSWER

    async def OnClientAuthorize(self, request: Any, context: Context) -> pb.ValuedResponse:
        # EMQX's own authorizer (emqx_authz, priority 960) runs before any ExHook (100):
        # were this called, no source matched, and ignoring leaves `no_match = deny`.
        return IGNORE_ANSWER

    async def OnMessagePublish(self, request: Any, context: Context) -> pb.ValuedResponse:
        return IGNORE_ANSWER  # the message goes on unchanged

    async def OnMessageDelivered(self, request: Any, context: Context) -> pb.EmptySuccess:
        return EMPTY_ANSWER

    async def OnMessageDropped(self, request: Any, context: Context) -> pb.EmptySuccess:
        return EMPTY_ANSWER

    async def OnMessageAcked(self, request: Any, context: Context) -> pb.EmptySuccess:
        return EMPTY_ANSWER


_LENIENT = frozenset({"OnClientAuthenticate", "OnClientAuthorize"})
"""The calls whose answer admits or refuses: an undecodable request gets an answer."""


def rpc_types() -> dict[str, tuple[type[Message], type[Message]]]:
    """Every RPC of the service, read from the proto itself: name -> (request, response)."""
    service = pb.DESCRIPTOR.services_by_name["HookProvider"]
    return {
        method.name: (getattr(pb, method.input_type.name), getattr(pb, method.output_type.name))
        for method in service.methods
    }


def add_to_server(provider: object, server: grpc.aio.Server) -> None:
    """Register every RPC of `emqx.exhook.v3.HookProvider` (what the generated
    `add_HookProviderServicer_to_server` does, without its untyped code)."""
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(provider, name),
            request_deserializer=(lenient(request) if name in _LENIENT else request.FromString),
            response_serializer=response.SerializeToString,
        )
        for name, (request, response) in rpc_types().items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
