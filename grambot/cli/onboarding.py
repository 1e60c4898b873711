"""The `onboarding(prompt)` hook: how a plugin asks, on a terminal, for what it needs.

`grambot enable PLUGIN` (on a terminal, without `--no-input`) calls the plugin's optional
`onboarding(prompt)` (sync or async) and merges the settings it returns into the new entry.
Secrets asked through `prompt.secret(key)` are stored in the instance's secrets (never in
settings.json), and only once the whole edit has been validated.

    def onboarding(prompt):
        prompt.secret("token", "Telegram bot token (from @BotFather)")
        return {"allowedChats": [prompt.text("Your chat id")]}

    plugin = Plugin(create=create, settings_schema=Settings, onboarding=onboarding)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

__all__ = ["TerminalPrompt"]


class TerminalPrompt:
    """What `onboarding(prompt)` receives when `grambot enable` runs on a terminal."""

    def __init__(
        self,
        instance_id: str,
        plugin_id: str,
        settings: dict[str, Any],
        provided: Callable[[str], tuple[str, str] | None] = lambda key: None,
    ) -> None:
        self.instance_id = instance_id
        self.plugin_id = plugin_id
        self.settings = dict(settings)  # what the entry has so far (--set values included)
        self.secrets: dict[str, str] = {}
        # key -> (value, where) for secrets the environment provides (GRAMBOT_SECRET__…,
        # GRAMBOT_SECRETS_DIR): not asked for, and never written to the store
        self._provided = provided

    def text(self, question: str, default: str | None = None) -> str:
        value: str = click.prompt(question, default=default, type=str)
        return value

    def secret(self, key: str, question: str | None = None) -> str:
        """Ask without echo; the value is stored as the instance's secret `key` (unless the
        environment provides that key: then it is not asked, and that value is returned)."""
        provided = self._provided(key)
        if provided is not None:
            click.echo(f"{key}: set by {provided[1]}; not asked")
            return provided[0]
        value: str = click.prompt(question or key, hide_input=True, type=str)
        self.secrets[key] = value
        return value

    def confirm(self, question: str, default: bool = False) -> bool:
        return bool(click.confirm(question, default=default))

    def choice(self, question: str, choices: Sequence[str], default: str | None = None) -> str:
        value: str = click.prompt(question, type=click.Choice(list(choices)), default=default)
        return value

    def info(self, message: str) -> None:
        click.echo(message)

    def __repr__(self) -> str:
        return f"TerminalPrompt({self.instance_id!r})"
