"""Images in a turn: which image provider answers, the `image_generate` tool the model is
offered, and one generation under the reply deadline (used by the tool and by `/image`)."""

from __future__ import annotations

import asyncio
from typing import Any

from grambot.bot.context import BotContext
from grambot.config.settings import AgentSettings
from grambot.errors import TurnFailed
from grambot.registries.connectors import Attachment
from grambot.registries.inference import ToolDefinition

__all__ = ["IMAGE_TOOL", "Images"]

IMAGE_TOOL = "image_generate"


class Images:
    def __init__(self, context: BotContext) -> None:
        self._context = context

    def provider(self, agent: AgentSettings) -> tuple[str | None, Any]:
        """(its key, the provider) of `agent.imageProvider`, else the first registered."""
        registry = self._context.registries.images
        if agent.image_provider is not None:
            return agent.image_provider, registry.get(agent.image_provider)
        for key, provider in registry.items():
            return key, provider
        return None, None

    def available(self, agent: AgentSettings) -> bool:
        return self.provider(agent)[1] is not None

    def definition(self) -> ToolDefinition:
        return ToolDefinition(
            IMAGE_TOOL,
            "Generate an image from a text prompt; the image is sent to the chat.",
            {
                "type": "object",
                "properties": {"prompt": {"type": "string"}},
                "required": ["prompt"],
            },
        )

    async def generate(self, agent: AgentSettings, prompt: str) -> list[Attachment]:
        provider_id, provider = self.provider(agent)
        if provider is None:
            raise TurnFailed("no image provider is enabled.")
        try:
            async with asyncio.timeout(agent.reply_timeout):
                images = await provider.generate(prompt, count=1)
        except TimeoutError:
            raise TurnFailed(f"the image provider '{provider_id}' timed out.") from None
        except Exception as exc:
            registry = self._context.registries.images
            owner = registry.owner_of(provider_id) if provider_id else None
            self._context.log_failure(f"image provider {provider_id}", owner, exc)
            raise TurnFailed(
                f"the image provider '{provider_id}' failed ({type(exc).__name__})."
            ) from None
        return [Attachment(path=i.path, mime_type=i.mime_type) for i in images]
