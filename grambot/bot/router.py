"""Message routing: a `connector.message` event becomes a reply in the same chat.

Each (connector, chat) has a queue and a worker task, so messages of one chat are answered in
order while different chats do not wait for each other; the event handler itself only enqueues,
so the sequential event queue is never blocked by a slow model.

A turn: the conversation (from disk) goes to the inference provider with the tool definitions;
tool calls run through the ToolRegistry and their results go back, until a final answer or the
step limit; the answer goes out through the connector. Every failure becomes a short apology
naming what failed (never a message that could carry a secret) and a logged traceback, from
which the failing instance's secret values are removed (a plugin's error may quote them).

The registries hold guarded objects (grambot.plugins.guards): whatever a plugin raises reaches
the bot as an ordinary exception. A chat worker still survives anything but its own
cancellation, and a worker that ended is started again by the chat's next message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grambot.bot.conversations import ConversationStore, trim_history
from grambot.core.failures import engine_cancelled, format_details
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
from grambot.settings import AgentSettings

logger = logging.getLogger(__name__)

IMAGE_TOOL = "image_generate"
# (instance id, text) -> the text without that instance's secret values
Redactor = Callable[[str, str], str]
HELP_TEXT = """\
Commands:
/help - this message
/reset - forget this chat's conversation
/image <prompt> - generate an image
Anything else goes to {provider}{tools}."""


class TurnFailed(Exception):
    """A step of a turn failed; the message is safe to show in the chat."""


@dataclass(frozen=True)
class _Chat:
    connector_id: str
    chat_id: str


class Bot:
    def __init__(
        self,
        registries: Registries,
        data_dir: Path,
        agent_settings: Callable[[], AgentSettings],
        redact: Redactor | None = None,
    ) -> None:
        self.registries = registries
        self._redact = redact
        self.conversations = ConversationStore(data_dir / "conversations")
        self._agent_settings = agent_settings
        self._queues: dict[_Chat, asyncio.Queue[IncomingMessage | None]] = {}
        self._workers: dict[_Chat, asyncio.Task[None]] = {}

    # -- wiring --------------------------------------------------------------------------------

    async def on_event(self, event: Any) -> None:
        """Handler for `connector.message` events: enqueue for the chat's worker."""
        message = incoming_message(event.payload, default_connector=event.instance_id)
        if message is None:
            logger.warning("event %s: connector.message without chat id or text; ignored", event.id)
            return
        chat = _Chat(message.connector_id, message.chat_id)
        queue = self._queues.get(chat)
        if queue is None:
            queue = self._queues[chat] = asyncio.Queue()
        worker = self._workers.get(chat)
        if worker is None or worker.done():  # a worker that ended is replaced
            self._workers[chat] = asyncio.create_task(
                self._work(chat, queue), name=f"bot:{chat.connector_id}:{chat.chat_id}"
            )
        queue.put_nowait(message)

    async def stop(self, deadline: float = 5.0) -> None:
        """Let the chat workers finish what they hold within `deadline`, then cancel them."""
        for queue in self._queues.values():
            queue.put_nowait(None)
        workers = list(self._workers.values())
        if workers:
            _, pending = await asyncio.wait(workers, timeout=deadline)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
                logger.warning(
                    "bot: %d chat(s) still busy at shutdown were cancelled", len(pending)
                )
        self._queues.clear()
        self._workers.clear()

    async def _work(self, chat: _Chat, queue: asyncio.Queue[IncomingMessage | None]) -> None:
        while (message := await queue.get()) is not None:
            try:
                await self.handle(message)
            except BaseException as exc:  # a chat's failure never stops its worker
                if engine_cancelled(exc):
                    raise
                logger.error(
                    "bot: chat %s/%s: unexpected failure\n%s", *_names(chat), format_details(exc)
                )
                del exc
                await self._reply(message, "Sorry, something went wrong; details are in the log.")

    # -- one message ---------------------------------------------------------------------------

    async def handle(self, message: IncomingMessage) -> None:
        agent = self._agent()
        text = message.text.strip()
        command, _, argument = text.partition(" ")
        if command == "/help":
            await self._reply(message, self._help(agent))
        elif command == "/reset":
            self.conversations.reset(message.connector_id, message.chat_id)
            await self._reply(message, "Conversation forgotten.")
        elif command == "/image":
            await self._image_command(message, agent, argument.strip())
        else:
            await self._converse(message, agent)

    async def _converse(self, message: IncomingMessage, agent: AgentSettings) -> None:
        history = self.conversations.load(message.connector_id, message.chat_id)
        history.append(ChatMessage(role="user", content=message.text))
        files: list[Attachment] = []
        try:
            reply = await self._run_turn(message, agent, history, files)
        except TurnFailed as exc:
            reply = f"Sorry, {exc}"
            history.append(ChatMessage(role="assistant", content=reply, is_error=True))
        self.conversations.save(
            message.connector_id, message.chat_id, trim_history(history, agent.max_history)
        )
        await self._reply(message, reply, files)

    async def _run_turn(
        self,
        message: IncomingMessage,
        agent: AgentSettings,
        history: list[ChatMessage],
        files: list[Attachment],
    ) -> str:
        provider_id, provider = self._provider(agent)
        tools = self._tool_definitions(agent)
        context = ToolContext(connector_id=message.connector_id, chat_id=message.chat_id)
        for _ in range(agent.max_tool_steps + 1):
            request = InferenceRequest(
                messages=[
                    ChatMessage(role="system", content=agent.system_prompt),
                    *trim_history(history, agent.max_history),
                ],
                model=agent.model,
                tools=tools,
            )
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
                self._log_failure(f"inference provider {provider_id}", owner, exc)
                raise TurnFailed(
                    f"the inference provider '{provider_id}' failed ({type(exc).__name__})."
                ) from None
            history.append(
                ChatMessage(role="assistant", content=response.text, tool_calls=response.tool_calls)
            )
            if not response.tool_calls:
                return response.text or "(no answer)"
            for call in response.tool_calls:
                result = await self._run_tool(call, agent, context, files)
                history.append(
                    ChatMessage(
                        role="tool",
                        content=result.text,
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
                images = await self._generate_images(agent, prompt)
            except TurnFailed as exc:
                return ToolResult(text=str(exc), is_error=True)
            files.extend(images)
            return ToolResult(text=f"generated {len(images)} image(s); they will be sent")
        tool = self.registries.tools.get(call.name)
        if tool is None or not self._tool_allowed(agent, call.name):
            return ToolResult(text=f"unknown tool {call.name!r}", is_error=True)
        owner = self.registries.tools.owner_of(call.name)  # before: it may unload meanwhile
        try:
            return await tool.execute(dict(call.arguments), context)
        except Exception as exc:
            self._log_failure(f"tool {call.name}", owner, exc)
            return ToolResult(
                text=f"tool {call.name!r} failed ({type(exc).__name__})", is_error=True
            )

    # -- images --------------------------------------------------------------------------------

    async def _image_command(
        self, message: IncomingMessage, agent: AgentSettings, prompt: str
    ) -> None:
        if not prompt:
            await self._reply(message, "Usage: /image <prompt>")
            return
        try:
            files = await self._generate_images(agent, prompt)
        except TurnFailed as exc:
            await self._reply(message, f"Sorry, {exc}")
            return
        await self._reply(message, f"Here is your image for: {prompt}", files)

    async def _generate_images(self, agent: AgentSettings, prompt: str) -> list[Attachment]:
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
            self._log_failure(f"image provider {provider_id}", owner, exc)
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
                self._log_failure(f"tool {name} (its parameters())", owner, exc)
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
        return definitions

    def _help(self, agent: AgentSettings) -> str:
        try:
            provider_id, provider = self._provider(agent)
            who = f"{provider.label} ('{provider_id}')"
        except TurnFailed:
            who = "no inference provider (none is enabled)"
        names = [d.name for d in self._tool_definitions(agent)]
        tools = f", which may use the tools: {', '.join(names)}" if names else ""
        return HELP_TEXT.format(provider=who, tools=tools)

    async def _reply(
        self, message: IncomingMessage, text: str, files: list[Attachment] | None = None
    ) -> None:
        connector = self.registries.connectors.get(message.connector_id)
        if connector is None:
            logger.error("bot: connector %s is gone; reply dropped", message.connector_id)
            return
        owner = self.registries.connectors.owner_of(message.connector_id)
        try:
            await connector.send_message(
                message.chat_id, text, files=tuple(files or ()), reply_to=message.message_id
            )
        except Exception as exc:
            self._log_failure(f"connector {message.connector_id} sending the reply", owner, exc)

    def _log_failure(self, what: str, owner: str | None, exc: BaseException) -> None:
        """Log a plugin's failure with its traceback, without its instance's secret values."""
        details = format_details(exc)
        if owner is not None and self._redact is not None:
            details = self._redact(owner, details)
        logger.error("bot: %s failed\n%s", what, details)


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


def _names(chat: _Chat) -> tuple[str, str]:
    return chat.connector_id, chat.chat_id


__all__ = ["CONNECTOR_MESSAGE", "Bot", "TurnFailed", "incoming_message"]
