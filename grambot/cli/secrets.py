"""`grambot secrets set|get|list|delete`: per-instance secrets in the configured backend.

Values are read from a hidden prompt (on a terminal) or from stdin, never from the command
line (argv is visible to every user of the machine and lands in shell history). `get` prints a
masked value unless `--reveal`. After `set`/`delete`, the running engine (if any) is told
through `.scout/secrets.changed` and reloads that instance.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from grambot.cli.common import EXIT_PROBLEMS, fail, workspace_option
from grambot.cli.completion import instance_ids
from grambot.cli.workspace import notify_engine, open_workspace_store
from grambot.config.names import ID_PATTERN, SECRET_KEY_PATTERN, is_secret_key, is_valid_id

if TYPE_CHECKING:
    from grambot.secrets.store import SecretsStore


def _check_names(instance_id: str, key: str | None = None) -> None:
    if not is_valid_id(instance_id):
        fail(f"instance id {instance_id!r} must match {ID_PATTERN}")
    if key is not None and not is_secret_key(key):
        fail(f"secret key {key!r} must match {SECRET_KEY_PATTERN}")


@contextlib.contextmanager
def _errors(action: str) -> Iterator[None]:
    from grambot.errors import SecretsError

    try:
        yield
    except SecretsError as exc:
        fail(f"{action}: {exc}")


@click.group("secrets")
def secrets_group() -> None:
    """Per-instance secrets (bot tokens, API keys): never in settings.json."""


@secrets_group.command("set")
@click.argument("instance_id", shell_complete=instance_ids)
@click.argument("key")
@click.option(
    "--check",
    is_flag=True,
    help="Check the instance live with the new value first (grambot check); store it only if "
    "the check passes.",
)
@workspace_option
def set_command(instance_id: str, key: str, check: bool, workspace: Path) -> None:
    """Set secret KEY of INSTANCE_ID; the value comes from a hidden prompt or stdin."""
    _check_names(instance_id, key)
    store = open_workspace_store(workspace)
    _refuse_external(store, instance_id, key, "store")
    if sys.stdin.isatty():
        value = click.prompt(
            f"{key} for {instance_id}", hide_input=True, confirmation_prompt=True, type=str
        )
    else:
        value = sys.stdin.read()
        if value.endswith("\n"):
            value = value[:-1]
            if value.endswith("\r"):
                value = value[:-1]
    if not value:
        fail("empty value; nothing stored (use `grambot secrets delete` to remove a secret)")
    if check:
        from grambot.cli.workspace import live_check

        result = live_check(workspace.resolve(), instance_id, secrets={key: value})
        if not result.ok:
            fail(f"check failed: {result}; the value was not saved")
        click.echo(str(result))
    with _errors(f"cannot store {instance_id}/{key}"):
        store.set(instance_id, key, value)
    notify_engine(workspace)
    click.echo(f"stored secret {key!r} of instance {instance_id!r} ({_where(store)})")
    _warn_unknown_instance(workspace, instance_id)


@secrets_group.command("get")
@click.argument("instance_id", shell_complete=instance_ids)
@click.argument("key")
@click.option("--reveal", is_flag=True, help="Print the value itself, not a masked form.")
@workspace_option
def get_command(instance_id: str, key: str, reveal: bool, workspace: Path) -> None:
    """Print secret KEY of INSTANCE_ID (masked unless --reveal)."""
    _check_names(instance_id, key)
    store = open_workspace_store(workspace)
    with _errors(f"cannot read {instance_id}/{key}"):
        value = store.get(instance_id, key)
    if value is None:
        fail(f"instance {instance_id!r} has no secret {key!r}")
    click.echo(value if reveal else mask(value))


def mask(value: str) -> str:
    """`********  (40 characters)`: shows that a value is there, not what it is."""
    return f"{'*' * 8}  ({len(value)} characters)"


@secrets_group.command("list")
@click.argument("instance_id", required=False, shell_complete=instance_ids)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: instance -> key -> source.")
@workspace_option
def list_command(instance_id: str | None, as_json: bool, workspace: Path) -> None:
    """List secret keys (never values) and where each comes from (store, dir: a file of
    GRAMBOT_SECRETS_DIR, env: a GRAMBOT_SECRET__ variable), of one instance or of all."""
    from grambot.secrets.backends import store_instance_ids

    if instance_id is not None:
        _check_names(instance_id)
    store = open_workspace_store(workspace)
    with _errors("cannot list secrets"):
        ids = [instance_id] if instance_id else store_instance_ids(store)
        rows = [(i, _sources(store, i)) for i in ids]
    if as_json:
        listing = {
            i: {k: {"source": src, "where": where or None} for k, (src, where) in sources.items()}
            for i, sources in rows
        }
        click.echo(json.dumps({"backend": _where(store), "instances": listing}, indent=2))
        return
    if instance_id is not None:
        sources = rows[0][1]
        width = max((len(key) for key in sources), default=0)
        for key, (source, where) in sources.items():
            click.echo(f"{key.ljust(width)}  {source}{f'  {where}' if where else ''}")
        return
    if not rows:
        click.echo(f"no secrets ({_where(store)})")
    for i, sources in rows:
        click.echo(f"{i}: {', '.join(f'{k} ({s})' for k, (s, _) in sources.items())}")


def _sources(store: SecretsStore, instance_id: str) -> dict[str, tuple[str, str]]:
    """key -> (store|dir|env, the variable or file it comes from)."""
    from grambot.secrets.sources import LayeredSecretsStore

    if isinstance(store, LayeredSecretsStore):
        return {k: (o.source, o.where) for k, o in store.sources(instance_id).items()}
    return {key: ("store", "") for key in store.keys(instance_id)}


def _refuse_external(store: SecretsStore, instance_id: str, key: str, action: str) -> None:
    """`set`/`delete` of a key that comes from the environment: refused, and why (before any
    value is asked for)."""
    from grambot.secrets.sources import LayeredSecretsStore

    if not isinstance(store, LayeredSecretsStore):
        return
    with _errors(f"cannot {action} {instance_id}/{key}"):
        origin = store.origin(instance_id, key)
    if origin is not None:
        fail(f"cannot {action} {instance_id}/{key}: {origin.refusal(instance_id, key)}")


@secrets_group.command("delete")
@click.argument("instance_id", shell_complete=instance_ids)
@click.argument("key")
@workspace_option
def delete_command(instance_id: str, key: str, workspace: Path) -> None:
    """Delete secret KEY of INSTANCE_ID."""
    _check_names(instance_id, key)
    store = open_workspace_store(workspace)
    _refuse_external(store, instance_id, key, "delete")
    with _errors(f"cannot delete {instance_id}/{key}"):
        found = store.delete(instance_id, key)
    if not found:
        fail(f"instance {instance_id!r} has no secret {key!r}", EXIT_PROBLEMS)
    notify_engine(workspace)
    click.echo(f"deleted secret {key!r} of instance {instance_id!r}")


def _where(store: SecretsStore) -> str:
    store = getattr(store, "inner", store)  # under GRAMBOT_SECRET__* / GRAMBOT_SECRETS_DIR
    path = getattr(store, "path", None)
    if path is not None:
        return f"file {path}"
    service = getattr(store, "service", None)
    return f"keyring service {service!r}" if service else repr(store)


def _warn_unknown_instance(workspace: Path, instance_id: str) -> None:
    from grambot.config.settings import load_settings
    from grambot.errors import SettingsError

    try:
        settings = load_settings(workspace)
    except SettingsError:
        return
    if settings.instance(instance_id) is None:
        from grambot.errors import did_you_mean

        ids = [c.instance_id for c in settings.instances]
        click.echo(
            f"warning: settings.json has no instance {instance_id!r} (yet)"
            f"{did_you_mean(instance_id, ids)}",
            err=True,
        )
