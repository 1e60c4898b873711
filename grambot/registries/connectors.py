"""Connectors: chat transports (Telegram, the console). Incoming messages reach the engine as
`connector.message` events emitted through the instance's `api.events`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from grambot.registries.base import Registry

CONNECTOR_MESSAGE = "connector.message"


@dataclass(frozen=True)
class Attachment:
    """A file that came with an incoming message or goes out with a reply."""

    path: Path
    mime_type: str = "application/octet-stream"
    name: str | None = None


@dataclass(frozen=True)
class IncomingMessage:
    """The payload of a `connector.message` event."""

    connector_id: str
    chat_id: str
    sender: str
    text: str
    message_id: str | None = None
    attachments: tuple[Attachment, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Connector(Protocol):
    """A chat transport, registered in `load()`. `start()` begins delivering incoming messages
    (idempotent; the engine calls it once the reconcile that loaded the instance is done, so
    early messages never race the providers' loads) and `stop()` ends that promptly. Each
    incoming message is emitted as a `connector.message` event whose payload is an
    `IncomingMessage`. `send_message` splits text to the transport's limits and raises
    `grambot.ServiceError` when the transport fails."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_message(
        self,
        chat_id: str,
        text: str,
        *,
        files: Sequence[Attachment] = (),
        reply_to: str | None = None,
    ) -> None: ...


class ConnectorRegistry(Registry[Connector]):
    kind = "connector"
