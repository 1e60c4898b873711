"""Scheduled work owned by instances (`api.schedule`) and by the bot (reminders); see
docs/state.md."""

from grambot.scheduling.scheduler import InstanceSchedule, ScheduledRun, Scheduler
from grambot.scheduling.timing import check_cron, next_run, parse_at, zone

__all__ = [
    "InstanceSchedule",
    "ScheduledRun",
    "Scheduler",
    "check_cron",
    "next_run",
    "parse_at",
    "zone",
]
