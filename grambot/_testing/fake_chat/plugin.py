"""The fake chat of `grambot.testing.fake_chat`: a test connector and a scripted model.

The connector (registered under the instance id) takes what the test says through the durable
inbox, as a real connector does, and keeps every reply it is asked to send. The model (same id)
answers each request with the next step of its script: a text, or tool calls (`{"tool": name,
"args": {...}}`, or a list of them); when the script runs out it repeats the last user message.
Both record what they saw, for the test to read.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from grambot import (
    Attachment,
    IncomingMessage,
    InferenceRequest,
    InferenceResponse,
    Plugin,
    PluginApi,
    ToolCall,
)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    script: list[Any] | None = Field(
        None, description="The model's answers in order (None: no model is registered)."
    )
    connector: bool = Field(True, description="Register the test connector.")


class FakeChat:
    def __init__(self, api: PluginApi) -> None:
        self.api = api
        self.id = api.instance.instance_id
        self.label = "Scripted model"
        settings: Settings = api.settings
        self.script = list(settings.script or [])
        self.requests: list[InferenceRequest] = []
        self.sent: list[tuple[str, str, tuple[Attachment, ...]]] = []
        self.replies: asyncio.Queue[str] = asyncio.Queue()
        self._ids = itertools.count(1)

    async def load(self) -> None:
        settings: Settings = self.api.settings
        if settings.connector:
            self.api.registrar.register_connector(self)
        if settings.script is not None:
            self.api.registrar.register_inference_provider(self)

    # -- the connector -------------------------------------------------------------------------

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send_message(
        self,
        chat_id: str,
        text: str,
        *,
        files: Sequence[Attachment] = (),
        reply_to: str | None = None,
    ) -> None:
        self.sent.append((chat_id, text, tuple(files)))
        self.replies.put_nowait(text)

    async def receive(self, text: str, *, chat_id: str, sender: str) -> None:
        message = IncomingMessage(
            connector_id=self.id,
            chat_id=chat_id,
            sender=sender,
            text=text,
            message_id=f"fake-{next(self._ids)}",
        )
        await self.api.inbox.accept(message)

    # -- the model -----------------------------------------------------------------------------

    def models(self) -> Sequence[str]:
        return ["scripted"]

    async def complete(self, request: InferenceRequest) -> InferenceResponse:
        self.requests.append(request)
        if not self.script:
            last = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
            return InferenceResponse(text=last, model="scripted", stop_reason="end_turn")
        step = self.script.pop(0)
        if isinstance(step, str):
            return InferenceResponse(text=step, model="scripted", stop_reason="end_turn")
        steps = step if isinstance(step, list) else [step]
        calls = tuple(
            ToolCall(f"call-{next(self._ids)}", str(s["tool"]), dict(s.get("args") or {}))
            for s in steps
        )
        return InferenceResponse(tool_calls=calls, model="scripted", stop_reason="tool_use")


plugin = Plugin(settings_schema=Settings, create=FakeChat)
