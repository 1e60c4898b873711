"""Proactive messages: `/remind`, `/reminders`, `/tz` and the `schedule_message` tool.

A reminder is a job of the bot (owner `@bot`, name `chat:<connector>:<chat>:<id>`) in the
scheduler (grambot.scheduling), so it survives restarts; when due it is sent to its chat through
the chat's connector (retried while the connector is away) and added to the conversation.
Limits: 50 reminders per chat, recurring ones at least a minute apart; a chat sees and cancels
only its own. Times are read in the chat's zone (`/tz Area/City`, else `agent.timeZone`).
An id is derived from the message that asked, so a message handled twice (after a crash)
replaces its reminder instead of adding a second one.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from grambot.config.settings import AgentSettings
from grambot.registries.connectors import IncomingMessage
from grambot.registries.inference import ChatMessage, ToolDefinition
from grambot.registries.tools import ToolContext, ToolResult
from grambot.scheduling.timing import check_cron, parse_at, zone
from grambot.storage.base import InboxEntry, Job

if TYPE_CHECKING:
    from grambot.bot.context import BotContext
    from grambot.bot.reply import Sender
    from grambot.bot.workers import Chat
    from grambot.scheduling import InstanceSchedule, ScheduledRun, Scheduler

__all__ = ["MAX_PER_CHAT", "MIN_INTERVAL", "Reminders", "parse_when"]

logger = logging.getLogger("grambot.bot")

OWNER = "@bot"
MAX_PER_CHAT = 50
MIN_INTERVAL = 60.0
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_SPAN = re.compile(r"^(\d+(?:\.\d+)?)(s|sec|m|min|h|d)$")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")
USAGE = (
    "Usage: /remind <when> <text>, where <when> is: in 10m | 18:30 | tomorrow 8:00 | "
    "2026-12-01 08:00 | every 2h | daily 8:00 | cron 0 8 * * 1-5"
)


class When:
    def __init__(self, kind: str, spec: str, first: float, tz: str) -> None:
        self.kind, self.spec, self.first, self.tz = kind, spec, first, tz


def _at_clock(hour: int, minute: int, now: datetime, days: int = 0) -> datetime:
    moment = now.replace(hour=hour, minute=minute, second=0, microsecond=0) + timedelta(days=days)
    if days == 0 and moment <= now:
        moment += timedelta(days=1)
    return moment


def parse_when(words: list[str], tz: ZoneInfo, now: float) -> tuple[When, list[str]]:
    """The time at the start of `words` and the words left; ValueError with the usage."""
    here = datetime.fromtimestamp(now, tz)
    lowered = [w.lower() for w in words]
    if len(words) >= 2 and lowered[0] == "in" and (m := _SPAN.match(lowered[1])):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
        return When("at", repr(now + seconds), now + seconds, tz.key), words[2:]
    if len(words) >= 2 and lowered[0] == "every" and (m := _SPAN.match(lowered[1])):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
        if seconds < MIN_INTERVAL:
            raise ValueError("recurring reminders are at least 1 minute apart")
        return When("every", repr(seconds), now + seconds, tz.key), words[2:]
    if len(words) >= 2 and lowered[0] in ("daily", "every") and (c := _CLOCK.match(words[1])):
        expression = f"{int(c.group(2))} {int(c.group(1))} * * *"
        return _cron(expression, tz, now), words[2:]
    if len(words) >= 3 and lowered[:2] == ["every", "day"] and (c := _CLOCK.match(words[2])):
        return _cron(f"{int(c.group(2))} {int(c.group(1))} * * *", tz, now), words[3:]
    if lowered and lowered[0] == "cron" and len(words) >= 6:
        expression = " ".join(words[1:6])
        check_cron(expression)
        return _cron(expression, tz, now), words[6:]
    rest, days = words, 0
    if lowered and lowered[0] == "tomorrow":
        rest, days = words[1:], 1
        if rest and rest[0].lower() == "at":
            rest = rest[1:]
    elif lowered and lowered[0] == "at":
        rest = words[1:]
    if rest and (c := _CLOCK.match(rest[0])):
        moment = _at_clock(int(c.group(1)), int(c.group(2)), here, days)
        return When("at", moment.isoformat(), moment.timestamp(), tz.key), rest[1:]
    if len(rest) >= 2 and re.match(r"^\d{4}-\d{2}-\d{2}$", rest[0]) and _CLOCK.match(rest[1]):
        moment_s = parse_at(f"{rest[0]}T{rest[1]}", tz.key)
        return When("at", repr(moment_s), moment_s, tz.key), rest[2:]
    if rest and re.match(r"^\d{4}-\d{2}-\d{2}T", rest[0]):
        moment_s = parse_at(rest[0], tz.key)
        return When("at", repr(moment_s), moment_s, tz.key), rest[1:]
    raise ValueError(USAGE)


def _cron(expression: str, tz: ZoneInfo, now: float) -> When:
    from grambot.scheduling.timing import next_run

    first = next_run("cron", expression, tz.key, now)
    assert first is not None
    return When("cron", expression, first, tz.key)


class ScheduleMessageTool:
    name = "schedule_message"

    def __init__(self, reminders: Reminders) -> None:
        self.reminders = reminders
        self._definition = self._define()

    def definition(self) -> ToolDefinition:
        return self._definition

    def _define(self) -> ToolDefinition:
        return ToolDefinition(
            self.name,
            "Schedule a message to this chat later (a reminder). Give exactly one of `at` (ISO "
            "8601 with the offset, e.g. 2026-12-01T08:00:00+01:00), `every_minutes` (>= 1) or "
            "`cron` (5 fields, read in `time_zone` or the chat's zone).",
            {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "what to send"},
                    "at": {"type": "string"},
                    "every_minutes": {"type": "number", "minimum": 1},
                    "cron": {"type": "string"},
                    "time_zone": {"type": "string"},
                },
                "required": ["text"],
            },
        )

    async def execute(self, args: dict[str, Any], context: ToolContext) -> ToolResult:
        if context.connector_id is None or context.chat_id is None:
            return ToolResult(text="schedule_message works only in a chat", is_error=True)
        chat = (context.connector_id, context.chat_id)
        text = str(args.get("text") or "").strip()
        given = [k for k in ("at", "every_minutes", "cron") if args.get(k) not in (None, "")]
        if not text or len(given) != 1:
            return ToolResult(
                text="give `text` and exactly one of at/every_minutes/cron", is_error=True
            )
        try:
            tz = (
                zone(args.get("time_zone"))
                if args.get("time_zone")
                else self.reminders.zone_of(chat)
            )
            now = self.reminders.context.clock()
            if given[0] == "at":
                moment = parse_at(str(args["at"]), tz.key)
                when = When("at", repr(moment), moment, tz.key)
            elif given[0] == "every_minutes":
                seconds = float(args["every_minutes"]) * 60
                if seconds < MIN_INTERVAL:
                    raise ValueError("recurring reminders are at least 1 minute apart")
                when = When("every", repr(seconds), now + seconds, tz.key)
            else:
                check_cron(str(args["cron"]))
                when = _cron(str(args["cron"]), tz, now)
            seed = f"{context.extra.get('inboxId')}:{text}:{when.kind}:{when.spec}"
            job = await self.reminders.add(chat, when, text, seed)
        except (ValueError, TypeError) as exc:
            return ToolResult(text=str(exc), is_error=True)
        return ToolResult(text=f"scheduled ({self.reminders.describe(job)})")


class Reminders:
    def __init__(self, context: BotContext, sender: Sender, scheduler: Scheduler | None) -> None:
        self.context = context
        self._sender = sender
        self._scheduler = scheduler  # None: no reminders (no commands, no tool)
        self.schedule: InstanceSchedule | None = None
        self._zones: dict[Chat, str] = {}
        self._tool = ScheduleMessageTool(self)

    async def resume(self) -> None:
        if self._scheduler is None:
            return
        self.schedule = self._scheduler.engine_owner(OWNER)
        self.schedule.handle("chat:*", self._due)
        for key, value in await self.context.kv.items(OWNER, "tz:"):
            connector, _, chat = key.removeprefix("tz:").partition(":")
            self._zones[(connector, chat)] = str(value)
        self.schedule.activate()

    async def stop(self) -> None:
        if self.schedule is not None:
            self.schedule.close()

    def tools(self) -> list[ScheduleMessageTool]:
        return [self._tool] if self.schedule is not None else []

    def help_lines(self) -> dict[str, str]:
        if self.schedule is None:
            return {}
        return {
            "remind": "<when> <text> - a reminder (/remind in 10m tea, /remind daily 8:00 news)",
            "reminders": "list this chat's reminders; /reminders cancel <id|all>",
            "tz": "[Area/City] - show or set this chat's time zone",
        }

    def zone_of(self, chat: Chat, agent: AgentSettings | None = None) -> ZoneInfo:
        name = self._zones.get(chat) or (agent or self.context.agent()).time_zone
        try:
            return zone(name)
        except ValueError:
            return zone(None)

    @staticmethod
    def prefix(chat: Chat) -> str:
        return f"chat:{chat[0]}:{chat[1]}:"

    def describe(self, job: Job) -> str:
        tz = zone(job.tz)
        if job.kind == "every":
            return f"every {timedelta(seconds=float(job.spec))}"
        if job.kind == "cron":
            return f"cron {job.spec} ({tz.key})"
        when = datetime.fromtimestamp(job.next_run or 0, tz)
        return f"at {when.strftime('%Y-%m-%d %H:%M')} {tz.key}"

    async def add(self, chat: Chat, when: When, text: str, seed: str) -> Job:
        assert self.schedule is not None
        rid = hashlib.sha1(seed.encode()).hexdigest()[:6]
        name = self.prefix(chat) + rid
        existing = await self.schedule.jobs(self.prefix(chat))
        if len(existing) >= MAX_PER_CHAT and all(j.name != name for j in existing):
            raise ValueError(f"this chat has {MAX_PER_CHAT} reminders already: cancel one first")
        payload = {"connector": chat[0], "chat": chat[1], "text": text}
        if when.kind == "every":
            return await self.schedule.every(
                name, float(when.spec), None, payload, minimum=MIN_INTERVAL, retries=5
            )
        if when.kind == "cron":
            return await self.schedule.cron(name, when.spec, None, payload, tz=when.tz, retries=5)
        if when.first <= self.context.clock():
            raise ValueError("that time is in the past")
        return await self.schedule.at(name, when.first, None, payload, tz=when.tz, retries=5)

    async def _due(self, run: ScheduledRun) -> None:
        payload = run.payload or {}
        chat = (str(payload.get("connector")), str(payload.get("chat")))
        text = f"⏰ Reminder: {payload.get('text', '')}"
        if chat[0] not in self.context.registries.connectors:
            raise RuntimeError(f"connector {chat[0]} is not loaded")  # retried by the scheduler
        if not await self._sender.send(*chat, text):
            raise RuntimeError(f"sending through {chat[0]} failed")
        await self.context.conversations.append(
            *chat, [ChatMessage(role="assistant", content=text)], keep=self.context.keep()
        )

    async def forget(self, chat: Chat) -> int:
        removed = 0
        if self.schedule is not None:
            for job in await self.schedule.jobs(self.prefix(chat)):
                removed += await self.schedule.cancel(job.name)
        self._zones.pop(chat, None)
        await self.context.kv.delete(OWNER, f"tz:{chat[0]}:{chat[1]}")
        return removed

    async def command(
        self, name: str, argument: str, message: IncomingMessage, entry: InboxEntry | None
    ) -> str | None:
        if self.schedule is None or name not in ("remind", "reminders", "tz"):
            return None
        chat = (message.connector_id, message.chat_id)
        if name == "tz":
            return await self._tz(chat, argument)
        if name == "reminders":
            return await self._list_or_cancel(chat, argument)
        words = argument.split()
        try:
            when, rest = parse_when(words, self.zone_of(chat), self.context.clock())
            if not rest:
                raise ValueError(USAGE)
            seed = f"{entry.id if entry else message.message_id}:{argument}"
            job = await self.add(chat, when, " ".join(rest), seed)
        except ValueError as exc:
            return str(exc)
        return f"Reminder set ({self.describe(job)}), id {job.name.rsplit(':', 1)[1]}."

    async def _tz(self, chat: Chat, argument: str) -> str:
        if not argument:
            return f"This chat's time zone: {self.zone_of(chat).key}."
        try:
            tz = zone(argument)
        except ValueError as exc:
            return str(exc)
        self._zones[chat] = tz.key
        await self.context.kv.set(OWNER, f"tz:{chat[0]}:{chat[1]}", tz.key)
        return f"Time zone set to {tz.key}."

    async def _list_or_cancel(self, chat: Chat, argument: str) -> str:
        assert self.schedule is not None
        jobs = await self.schedule.jobs(self.prefix(chat))
        words = argument.split()
        if words and words[0] == "cancel":
            wanted = words[1] if len(words) > 1 else ""
            chosen = [j for j in jobs if wanted == "all" or j.name.endswith(":" + wanted)]
            if not chosen:
                return f"No reminder {wanted!r} in this chat (see /reminders)."
            for job in chosen:
                await self.schedule.cancel(job.name)
            return f"Cancelled {len(chosen)} reminder(s)."
        if not jobs:
            return "No reminders in this chat."
        lines = [
            f"{j.name.rsplit(':', 1)[1]}: {self.describe(j)} - {(j.payload or {}).get('text')}"
            for j in jobs
        ]
        return "Reminders:\n" + "\n".join(lines) + "\n/reminders cancel <id|all>"
