"""The Connector contract once for the engine's own connector wrappers (the guard around a
plugin's object, the proxy to an isolated child's): each says only how it forwards a call."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from grambot.registries.connectors import Attachment

__all__ = ["ConnectorForwarder"]


class ConnectorForwarder(ABC):
    """`send_message` with the Protocol's signature, forwarded through `_forward`."""

    __slots__ = ()

    @abstractmethod
    async def _forward(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Call the connector's `method` the wrapper's own way."""

    async def send_message(
        self,
        chat_id: str,
        text: str,
        *,
        files: Sequence[Attachment] = (),
        reply_to: str | None = None,
    ) -> None:
        # a tuple: what crosses the pipe, and what the bot already passes
        await self._forward("send_message", chat_id, text, files=tuple(files), reply_to=reply_to)
