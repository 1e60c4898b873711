"""The system prompt a turn sends: the configured one, with the current time in the chat's zone
(so the model can work out "8 tomorrow"); made once a minute per zone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from grambot.bot.workers import Chat
from grambot.config.settings import AgentSettings

__all__ = ["SystemPrompt"]


class SystemPrompt:
    def __init__(
        self,
        zone_of: Callable[[Chat, AgentSettings], ZoneInfo],
        clock: Callable[[], float],
    ) -> None:
        self._zone_of = zone_of
        self._clock = clock
        self._made: dict[tuple[str, str], tuple[int, str]] = {}  # (prompt, zone): (minute, text)

    def __call__(self, chat: Chat, agent: AgentSettings) -> str:
        tz = self._zone_of(chat, agent)
        clock = self._clock()
        minute = int(clock // 60)
        key = (agent.system_prompt, tz.key)
        made = self._made.get(key)
        if made is not None and made[0] == minute:
            return made[1]
        now = datetime.fromtimestamp(clock, tz)
        prompt = (
            f"{agent.system_prompt}\n\nCurrent time: {now.isoformat(timespec='minutes')} "
            f"({tz.key}, {now.strftime('%A')})."
        )
        if len(self._made) >= 64:  # zones in use are few; never let it grow unbounded
            self._made.clear()
        self._made[key] = (minute, prompt)
        return prompt
