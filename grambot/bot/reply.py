"""The reply: what goes back to a chat, the apologies a failure becomes, and the send through
the chat's connector (a connector gone or failing is logged, never raised)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from grambot.bot.context import BotContext
from grambot.bot.report import TurnStats
from grambot.errors import TurnFailed
from grambot.registries.connectors import Attachment, IncomingMessage
from grambot.registries.inference import ChatMessage

__all__ = ["UNEXPECTED", "Reply", "Sender", "TurnFailed", "apology"]

# the name these lines had when they came from the router (log filters may use it)
logger = logging.getLogger("grambot.bot.router")

UNEXPECTED = "Sorry, something went wrong; details are in the log."


def apology(failure: TurnFailed) -> str:
    return f"Sorry, {failure}"


@dataclass
class Reply:
    text: str
    files: list[Attachment] = field(default_factory=list)
    turns: list[ChatMessage] = field(default_factory=list)  # what the conversation gains
    stats: TurnStats = field(default_factory=TurnStats)  # for its log line (grambot.bot.report)


class Sender:
    def __init__(self, context: BotContext) -> None:
        self._context = context

    async def reply(self, message: IncomingMessage, reply: Reply) -> bool:
        """Send `reply` to the chat of `message`, as an answer to it."""
        return await self.send(
            message.connector_id, message.chat_id, reply.text, reply.files, message.message_id
        )

    async def send(
        self,
        connector_id: str,
        chat_id: str,
        text: str,
        files: list[Attachment] | None = None,
        reply_to: str | None = None,
    ) -> bool:
        """Send through the chat's connector; False (logged) when it is gone or failed."""
        connectors = self._context.registries.connectors
        connector = connectors.get(connector_id)
        if connector is None:
            logger.error("bot: connector %s is gone; reply dropped", connector_id)
            return False
        owner = connectors.owner_of(connector_id)
        try:
            await connector.send_message(chat_id, text, files=tuple(files or ()), reply_to=reply_to)
        except Exception as exc:
            self._context.log_failure(f"connector {connector_id} sending the reply", owner, exc)
            return False
        return True
