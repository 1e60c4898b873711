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

A turn: the history (trimmed by count and size) goes to the inference provider with the tool
definitions; tool calls run through the ToolRegistry (results cut to `maxToolResultChars`), until
a final answer or the step limit. Every failure becomes a short apology naming what failed and a
logged traceback without the failing instance's secrets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grambot.bot.commands import Commands
from grambot.bot.conversations import cap_content, import_legacy, legacy_part, trim_history
from grambot.bot.report import TurnStats, log_handled
from grambot.bot.workers import Chat, ChatWorkers, Served
from grambot.config.settings import AgentSettings
from grambot.containment.boundary import engine_cancelled, format_details
from grambot.errors import CallCancelled
from grambot.registries import Registries
from grambot.registries.connectors import CONNECTOR_MESSAGE, Attachment, IncomingMessage
from grambot.registries.inference import (
    ChatMessage,
    InferenceProvider,
    InferenceRequest,
    ToolCall,
    ToolDefinition,
)
from grambot.registries.tools import ToolContext, ToolResult
from grambot.scheduling import Scheduler
from grambot.storage.base import Finished, InboxEntry
from grambot.storage.sqlite_storage import SqliteStorage

logger = logging.getLogger(__name__)

IMAGE_TOOL = "image_generate"
# (instance id, text) -> the text without that instance's secret values
Redactor = Callable[[str, str], str]


class TurnFailed(Exception):
    """A step of a turn failed; the message is safe to show in the chat."""


@dataclass
class Reply:
    text: str
    files: list[Attachment] = field(default_factory=list)
    turns: list[ChatMessage] = field(default_factory=list)  # what the conversation gains
    stats: TurnStats = field(default_factory=TurnStats)  # for its log line (grambot.bot.report)


class Bot:
    def __init__(
        self,
        registries: Registries,
        storage: SqliteStorage,
        agent_settings: Callable[[], AgentSettings],
        redact: Redactor | None = None,
        *,
        legacy_dir: Path | None = None,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registries = registries
        self.storage = storage
        self.inbox = storage.inbox
        self.conversations = storage.conversations
        self.turns = storage.turns
        self._redact = redact
        self._agent_settings = agent_settings
        self._legacy_dir = legacy_dir
        self._on_change = on_change
        self.clock = clock
        self.workers = ChatWorkers(self._serve, lambda: self._agent().chat_idle_seconds)
        self.commands = Commands(self)
        self.resumed = False
        self.uncertain_at_start = 0
        self.counts: dict[str, int] = {}  # open inbox entries per state, as last counted
        self.stored_jobs = 0  # scheduled jobs in the database, as last counted
        self._refresh: asyncio.TimerHandle | None = None
        self._kick: asyncio.Handle | None = None
        self._background: set[asyncio.Task[Any]] = set()  # ended by stop(): the db closes next
        self._renamed: set[Chat] = set()
        self._notifying = False
        self.scheduler: Scheduler | None = None  # set by the engine: reminders
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
            self.refresh_soon()

    async def recover(self) -> None:
        """At start, before any connector runs: turns cut by the last stop are handled again;
        replies that may have gone out are marked uncertain (never resent)."""
        uncertain = await self.inbox.recover()
        self.uncertain_at_start = len(uncertain)
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
                await import_legacy(self._legacy_dir, self.conversations, self._keep())
            except OSError as exc:
                logger.error("bot: importing the old conversation files failed: %s", exc)
        self.resumed = True
        await self.commands.resume()
        await self._wake_pending()

    def kick(self) -> None:
        """Instances changed (a connector may be back): look for chats waiting for it."""
        if self._notifying or not self.resumed or self.workers.stopping or self._kick is not None:
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
        await self._refresh_counts()

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
        for handle in (self._refresh, self._kick):
            if handle is not None:
                handle.cancel()
        self._refresh = self._kick = None
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(self._background, timeout=1.0)
        await self.commands.stop()

    def status(self) -> dict[str, Any]:
        """For status.json: the inbox by state (as last counted), the uncertain replies found
        at start, the chats being answered."""
        counts = self.counts
        return {
            "accepted": counts.get("accepted", 0),
            "handling": counts.get("handling", 0),
            "pending": counts.get("accepted", 0) + counts.get("handling", 0),
            "sending": counts.get("sending", 0),
            "uncertain": counts.get("uncertain", 0),
            "uncertainAtStart": self.uncertain_at_start,
            "activeChats": len(self.workers),
        }

    def refresh_soon(self) -> None:
        """The inbox or the jobs changed: count them again shortly (at most every 0.25 s)."""
        if self._refresh is None and not self.workers.stopping:
            loop = asyncio.get_running_loop()
            self._refresh = loop.call_later(0.25, self._start_refresh)

    def _start_refresh(self) -> None:
        self._refresh = None
        self._spawn(self._refresh_counts())

    async def _refresh_counts(self) -> None:
        counts, jobs = await asyncio.gather(self.inbox.counts(), self.storage.schedule.count())
        if counts != self.counts or jobs != self.stored_jobs:
            self.counts, self.stored_jobs = counts, jobs
            self._notifying = True  # our own news, not an instance's: kick() ignores it
            try:
                self._on_change()
            finally:
                self._notifying = False

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
            agent = self._agent()
            claim = not self.workers.stopping and chat[0] in self.registries.connectors
            entry, history = await self.turns.next_turn(
                *chat,
                finished=finished,
                claim=claim,
                history=agent.max_history,
                since=self._since(agent),
            )
            self.refresh_soon()  # counted again shortly: claimed, done
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
            reply = Reply("Sorry, something went wrong; details are in the log.")
        await self.inbox.mark_sending(entry.id)
        self.workers.sending.add(chat)
        try:
            sent = await self._send(message, reply.text, reply.files)
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
        return Finished(entry.id, tuple(reply.turns), self._keep())

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
        return await self._converse(message, self._agent(), entry, history)

    # -- conversation --------------------------------------------------------------------------

    def _keep(self) -> int:
        return max(2 * self._agent().max_history, 100)

    def _since(self, agent: AgentSettings) -> float | None:
        """Messages older than this are out of the history (agent.historyDays)."""
        if agent.history_days is None:
            return None
        return self.clock() - agent.history_days * 86400

    async def history(self, connector_id: str, chat_id: str) -> list[ChatMessage]:
        """The chat's recent history."""
        await self._rename_legacy((connector_id, chat_id))
        agent = self._agent()
        return await self.conversations.load(
            connector_id, chat_id, limit=agent.max_history, since=self._since(agent)
        )

    async def _rename_legacy(self, chat: Chat) -> None:
        """Once per chat the old file store knew under hashed names: its messages (imported
        under those names) move to the chat's real ids."""
        if chat in self._renamed or (legacy_part(chat[0]), legacy_part(chat[1])) == chat:
            return
        self._renamed.add(chat)
        await self.conversations.rename((legacy_part(chat[0]), legacy_part(chat[1])), chat)

    async def _converse(
        self,
        message: IncomingMessage,
        agent: AgentSettings,
        entry: InboxEntry | None,
        history: list[ChatMessage] | None = None,
    ) -> Reply:
        if history is None:
            history = await self.history(message.connector_id, message.chat_id)
        turn = [ChatMessage(role="user", content=message.text)]
        files: list[Attachment] = []
        extra = {"inboxId": entry.id} if entry is not None else {}
        context = ToolContext(message.connector_id, message.chat_id, extra)
        stats = TurnStats()
        try:
            text = await self._run_turn(context, agent, history, turn, files, stats)
        except TurnFailed as exc:
            text = f"Sorry, {exc}"
            turn.append(ChatMessage(role="assistant", content=text, is_error=True))
        return Reply(text, files, turn, stats)

    async def _run_turn(
        self,
        context: ToolContext,
        agent: AgentSettings,
        history: list[ChatMessage],
        turn: list[ChatMessage],
        files: list[Attachment],
        stats: TurnStats,
    ) -> str:
        provider_id, provider = self._provider(agent)
        tools = self._tool_definitions(agent)
        chat = (str(context.connector_id), str(context.chat_id))
        system = ChatMessage(role="system", content=self.commands.system_prompt(chat, agent))
        for _ in range(agent.max_tool_steps + 1):
            messages = trim_history([*history, *turn], agent.max_history, agent.max_history_chars)
            request = InferenceRequest(messages=[system, *messages], model=agent.model, tools=tools)
            owner = self.registries.inference.owner_of(provider_id)
            try:
                async with asyncio.timeout(agent.reply_timeout):
                    response = await provider.complete(request)
            except TimeoutError:
                raise TurnFailed(
                    f"the inference provider '{provider_id}' did not answer within "
                    f"{agent.reply_timeout:g} s."
                ) from None
            except CallCancelled:
                raise TurnFailed(
                    f"the inference provider '{provider_id}' stopped while answering (it was "
                    "reloaded or disabled); please send your message again."
                ) from None
            except Exception as exc:
                self.log_failure(f"inference provider {provider_id}", owner, exc)
                raise TurnFailed(
                    f"the inference provider '{provider_id}' failed ({type(exc).__name__})."
                ) from None
            stats.add_response(provider_id, agent.model, response)
            turn.append(
                ChatMessage(role="assistant", content=response.text, tool_calls=response.tool_calls)
            )
            if not response.tool_calls:
                return response.text or "(no answer)"
            for call in response.tool_calls:
                result = await self._run_tool(call, agent, context, files)
                turn.append(
                    ChatMessage(
                        role="tool",
                        content=cap_content(result.text, agent.max_tool_result_chars),
                        tool_call_id=call.id,
                        is_error=result.is_error,
                    )
                )
        raise TurnFailed(f"I stopped after {agent.max_tool_steps} tool steps without an answer.")

    async def _run_tool(
        self,
        call: ToolCall,
        agent: AgentSettings,
        context: ToolContext,
        files: list[Attachment],
    ) -> ToolResult:
        if call.name == IMAGE_TOOL and self._image_provider(agent)[1] is not None:
            prompt = str(call.arguments.get("prompt", ""))
            try:
                images = await self.generate_images(agent, prompt)
            except TurnFailed as exc:
                return ToolResult(text=str(exc), is_error=True)
            files.extend(images)
            return ToolResult(text=f"generated {len(images)} image(s); they will be sent")
        builtin = self.commands.tool(call.name)
        if builtin is not None:
            return await builtin.execute(dict(call.arguments), context)
        tool = self.registries.tools.get(call.name)
        if tool is None or not self._tool_allowed(agent, call.name):
            return ToolResult(text=f"unknown tool {call.name!r}", is_error=True)
        owner = self.registries.tools.owner_of(call.name)  # before: it may unload meanwhile
        try:
            return await tool.execute(dict(call.arguments), context)
        except Exception as exc:
            self.log_failure(f"tool {call.name}", owner, exc)
            return ToolResult(
                text=f"tool {call.name!r} failed ({type(exc).__name__})", is_error=True
            )

    # -- images --------------------------------------------------------------------------------

    async def generate_images(self, agent: AgentSettings, prompt: str) -> list[Attachment]:
        provider_id, provider = self._image_provider(agent)
        if provider is None:
            raise TurnFailed("no image provider is enabled.")
        try:
            async with asyncio.timeout(agent.reply_timeout):
                images = await provider.generate(prompt, count=1)
        except TimeoutError:
            raise TurnFailed(f"the image provider '{provider_id}' timed out.") from None
        except Exception as exc:
            owner = self.registries.images.owner_of(provider_id) if provider_id else None
            self.log_failure(f"image provider {provider_id}", owner, exc)
            raise TurnFailed(
                f"the image provider '{provider_id}' failed ({type(exc).__name__})."
            ) from None
        return [Attachment(path=i.path, mime_type=i.mime_type) for i in images]

    # -- lookups -------------------------------------------------------------------------------

    def _agent(self) -> AgentSettings:
        return self._agent_settings()

    def _provider(self, agent: AgentSettings) -> tuple[str, InferenceProvider]:
        registry = self.registries.inference
        if agent.inference is not None:
            provider = registry.get(agent.inference)
            if provider is None:
                registries = (self.registries.connectors, self.registries.tools)
                if any(r.keys_of(agent.inference) for r in (*registries, self.registries.images)):
                    raise TurnFailed(f"'{agent.inference}' is not an inference provider.")
                raise TurnFailed(f"the inference provider '{agent.inference}' is not loaded.")
            return agent.inference, provider
        for key, provider in registry.items():
            return key, provider
        raise TurnFailed("no inference provider is enabled.")

    def _image_provider(self, agent: AgentSettings) -> tuple[str | None, Any]:
        registry = self.registries.images
        if agent.image_provider is not None:
            return agent.image_provider, registry.get(agent.image_provider)
        for key, provider in registry.items():
            return key, provider
        return None, None

    def _tool_allowed(self, agent: AgentSettings, name: str) -> bool:
        return agent.tools is None or name in agent.tools

    def _tool_definitions(self, agent: AgentSettings) -> list[ToolDefinition]:
        definitions = []
        for name, tool in self.registries.tools.items():
            if not self._tool_allowed(agent, name):
                continue
            try:
                definitions.append(ToolDefinition(tool.name, tool.description, tool.parameters()))
            except Exception as exc:  # a broken tool is left out, the others are offered
                owner = self.registries.tools.owner_of(name)
                self.log_failure(f"tool {name} (its parameters())", owner, exc)
        if self._image_provider(agent)[1] is not None and self._tool_allowed(agent, IMAGE_TOOL):
            definitions.append(
                ToolDefinition(
                    IMAGE_TOOL,
                    "Generate an image from a text prompt; the image is sent to the chat.",
                    {
                        "type": "object",
                        "properties": {"prompt": {"type": "string"}},
                        "required": ["prompt"],
                    },
                )
            )
        definitions += [
            t.definition() for t in self.commands.tools() if self._tool_allowed(agent, t.name)
        ]
        return definitions

    def describe_model(self, agent: AgentSettings) -> tuple[str, list[str]]:
        """Who answers (for /help) and the tools it may call."""
        try:
            provider_id, provider = self._provider(agent)
            who = f"{provider.label} ('{provider_id}')"
        except TurnFailed:
            who = "no inference provider (none is enabled)"
        return who, [d.name for d in self._tool_definitions(agent)]

    async def _send(self, message: IncomingMessage, text: str, files: list[Attachment]) -> bool:
        return await self.send(
            message.connector_id, message.chat_id, text, files, message.message_id
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
        connector = self.registries.connectors.get(connector_id)
        if connector is None:
            logger.error("bot: connector %s is gone; reply dropped", connector_id)
            return False
        owner = self.registries.connectors.owner_of(connector_id)
        try:
            await connector.send_message(chat_id, text, files=tuple(files or ()), reply_to=reply_to)
        except Exception as exc:
            self.log_failure(f"connector {connector_id} sending the reply", owner, exc)
            return False
        return True

    def log_failure(self, what: str, owner: str | None, exc: BaseException) -> None:
        """Log a plugin's failure with its traceback, without its instance's secret values."""
        details = format_details(exc)
        if owner is not None and self._redact is not None:
            details = self._redact(owner, details)
        logger.error(
            "bot: %s failed",
            what,
            extra={"event": "bot.failed", "instance": owner, "details": details},
        )


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


__all__ = ["CONNECTOR_MESSAGE", "Bot", "Reply", "TurnFailed", "incoming_message"]
