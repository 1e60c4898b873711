"""Per-instance secrets.

The file backend keeps `.scout/secrets.json` as `{"<instanceId>": {"<key>": "<value>"}}`, mode
0600, written atomically (temp file + fsync + rename) under a file lock, so a crash mid-write
never leaves it truncated and a CLI writing while the engine runs never loses an update.
A plugin sees its secrets through `InstanceSecrets`, which is bound to one instance id; every
value it reads or writes is taught to the one masker (grambot.masking), so that no error, log
line or status shows it. Messages about secrets name the file, instance and key only.
"""

from __future__ import annotations

import contextlib
import json
import re
import stat
from pathlib import Path
from typing import Protocol

from grambot.errors import MissingSecret, SecretsError, UnsafeFile
from grambot.files import locked, read_regular, write_atomic
from grambot.masking import MASK

MAX_SECRETS_BYTES = 5 * 1024 * 1024  # a bigger secrets.json is refused, never read
MAX_DEPTH = 100  # JSON nesting a secrets file may have before it is refused unparsed (it needs 2)


class SecretsStore(Protocol):
    def get(self, instance_id: str, key: str) -> str | None: ...

    def set(self, instance_id: str, key: str, value: str) -> None: ...

    def delete(self, instance_id: str, key: str) -> bool: ...

    def keys(self, instance_id: str) -> list[str]: ...


# A JSON string (escapes included; unterminated: to the end) or a character that matters for
# nesting: enough to measure how deep a document nests without parsing it.
_NESTING_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}:]', re.DOTALL)


def _too_deep(raw: bytes) -> str | None:
    """None if `raw` nests at most MAX_DEPTH levels; else the top-level key whose value nests
    deeper ("" when there is none, e.g. a top-level list).

    Measured before parsing because json.loads recurses per level, and whether it gives up
    (RecursionError) depends on the Python version (at 5000 levels 3.12 does, 3.13 does not):
    the message must not. Only a key (an instance id, never a value) is ever returned.
    """
    depth = 0
    in_object = False  # the top level is an object
    last_string: bytes | None = None  # the last string at depth 1 (a key once ':' follows)
    key: bytes | None = None  # the top-level key whose value is being read
    for match in _NESTING_TOKENS.finditer(raw):
        token = match.group()
        if token[:1] == b'"':
            last_string = token if depth == 1 else None
        elif token == b":":
            if depth == 1:
                key = last_string if in_object else None
        elif token in (b"[", b"{"):
            if depth == 0:
                in_object = token == b"{"
            depth += 1
            if depth > MAX_DEPTH:
                return _key_text(key)
        else:
            depth -= 1
    return None


def _key_text(token: bytes | None) -> str:
    try:
        key = json.loads(token) if token is not None else None
    except ValueError:
        return ""
    return key if isinstance(key, str) else ""


class FileSecretsStore:
    """`.scout/secrets.json`, keyed by instance id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return locked(
            self._lock_path, "nothing was stored", error=lambda busy: SecretsError(str(busy))
        )

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            raw = read_regular(self.path, MAX_SECRETS_BYTES)
        except FileNotFoundError:
            return {}
        except UnsafeFile as exc:
            raise SecretsError(str(exc)) from None
        except OSError as exc:
            raise SecretsError(
                f"{self.path}: cannot read the secrets file: {exc.strerror}"
            ) from None
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o077:
            raise SecretsError(
                f"{self.path}: secrets file is readable by others (mode {mode:o}); "
                f"run `chmod 600 {self.path}`"
            )
        if not raw.strip():
            return {}
        too_deep = _too_deep(raw)
        if too_deep is not None:
            expected = (
                f"{too_deep}: expected an object of string values"
                if too_deep
                else "expected an object of instance ids at the top level"
            )
            raise SecretsError(
                f"{self.path}: {expected} (got JSON nested deeper than {MAX_DEPTH} levels)"
            )
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SecretsError(
                f"{self.path}: not valid JSON at line {exc.lineno}, column {exc.colno}"
            ) from None
        except (ValueError, RecursionError):  # non-UTF-8 bytes; a call stack already deep
            raise SecretsError(f"{self.path}: not valid UTF-8 JSON") from None
        if not isinstance(data, dict):
            raise SecretsError(f"{self.path}: expected an object of instance ids at the top level")
        for instance_id, entries in data.items():
            if not isinstance(entries, dict) or not all(
                isinstance(v, str) for v in entries.values()
            ):
                raise SecretsError(
                    f"{self.path}: {instance_id}: expected an object of string values"
                )
        return data

    def _write(self, data: dict[str, dict[str, str]]) -> None:
        """Replace the store (the caller holds the lock)."""
        # A writer killed mid-write leaves its temp file, a copy of the secrets, behind. Under
        # the lock no other writer is busy, so any such file is stale: remove it.
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        payload = json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"
        write_atomic(self.path, payload, mode=0o600, make_parents=True)

    def get(self, instance_id: str, key: str) -> str | None:
        return self._read().get(instance_id, {}).get(key)

    def keys(self, instance_id: str) -> list[str]:
        return sorted(self._read().get(instance_id, {}))

    def set(self, instance_id: str, key: str, value: str) -> None:
        if not isinstance(value, str):
            raise SecretsError(f"secret {instance_id}/{key}: value must be a string")
        with self._lock():
            data = self._read()
            data.setdefault(instance_id, {})[key] = value
            self._write(data)

    def delete(self, instance_id: str, key: str) -> bool:
        with self._lock():
            data = self._read()
            entries = data.get(instance_id, {})
            if key not in entries:
                return False
            del entries[key]
            if not entries:
                del data[instance_id]
            self._write(data)
            return True


class InstanceSecrets:
    """`api.secrets`: one instance's secrets and nobody else's."""

    __slots__ = ("_instance_id", "_store")

    def __init__(self, store: SecretsStore, instance_id: str) -> None:
        self._store = store
        self._instance_id = instance_id

    def get(self, key: str, default: str | None = None) -> str | None:
        value = self._store.get(self._instance_id, key)
        MASK.add([value])  # what an instance reads may show up in its errors: masked
        return default if value is None else value

    def require(self, key: str) -> str:
        """The secret, or an error telling the operator how to set it."""
        value = self._store.get(self._instance_id, key)
        MASK.add([value])
        if value is None:
            raise MissingSecret(
                f"instance {self._instance_id!r} needs the secret {key!r}: "
                f"run `grambot secrets set {self._instance_id} {key}`"
            )
        return value

    def set(self, key: str, value: str) -> None:
        MASK.add([value])
        self._store.set(self._instance_id, key, value)

    def delete(self, key: str) -> bool:
        return self._store.delete(self._instance_id, key)

    def keys(self) -> list[str]:
        return self._store.keys(self._instance_id)

    def __repr__(self) -> str:
        return f"InstanceSecrets({self._instance_id!r})"
