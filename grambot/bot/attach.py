"""The bot on an engine: built from the engine's registries, storage, scheduler and `agent`
block, subscribed to its `connector.message` events and instance changes, and attached
(`Engine.attach`) so that the engine recovers, resumes and stops it. The engine itself imports
nothing of grambot.bot."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grambot.bot.router import Bot
from grambot.masking import MASK
from grambot.registries.connectors import CONNECTOR_MESSAGE

if TYPE_CHECKING:
    from grambot.engine import Engine

__all__ = ["attach_bot"]


def attach_bot(engine: Engine, *, log_messages: bool = False) -> Bot:
    """Attach a bot to `engine` (before `engine.start()`) and return it. It answers with the
    last valid `agent` block; `log_messages`: the texts in each message's log line."""
    bot = Bot(
        engine.registries,
        engine.storage,
        lambda: engine.settings.agent,
        redact=lambda owner, text: MASK.redact_instance(engine.secrets, owner, text),
        scheduler=engine.scheduler,
        legacy_dir=engine.scout_dir / "bot",
        on_change=engine.changed,
    )
    bot.log_messages = log_messages
    engine.scheduler.on_change = bot.refresh_soon  # job counts in status.json
    engine.event_engine.register(CONNECTOR_MESSAGE, bot.on_event)
    engine.add_listener(bot.kick)
    engine.attach(bot)
    return bot
