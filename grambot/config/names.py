"""The names the settings, plugin.json, the secrets and the CLI share: one rule for an id, one
for a secret key, one spelling of a JSON path (`plugins[3].settings.chatIds[0]`).

An instance id and a plugin id follow the same rule on purpose: both become folder names
(`.scout/plugins/<instanceId>/`, `plugins/<pluginId>/`) and parts of environment variables
(`GRAMBOT_SECRET__<instanceId>__<key>`), so no `/`, `.` or space, and at most 64 characters.
Imports nothing but the standard library: the CLI names things without loading pydantic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TypeGuard

__all__ = [
    "ID_PATTERN",
    "ID_RULE",
    "SECRET_KEY_PATTERN",
    "entry_index",
    "entry_path",
    "is_secret_key",
    "is_valid_id",
    "json_path",
]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
ID_RULE = (
    f"must match {ID_PATTERN} (letters, digits, '-' and '_', at most 64, no '/', '.', or spaces)"
)
SECRET_KEY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"

_ID = re.compile(ID_PATTERN)
_SECRET_KEY = re.compile(SECRET_KEY_PATTERN)
_ENTRY = re.compile(r"plugins\[(\d+)\]")


def is_valid_id(value: object) -> TypeGuard[str]:
    """Whether `value` is a well-formed instance id or plugin id (one rule for both)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def is_secret_key(value: object) -> TypeGuard[str]:
    """Whether `value` is a well-formed secret key (`apiKey`, `bot.token`)."""
    return isinstance(value, str) and _SECRET_KEY.fullmatch(value) is not None


def json_path(parts: Iterable[int | str]) -> str:
    """`("plugins", 2, "instanceId")` -> `plugins[2].instanceId` (a pydantic `loc` too)."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def entry_path(index: int, *rest: int | str) -> str:
    """The JSON path of the settings entry `index`, or of something in it: `plugins[3]`,
    `plugins[3].settings.x`."""
    return json_path(("plugins", index, *rest))


def entry_index(path: str) -> int | None:
    """The entry a JSON path is in (`plugins[3].settings.x` -> 3); None outside the entries."""
    match = _ENTRY.match(path)
    return int(match.group(1)) if match else None
