"""What every part of the bot reads: the registries, the stores, the `agent` block in force,
the clock, and how a plugin's failure is logged (without that instance's secrets)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from grambot.config.settings import AgentSettings
from grambot.containment.boundary import format_details
from grambot.registries import Registries
from grambot.storage.base import ConversationStore, KeyValueStore

__all__ = ["BotContext", "Redactor"]

# the name these lines had when they came from the router (log filters may use it)
logger = logging.getLogger("grambot.bot.router")

# (instance id, text) -> the text without that instance's secret values
Redactor = Callable[[str, str], str]


@dataclass(frozen=True)
class BotContext:
    registries: Registries
    conversations: ConversationStore
    kv: KeyValueStore
    agent_settings: Callable[[], AgentSettings]
    clock: Callable[[], float]
    redact: Redactor | None = None

    def agent(self) -> AgentSettings:
        """The `agent` block in force (read again at each step: an edit applies at once)."""
        return self.agent_settings()

    def keep(self) -> int:
        """How many messages a conversation keeps stored."""
        return max(2 * self.agent().max_history, 100)

    def since(self, agent: AgentSettings) -> float | None:
        """Messages older than this are out of the history (agent.historyDays)."""
        if agent.history_days is None:
            return None
        return self.clock() - agent.history_days * 86400

    def log_failure(self, what: str, owner: str | None, exc: BaseException) -> None:
        """Log a plugin's failure with its traceback, without its instance's secret values."""
        details = format_details(exc)
        if owner is not None and self.redact is not None:
            details = self.redact(owner, details)
        logger.error(
            "bot: %s failed",
            what,
            extra={"event": "bot.failed", "instance": owner, "details": details},
        )
