"""Are the tools an `agent` block names real?

A tool exists only once the instance that registers it has loaded, so a file alone cannot say.
The running engine can: when every enabled instance is loaded there (its status.json), a name
no instance registered is an error; otherwise it is a warning, since the tool may come with an
instance that is not loaded (yet). Without a running engine nothing is claimed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grambot.errors import did_you_mean

# tools the bot itself offers (grambot/bot/images.py IMAGE_TOOL, grambot/bot/reminders.py)
BOT_TOOLS = ("image_generate", "schedule_message")


@dataclass
class ToolCheck:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _running_instances(workspace: Path) -> list[dict[str, Any]] | None:
    """The instances of the engine running in `workspace` (its status.json), or None."""
    from grambot.app.lock import engine_running
    from grambot.app.status import read_status

    if not engine_running(workspace):
        return None
    status = read_status(workspace / ".scout")
    if status is None:
        return None
    return [i for i in status.get("instances", []) if isinstance(i, dict)]


def check_provider(workspace: Path, key: str, instance_id: str, kind: str) -> ToolCheck:
    """`agent.<key>` names `instance_id`: when the running engine has it loaded, it must have
    registered a `kind` (inference, images) under that id."""
    result = ToolCheck()
    for instance in _running_instances(workspace) or []:
        if instance.get("instanceId") == instance_id and instance.get("state") == "loaded":
            registered = (instance.get("registrations") or {}).get(kind) or []
            if instance_id not in registered:
                what = "an inference provider" if kind == "inference" else "an image provider"
                result.errors.append(
                    f"agent.{key}: instance {instance_id!r} (plugin "
                    f"{instance.get('pluginId')!r}) is not {what}"
                )
    return result


def check_tools(workspace: Path, tools: Iterable[str], where: str = "agent.tools") -> ToolCheck:
    result = ToolCheck()
    names = list(tools)
    instances = _running_instances(workspace) if names else None
    if instances is None:
        return result
    known = set(BOT_TOOLS)
    for instance in instances:
        known.update((instance.get("registrations") or {}).get("tools") or [])
    complete = all(i.get("state") in ("loaded", "disabled") for i in instances)
    for name in names:
        if name in known:
            continue
        message = (
            f"{where}: no instance of the running engine registers a tool {name!r} "
            f"(tools: {', '.join(sorted(known))}){did_you_mean(name, known)}"
        )
        if complete:
            result.errors.append(message)
        else:
            result.warnings.append(f"{message}; not every instance is loaded, so it may come")
    return result
