"""`grambot agent`: show or change the `agent` key of settings.json (who answers, and how)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from grambot.cli.common import workspace_option


@click.command("agent")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="e.g. inference=anthropic, model=claude-sonnet-4-6, maxToolSteps=8. Repeatable.",
)
@click.option(
    "--unset",
    "removals",
    multiple=True,
    metavar="KEY",
    help="Remove KEY (back to its default), e.g. --unset tools. Repeatable.",
)
@workspace_option
def agent_command(assignments: tuple[str, ...], removals: tuple[str, ...], workspace: Path) -> None:
    """Show the bot's agent settings, or change them with --set / --unset (validated before
    writing: instance references must name entries, tool names tools of the running engine)."""
    from grambot.cli.agent_refs import check_provider, check_tools
    from grambot.cli.editing import edit_settings
    from grambot.config.edit import SettingsEdit, merge, parse_assignments, unset
    from grambot.config.settings import parse_agent
    from grambot.errors import EditRefused

    if assignments or removals:
        # Text fields stay text even when they look like JSON (a model named "4", say).
        update = parse_assignments(
            assignments, strings={"inference", "model", "systemPrompt", "imageProvider"}
        )

        def change(doc: SettingsEdit) -> dict[str, Any]:
            current = doc.data.get("agent") or {}
            if not isinstance(current, dict):
                raise EditRefused("agent must be an object; fix the settings file first")
            merged = unset(merge(current, update), removals, "agent")
            agent, problems = parse_agent(merged, doc.path)
            messages = [str(p) for p in problems]
            if "tools" in update and agent.tools is not None:
                tools = check_tools(workspace.resolve(), agent.tools)
                messages += tools.errors
                for warning in tools.warnings:
                    click.echo(f"warning: {warning}", err=True)
            for key, kind in (("inference", "inference"), ("imageProvider", "images")):
                named = merged.get(key)
                if key in update and isinstance(named, str):
                    messages += check_provider(workspace.resolve(), key, named, kind).errors
            if messages:
                lines = "\n".join(messages)
                raise EditRefused(f"refused, nothing written:\n{lines}")
            doc.data["agent"] = merged
            return merged

        agent = edit_settings(workspace, change, catalog=None, ids=set())
    else:
        from grambot.config.settings import load_settings, thaw

        agent = thaw(load_settings(workspace).raw.get("agent") or {})
    click.echo(json.dumps(agent, indent=2))
