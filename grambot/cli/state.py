"""`grambot backup [FILE]`, and what `grambot remove ID --purge` deletes (docs/state.md)."""

from __future__ import annotations

import tarfile
import tempfile
import time
from pathlib import Path

import click

from grambot.cli.common import workspace_option

__all__ = ["backup_command"]

# never in a backup: the live database files (a consistent copy goes in instead), and what
# belongs to a running engine
SKIPPED = {"state.db", "state.db-wal", "state.db-shm", "engine.lock", "status.json", "requests"}


@click.command("backup")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@workspace_option
def backup_command(file: Path | None, workspace: Path) -> None:
    """Write .scout/ to FILE (a .tar.gz; default grambot-backup-<time>.tar.gz here): settings,
    secrets, plugin data, and a consistent copy of state.db made with SQLite's online backup
    (safe while the engine runs). Restore: stop the engine, unpack it into the workspace."""
    from grambot.storage import STORAGE_FILE, StateError, open_storage

    scout = workspace.resolve() / ".scout"
    if not scout.is_dir():
        raise click.ClickException(f"{scout} does not exist: nothing to back up")
    target = file or Path(f"grambot-backup-{time.strftime('%Y%m%d-%H%M%S')}.tar.gz")
    with tempfile.TemporaryDirectory(prefix="grambot-backup-") as tmp:
        snapshot = Path(tmp) / STORAGE_FILE
        if (scout / STORAGE_FILE).exists():
            try:
                with open_storage(scout / STORAGE_FILE) as storage:
                    storage.backup_to(snapshot)
            except StateError as exc:
                raise click.ClickException(str(exc)) from None
        partial = target.with_name(f".{target.name}.partial")
        with tarfile.open(partial, "w:gz") as archive:
            for path in sorted(scout.iterdir()):
                if path.name not in SKIPPED:
                    archive.add(path, arcname=f".scout/{path.name}")
            if snapshot.exists():
                archive.add(snapshot, arcname=f".scout/{STORAGE_FILE}")
        partial.chmod(0o600)  # it holds the secrets
        partial.replace(target)
    click.echo(f"backed up {scout} to {target} (it contains the secrets: keep it private)")
