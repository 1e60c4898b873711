"""Editing `.scout/settings.json` from the CLI while an engine may be running.

Every edit runs under a file lock (`.scout/settings.json.lock`; another process holding it is
waited for with a message, then the edit is refused: grambot.files.locked), starts from the file
as it is now, keeps unknown keys and the user's key order and indentation, is validated (file
level and the touched entries) before anything is written, and replaces the file atomically
(temp file + fsync + rename, same permissions), so a running engine only ever sees the old or the
new file. A symlinked settings.json stays a link: the file it points to is replaced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from grambot.config.names import entry_index
from grambot.config.settings import (
    EngineSettings,
    parse_settings,
    read_settings_bytes,
    settings_path,
)
from grambot.errors import EditRefused, Problem, SettingsError
from grambot.files import locked, write_atomic

__all__ = [
    "EditRefused",
    "SettingsEdit",
    "edit_settings",
    "find_entry",
    "parse_assignments",
    "read_document",
]

T = TypeVar("T")
LOCK_SUFFIX = ".lock"


@dataclass
class SettingsEdit:
    """The document being edited: `data` is the parsed file, in its key order."""

    path: Path
    workspace: Path
    data: dict[str, Any]
    existed: bool

    @property
    def plugins(self) -> list[Any]:
        entries = self.data.setdefault("plugins", [])
        if not isinstance(entries, list):
            raise EditRefused(f"{self.path}: plugins must be a list; fix the file first")
        return entries


def _indent_of(text: str) -> int | str:
    match = re.search(r"^\{\s*\n([ \t]+)\S", text)
    if match is None:
        return 2
    indent = match.group(1)
    return indent if "\t" in indent else len(indent)


def read_document(workspace: Path) -> tuple[SettingsEdit, str]:
    """The settings file as an editable document, and its text ('' when missing)."""
    path = settings_path(workspace)
    try:
        text = read_settings_bytes(path).decode("utf-8-sig")
    except FileNotFoundError:
        return SettingsEdit(path, workspace, {"plugins": []}, existed=False), ""
    except UnicodeDecodeError as exc:
        raise EditRefused(f"{path}: cannot read the settings file: {exc}") from None
    if not text.strip():
        return SettingsEdit(path, workspace, {"plugins": []}, existed=True), text
    parse_settings(text, path=path, workspace=workspace)  # SettingsError: fix the file first
    data = json.loads(text)
    return SettingsEdit(path, workspace, data, existed=True), text


def _write(link: Path, text: str) -> None:
    """Replace the file `link` names (following symlinks: a symlinked settings.json stays a
    link, its target gets the edit) atomically, keeping its permissions."""
    write_atomic(link.resolve(), text, mode=0o644, keep_mode=True, make_parents=True)


def edit_settings(
    workspace: Path,
    change: Callable[[SettingsEdit], T],
    *,
    check: Callable[[EngineSettings], Iterable[Problem]] | None = None,
    touched: Callable[[SettingsEdit], Iterable[str]] | None = None,
) -> T:
    """Apply `change` to settings.json under the lock; validate; write atomically.

    `touched(doc)` names the instance ids the edit concerns: an entry-level problem of one of
    them refuses the edit (problems of other entries were there before and are left alone).
    `check(settings)` adds checks (e.g. the plugin's schema); any problem refuses the edit.
    Raises EditRefused (nothing written) or SettingsError (the file is broken: fix it first).
    """
    path = settings_path(workspace)
    lock = path.with_name(path.name + LOCK_SUFFIX)
    with locked(lock, "nothing was written", error=lambda busy: EditRefused(str(busy))):
        doc, text = read_document(workspace)
        result = change(doc)
        indent = _indent_of(text) if text else 2
        new_text = json.dumps(doc.data, indent=indent, ensure_ascii=False) + "\n"
        try:
            settings = parse_settings(new_text, path=path, workspace=workspace)
        except SettingsError as exc:
            raise EditRefused(f"refused, nothing written:\n{exc}") from None
        problems: list[Problem] = []
        if touched is not None:
            ids = {i.lower() for i in touched(doc)}
            for problem in settings.problems:
                index = entry_index(problem.json_path)
                entry = doc.plugins[index] if index is not None else None
                entry_id = entry.get("instanceId") if isinstance(entry, dict) else None
                if isinstance(entry_id, str) and entry_id.lower() in ids:
                    problems.append(problem)
        if check is not None:
            problems.extend(check(settings))
        if problems:
            raise EditRefused("refused, nothing written:\n" + "\n".join(str(p) for p in problems))
        if new_text != text:
            _write(path, new_text)
        return result


def find_entry(doc: SettingsEdit, instance_id: str) -> tuple[int, dict[str, Any]] | None:
    """The entry with this instance id (ignoring case, as ids are unique that way)."""
    for index, entry in enumerate(doc.plugins):
        if isinstance(entry, dict):
            value = entry.get("instanceId")
            if isinstance(value, str) and value.lower() == instance_id.lower():
                return index, entry
    return None


def parse_assignments(assignments: Iterable[str], strings: Collection[str] = ()) -> dict[str, Any]:
    """`["a=1", "b.c=x", 'd=["y"]']` -> `{"a": 1, "b": {"c": "x"}, "d": ["y"]}`.

    A value that parses as JSON is taken as JSON (numbers, true/false, null, lists, objects,
    quoted strings); anything else is a string. Keys in `strings` (fields the plugin's schema
    types as text) always keep the text as written. Dots in the key make nested objects.
    """
    result: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise EditRefused(f"--set {item!r}: expected key=value")
        value: Any = raw
        if key not in strings:
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
        target = result
        *parents, leaf = key.split(".")
        for part in parents:
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                raise EditRefused(f"--set {item!r}: {part!r} is already set to a value")
            target = child
        target[leaf] = value
    return result


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`base` updated with `update`, nested objects merged (keeps base's key order)."""
    merged = dict(base)
    for key, value in update.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            merged[key] = merge(old, value)
        else:
            merged[key] = value
    return merged


def unset(base: dict[str, Any], keys: Iterable[str], where: str) -> dict[str, Any]:
    """`base` without each of `keys` (dots reach into nested objects); a key that is not there
    is refused, naming the keys that are (`where` names the object: `agent`, `settings`)."""
    from grambot.errors import did_you_mean

    result: dict[str, Any] = json.loads(json.dumps(base))  # a deep copy: the caller's stays
    for dotted in keys:
        *parents, leaf = dotted.split(".")
        target: Any = result
        for part in parents:
            child = target.get(part) if isinstance(target, dict) else None
            if not isinstance(child, dict):
                target = None
                break
            target = child
        if not isinstance(target, dict) or leaf not in target:
            present = sorted(target) if isinstance(target, dict) else []
            raise EditRefused(
                f"{where} has no key {dotted!r} to unset (keys: {', '.join(present) or 'none'})"
                f"{did_you_mean(leaf, present)}"
            )
        del target[leaf]
    return result
