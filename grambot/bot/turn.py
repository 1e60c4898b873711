"""One model turn: the history (trimmed by count and size) goes to the inference provider with
the tool definitions; tool calls run through the ToolRegistry, the bot's built-in tools or the
image provider (results cut to `maxToolResultChars`), until a final answer or the step limit.
A failing step ends the turn with an apology naming what failed (grambot.bot.reply)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from grambot.bot.context import BotContext
from grambot.bot.conversations import cap_content, trim_history
from grambot.bot.images import IMAGE_TOOL, Images
from grambot.bot.prompt import SystemPrompt
from grambot.bot.reply import Reply, apology
from grambot.bot.report import TurnStats
from grambot.config.settings import AgentSettings
from grambot.errors import CallCancelled, TurnFailed
from grambot.registries.connectors import Attachment, IncomingMessage
from grambot.registries.inference import (
    ChatMessage,
    InferenceProvider,
    InferenceRequest,
    ToolCall,
    ToolDefinition,
)
from grambot.registries.tools import ToolContext, ToolResult
from grambot.storage.base import InboxEntry

__all__ = ["BuiltinTool", "BuiltinTools", "ModelTurn"]


class BuiltinTool(Protocol):
    name: str

    def definition(self) -> ToolDefinition: ...

    async def execute(self, args: dict[str, Any], context: ToolContext) -> ToolResult: ...


class BuiltinTools(Protocol):
    """The bot's own tools (the reminders' `schedule_message`), offered beside the plugins'."""

    def tools(self) -> Sequence[BuiltinTool]: ...


class ModelTurn:
    def __init__(
        self,
        context: BotContext,
        images: Images,
        builtins: BuiltinTools,
        prompt: SystemPrompt,
    ) -> None:
        self._context = context
        self._registries = context.registries
        self._images = images
        self._builtins = builtins
        self.prompt = prompt

    async def converse(
        self,
        message: IncomingMessage,
        agent: AgentSettings,
        entry: InboxEntry | None,
        history: list[ChatMessage],
    ) -> Reply:
        """The model's reply to `message` after `history`."""
        turn = [ChatMessage(role="user", content=message.text)]
        files: list[Attachment] = []
        extra = {"inboxId": entry.id} if entry is not None else {}
        context = ToolContext(message.connector_id, message.chat_id, extra)
        stats = TurnStats()
        try:
            text = await self._run(context, agent, history, turn, files, stats)
        except TurnFailed as exc:
            text = apology(exc)
            turn.append(ChatMessage(role="assistant", content=text, is_error=True))
        return Reply(text, files, turn, stats)

    async def _run(
        self,
        context: ToolContext,
        agent: AgentSettings,
        history: list[ChatMessage],
        turn: list[ChatMessage],
        files: list[Attachment],
        stats: TurnStats,
    ) -> str:
        provider_id, provider = self._provider(agent)
        tools = self.tool_definitions(agent)
        chat = (str(context.connector_id), str(context.chat_id))
        system = ChatMessage(role="system", content=self.prompt(chat, agent))
        for _ in range(agent.max_tool_steps + 1):
            messages = trim_history([*history, *turn], agent.max_history, agent.max_history_chars)
            request = InferenceRequest(messages=[system, *messages], model=agent.model, tools=tools)
            owner = self._registries.inference.owner_of(provider_id)
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
                self._context.log_failure(f"inference provider {provider_id}", owner, exc)
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
        if call.name == IMAGE_TOOL and self._images.available(agent):
            prompt = str(call.arguments.get("prompt", ""))
            try:
                images = await self._images.generate(agent, prompt)
            except TurnFailed as exc:
                return ToolResult(text=str(exc), is_error=True)
            files.extend(images)
            return ToolResult(text=f"generated {len(images)} image(s); they will be sent")
        builtin = next((t for t in self._builtins.tools() if t.name == call.name), None)
        if builtin is not None:
            return await builtin.execute(dict(call.arguments), context)
        tool = self._registries.tools.get(call.name)
        if tool is None or not _tool_allowed(agent, call.name):
            return ToolResult(text=f"unknown tool {call.name!r}", is_error=True)
        owner = self._registries.tools.owner_of(call.name)  # before: it may unload meanwhile
        try:
            return await tool.execute(dict(call.arguments), context)
        except Exception as exc:
            self._context.log_failure(f"tool {call.name}", owner, exc)
            return ToolResult(
                text=f"tool {call.name!r} failed ({type(exc).__name__})", is_error=True
            )

    def _provider(self, agent: AgentSettings) -> tuple[str, InferenceProvider]:
        registries = self._registries
        if agent.inference is not None:
            provider = registries.inference.get(agent.inference)
            if provider is None:
                others = (registries.connectors, registries.tools, registries.images)
                if any(r.keys_of(agent.inference) for r in others):
                    raise TurnFailed(f"'{agent.inference}' is not an inference provider.")
                raise TurnFailed(f"the inference provider '{agent.inference}' is not loaded.")
            return agent.inference, provider
        for key, provider in registries.inference.items():
            return key, provider
        raise TurnFailed("no inference provider is enabled.")

    def tool_definitions(self, agent: AgentSettings) -> list[ToolDefinition]:
        """What the model is offered: the plugins' tools that `agent.tools` allows (a broken
        one is left out), the image tool, the bot's own tools."""
        definitions = []
        for name, tool in self._registries.tools.items():
            if not _tool_allowed(agent, name):
                continue
            try:
                definitions.append(ToolDefinition(tool.name, tool.description, tool.parameters()))
            except Exception as exc:  # a broken tool is left out, the others are offered
                owner = self._registries.tools.owner_of(name)
                self._context.log_failure(f"tool {name} (its parameters())", owner, exc)
        if self._images.available(agent) and _tool_allowed(agent, IMAGE_TOOL):
            definitions.append(self._images.definition())
        definitions += [
            t.definition() for t in self._builtins.tools() if _tool_allowed(agent, t.name)
        ]
        return definitions

    def describe_model(self, agent: AgentSettings) -> tuple[str, list[str]]:
        """Who answers (for /help) and the tools it may call."""
        try:
            provider_id, provider = self._provider(agent)
            who = f"{provider.label} ('{provider_id}')"
        except TurnFailed:
            who = "no inference provider (none is enabled)"
        return who, [d.name for d in self.tool_definitions(agent)]


def _tool_allowed(agent: AgentSettings, name: str) -> bool:
    return agent.tools is None or name in agent.tools
