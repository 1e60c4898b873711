"""The polling position of one bot, kept in the instance's data dir.

`lastUpdateId` is the last update handled (in the engine's durable inbox, or ignored); it is
written (atomically) after each batch of updates, so after a restart polling resumes at
`lastUpdateId + 1` and anything at or below it is dropped as a duplicate. `botId` ties the
position to a bot: a new token starts afresh.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from grambot.files import write_atomic

STATE_FILE = "telegram-state.json"


class OffsetStore:
    def __init__(self, data_dir: Path, logger: logging.Logger) -> None:
        self.path = data_dir / STATE_FILE
        self.logger = logger
        self.bot_id: int | None = None
        self.last_update_id: int | None = None

    def load(self, bot_id: int) -> int | None:
        """Read the position for `bot_id`; None when there is none (or it was another bot's)."""
        self.bot_id = bot_id
        self.last_update_id = None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self.logger.warning(
                "%s: unreadable polling state (%s); starting afresh", self.path, exc
            )
            return None
        if not isinstance(data, dict) or data.get("botId") != bot_id:
            if isinstance(data, dict) and data.get("botId") is not None:
                self.logger.info("%s: polling state of another bot; starting afresh", self.path)
            return None
        last = data.get("lastUpdateId")
        self.last_update_id = last if isinstance(last, int) else None
        return self.last_update_id

    def is_duplicate(self, update_id: int) -> bool:
        return self.last_update_id is not None and update_id <= self.last_update_id

    def next_offset(self) -> int | None:
        return None if self.last_update_id is None else self.last_update_id + 1

    def save(self, update_id: int) -> None:
        self.last_update_id = update_id
        payload = json.dumps({"botId": self.bot_id, "lastUpdateId": update_id}).encode()
        write_atomic(self.path, payload, mode=0o600)
