"""Message routing: a message in the inbox becomes a reply in the same chat.

    connector ──api.inbox.accept──► Inbox (durable) ──wake──► chat worker (grambot.bot.workers)
    connector.message event ──────► (at most once: accepted when the event is handled)
    worker: claim + history ─► turn (model + tools, or a command) ─► mark_sending ─► send
            ─► done + conversation + the next claim and its history (one transaction) ─► …

Each chat's worker answers its messages in order; chats do not wait for each other. A message is
at least once in (accepted before upstream is acknowledged; a turn cut by a restart is handled
again) and at most once out (marked `sending` durably before the reply goes out; one found
`sending` at start is `uncertain` and never resent). The conversation is written after the
reply, off the event loop (grambot.storage).

The turn is grambot.bot.turn's (a command's: grambot.bot.commands), the send
grambot.bot.reply's. Every failure becomes a short apology naming what failed and a logged
traceback without the failing instance's secrets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from grambot.bot.commands import Commands
from grambot.bot.context import BotContext, Redactor
from grambot.bot.conversations import import_legacy, legacy_part
from grambot.bot.counts import InboxCounts
from grambot.bot.images import Images
from grambot.bot.prompt import SystemPrompt
from grambot.bot.reminders import Reminders
from grambot.bot.reply import UNEXPECTED, Reply, Sender
from grambot.bot.report import log_handled
from grambot.bot.turn import ModelTurn
from grambot.bot.workers import Chat, ChatWorkers, Served
from grambot.config.settings import AgentSettings
from grambot.containment.boundary import engine_cancelled, format_details
from grambot.registries import Registries
from grambot.registries.connectors import CONNECTOR_MESSAGE, Attachment, IncomingMessage
from grambot.registries.inference import ChatMessage
from grambot.scheduling import Scheduler
from grambot.storage.base import Finished, InboxEntry
from grambot.storage.sqlite_storage import SqliteStorage

logger = logging.getLogger(__name__)


class Bot:
    """Routing: which chat a message belongs to, the chat's worker, the inbox around a turn."""

    def __init__(
        self,
        registries: Registries,
        storage: SqliteStorage,
        agent_settings: Callable[[], AgentSettings],
        redact: Redactor | None = None,
        *,
        scheduler: Scheduler | None = None,
        legacy_dir: Path | None = None,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registries = registries
        self.inbox = storage.inbox
        self.conversations = storage.conversations
        self.turns = storage.turns
        self.context = BotContext(
            registries, storage.conversations, storage.kv, agent_settings, clock, redact
        )
        self._legacy_dir = legacy_dir
        self.workers = ChatWorkers(self._serve, lambda: self.context.agent().chat_idle_seconds)
        self.counts = InboxCounts(
            storage.inbox, storage.schedule, on_change, self._spawn, lambda: self.workers.stopping
        )
        self.sender = Sender(self.context)
        images = Images(self.context)
        self.reminders = Reminders(self.context, self.sender, scheduler)
        self.turn = ModelTurn(
            self.context, images, self.reminders, SystemPrompt(self.reminders.zone_of, clock)
        )
        self.commands = Commands(self.context, images, self.reminders, self.turn)
        self.resumed = False
        self._kick: asyncio.Handle | None = None
        self._background: set[asyncio.Task[Any]] = set()  # ended by stop(): the db closes next
        self._renamed: set[Chat] = set()
        self.log_messages = False  # `grambot run --log-messages`: texts in each message's line

    # -- wiring --------------------------------------------------------------------------------

    async def on_event(self, event: Any) -> None:
        """Handler for `connector.message` events (at most once: the connector acknowledged
        upstream already): into the inbox, never deduplicated."""
        message = incoming_message(event.payload, default_connector=event.instance_id)
        if message is None:
            logger.warning("event %s: connector.message without chat id or text; ignored", event.id)
            return
        await self.inbox.accept(message, dedupe=False)
        self.wake(message.connector_id, message.chat_id)

    def wake(self, connector_id: str, chat_id: str) -> None:
        """A message of this chat is in the inbox (api.inbox.accept calls this)."""
        if self.resumed:
            self.workers.wake((connector_id, chat_id))
            self.counts.refresh_soon()

    async def recover(self) -> None:
        """At start, before any connector runs: turns cut by the last stop are handled again;
        replies that may have gone out are marked uncertain (never resent)."""
        uncertain = await self.inbox.recover()
        self.counts.uncertain_at_start = len(uncertain)
        for entry in uncertain:
            m = entry.message
            logger.warning(
                "bot: the reply to message %s of chat %s/%s may or may not have been sent when "
                "the engine stopped; marked uncertain, not sent again",
                m.message_id,
                m.connector_id,
                m.chat_id,
            )

    async def resume(self) -> None:
        """After the first reconcile: import old conversation files, then answer what waits."""
        if self._legacy_dir is not None:
            try:
                await import_legacy(self._legacy_dir, self.conversations, self.context.keep())
            except OSError as exc:
                logger.error("bot: importing the old conversation files failed: %s", exc)
        self.resumed = True
        await self.reminders.resume()
        await self._wake_pending()

    def kick(self) -> None:
        """Instances changed (a connector may be back): look for chats waiting for it."""
        stopping = self.workers.stopping
        if self.counts.notifying or not self.resumed or stopping or self._kick is not None:
            return

        def run() -> None:
            self._kick = None
            self._spawn(self._wake_pending())

        self._kick = asyncio.get_running_loop().call_soon(run)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)

    async def _wake_pending(self) -> None:
        for connector_id, chat_id in await self.inbox.pending_chats():
            if connector_id in self.registries.connectors:
                self.workers.wake((connector_id, chat_id))
        await self.counts.refresh()

    async def stop(self, deadline: float = 5.0) -> None:
        """Stop taking messages; turns in progress may finish within `deadline`; the rest stays
        in the inbox for the next start."""
        cut = await self.workers.stop(deadline)
        if cut:
            logger.warning(
                "bot: %d chat(s) still busy at shutdown were cut; their messages stay in the "
                "inbox and are answered at the next start",
                cut,
            )
        self.counts.stop()
        if self._kick is not None:
            self._kick.cancel()
        self._kick = None
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(self._background, timeout=1.0)
        await self.reminders.stop()

    def status(self) -> dict[str, Any]:
        """For status.json: the inbox by state (as last counted), the uncertain replies found
        at start, the chats being answered."""
        return self.counts.status(len(self.workers))

    @property
    def stored_jobs(self) -> int:
        """Scheduled jobs in the database (every owner's), as last counted."""
        return self.counts.stored_jobs

    def refresh_soon(self) -> None:
        """The inbox or the jobs changed: count them again shortly (at most every 0.25 s)."""
        self.counts.refresh_soon()

    # -- one chat ------------------------------------------------------------------------------

    async def _serve(self, chat: Chat) -> Served:
        """Answer the chat's waiting messages in order. Between two replies, one round trip:
        the last message done with its conversation kept, and the next one claimed with its
        history (storage.ChatTurns)."""
        if chat[0] not in self.registries.connectors:
            return Served.GONE
        await self._rename_legacy(chat)
        finished: Finished | None = None
        while True:
            agent = self.context.agent()
            claim = not self.workers.stopping and chat[0] in self.registries.connectors
            entry, history = await self.turns.next_turn(
                *chat,
                finished=finished,
                claim=claim,
                history=agent.max_history,
                since=self.context.since(agent),
            )
            self.counts.refresh_soon()  # counted again shortly: claimed, done
            if entry is None:
                return Served.EMPTY if chat[0] in self.registries.connectors else Served.GONE
            finished = await self._answer(chat, entry, history)

    async def _answer(self, chat: Chat, entry: InboxEntry, history: list[ChatMessage]) -> Finished:
        """Reply to `entry`: the turn, then `sending` (durably) and the send. What is left to
        record (done, the conversation) goes with the chat's next step."""
        message = entry.message
        started = time.monotonic()
        try:
            reply = await self.respond(message, entry, history)
        except BaseException as exc:
            if engine_cancelled(exc):
                raise
            logger.error(
                "bot: chat %s/%s: unexpected failure",
                *chat,
                extra={"event": "bot.failed", "chat": chat[1], "details": format_details(exc)},
            )
            del exc
            reply = Reply(UNEXPECTED)
        await self.inbox.mark_sending(entry.id)
        self.workers.sending.add(chat)
        try:
            sent = await self.sender.reply(message, reply)
        finally:
            self.workers.sending.discard(chat)
        log_handled(
            message,
            reply.stats,
            started=started,
            accepted_at=entry.accepted_at,
            sent=sent,
            reply=reply.text,
            with_texts=self.log_messages,
        )
        return Finished(entry.id, tuple(reply.turns), self.context.keep())

    async def respond(
        self,
        message: IncomingMessage,
        entry: InboxEntry | None = None,
        history: list[ChatMessage] | None = None,
    ) -> Reply:
        """The reply to one message: a command's, or the model's."""
        command = await self.commands.run(message, entry)
        if command is not None:
            name = message.text.strip().partition(" ")[0]
            command.stats.command = name[1:] if name.startswith("/") else name
            return command
        if history is None:
            history = await self.history(message.connector_id, message.chat_id)
        return await self.turn.converse(message, self.context.agent(), entry, history)

    # -- conversation --------------------------------------------------------------------------

    async def history(self, connector_id: str, chat_id: str) -> list[ChatMessage]:
        """The chat's recent history."""
        await self._rename_legacy((connector_id, chat_id))
        agent = self.context.agent()
        return await self.conversations.load(
            connector_id, chat_id, limit=agent.max_history, since=self.context.since(agent)
        )

    async def _rename_legacy(self, chat: Chat) -> None:
        """Once per chat the old file store knew under hashed names: its messages (imported
        under those names) move to the chat's real ids."""
        if chat in self._renamed or (legacy_part(chat[0]), legacy_part(chat[1])) == chat:
            return
        self._renamed.add(chat)
        await self.conversations.rename((legacy_part(chat[0]), legacy_part(chat[1])), chat)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("bot: background work failed", exc_info=task.exception())


def incoming_message(payload: Any, *, default_connector: str) -> IncomingMessage | None:
    """A `connector.message` payload (an IncomingMessage or a camel/snake-case dict)."""
    if isinstance(payload, IncomingMessage):
        return payload
    if not isinstance(payload, Mapping):
        return None

    def pick(*keys: str) -> Any:
        for key in keys:
            if payload.get(key) is not None:
                return payload[key]
        return None

    chat_id, text = pick("chat_id", "chatId"), pick("text")
    if chat_id is None or text is None:
        return None
    message_id = pick("message_id", "messageId")
    attachments = tuple(
        a if isinstance(a, Attachment) else Attachment(path=Path(str(a.get("path", ""))))
        for a in (pick("attachments") or ())
        if isinstance(a, Attachment | Mapping)
    )
    return IncomingMessage(
        connector_id=str(pick("connector_id", "connectorId") or default_connector),
        chat_id=str(chat_id),
        sender=str(pick("sender") or ""),
        text=str(text),
        message_id=None if message_id is None else str(message_id),
        attachments=attachments,
    )


__all__ = ["CONNECTOR_MESSAGE", "Bot", "incoming_message"]
