"""A connector whose replies resolve waiters, and a model that answers at once (bench/state.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from grambot import InferenceResponse, Plugin


class Loop:
    label = "Bench loop"

    def __init__(self, api: Any) -> None:
        self.api = api
        self.id = api.instance.instance_id
        self.sent = 0
        self.waiters: dict[str, asyncio.Future[float]] = {}  # "chat/message id": its reply
        self.all_sent: asyncio.Event | None = None  # set when `sent` reaches `expected`
        self.expected = 0

    def models(self) -> list[str]:
        return ["trivial"]

    async def complete(self, request: Any) -> InferenceResponse:
        return InferenceResponse(text="ok")

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send_message(
        self, chat_id: str, text: str, *, files: Any = (), reply_to: Any = None
    ) -> None:
        self.sent += 1
        if self.sent == self.expected and self.all_sent is not None:
            self.all_sent.set()
        waiter = self.waiters.pop(f"{chat_id}/{reply_to}", None) if self.waiters else None
        if waiter is not None and not waiter.done():
            waiter.set_result(asyncio.get_running_loop().time())

    async def load(self) -> None:
        self.api.registrar.register_connector(self)
        self.api.registrar.register_inference_provider(self)


plugin = Plugin(create=Loop)
