"""Secrets handed to the process by its surroundings (containers, systemd credentials).

Two sources, both ahead of the secrets store (`.scout/secrets.json` or the keyring):

    GRAMBOT_SECRET__<instanceId>__<key>=value     one environment variable per secret
    GRAMBOT_SECRETS_DIR=/run/secrets              a flat folder of files <instanceId>__<key>

An environment variable wins over a file, a file over the store. A name is split at its first
`__`, so an instance whose id contains `__` cannot get secrets this way, and a variable can only
name an instance whose id is a valid shell name. A file holds the value as it is, one trailing
newline (`\\n` or `\\r\\n`) stripped; an empty file or variable counts as unset (compose sets
`${UNSET}` to ""). Files are read as regular files only (grambot.files: never a FIFO or a
device), at most MAX_FILE_BYTES; hidden files (Kubernetes' `..data`) are skipped and other names
that do not parse are reported once. Every value is masked (grambot.masking) as soon as it is
read, and each stays with its instance: `LayeredSecretsStore` is what instances see, through
`api.secrets`, and refuses to write over a key that comes from here, saying where it comes from.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from grambot.config.names import is_secret_key, is_valid_id
from grambot.errors import SecretsError, UnsafeFile
from grambot.files import read_regular
from grambot.masking import MASK

if TYPE_CHECKING:
    from grambot.secrets.store import SecretsStore

__all__ = [
    "ENV_PREFIX",
    "SECRETS_DIR_ENV",
    "ExternalSecrets",
    "LayeredSecretsStore",
    "Origin",
]

logger = logging.getLogger(__name__)

SECRETS_DIR_ENV = "GRAMBOT_SECRETS_DIR"
ENV_PREFIX = "GRAMBOT_SECRET__"
SEPARATOR = "__"
MAX_FILE_BYTES = 1024 * 1024

Source = Literal["store", "dir", "env"]


@dataclass(frozen=True)
class Origin:
    """Where a secret that is not in the store comes from: `where` is the variable or file."""

    source: Source
    where: str

    def refusal(self, instance_id: str, key: str) -> str:
        """Why the store may not take this key (it would be hidden by this source)."""
        if self.source == "env":
            there = f"the environment variable {self.where}"
            fix = "change or unset the variable"
        else:
            there = f"the file {self.where} ({SECRETS_DIR_ENV})"
            fix = "change or remove that file"
        return (
            f"secret {key!r} of instance {instance_id!r} comes from {there}, which takes "
            f"precedence over the secrets store; {fix} instead"
        )


def split_name(name: str) -> tuple[str, str] | None:
    """`<instanceId>__<key>` -> (instance id, key), split at the first `__`; None if invalid."""
    instance_id, sep, key = name.partition(SEPARATOR)
    if not sep or not is_valid_id(instance_id) or not is_secret_key(key):
        return None
    return instance_id, key


def _strip_newline(value: str) -> str:
    if value.endswith("\n"):
        value = value[:-1]
        if value.endswith("\r"):
            value = value[:-1]
    return value


class ExternalSecrets:
    """The secrets of the environment variables and of the secrets folder, read on demand (the
    folder is read again at each look: the running engine watches it for changes)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._warned: set[str] = set()
        self._env: dict[tuple[str, str], tuple[str, str]] = {}  # (id, key) -> (value, name)
        for name, value in env.items():
            if not name.startswith(ENV_PREFIX):
                continue
            parsed = split_name(name[len(ENV_PREFIX) :])
            if parsed is None:
                self._warn_once(
                    name,
                    "environment variable %s: not %s<instanceId>__<key> with a valid instance "
                    "id and key; ignored",
                    name,
                    ENV_PREFIX,
                )
            elif value:
                self._env[parsed] = (value, name)
        folder = env.get(SECRETS_DIR_ENV, "")
        self.directory = Path(folder).absolute() if folder else None

    def __bool__(self) -> bool:
        return bool(self._env) or self.directory is not None

    def describe(self) -> str:
        """For the engine's start-up line."""
        parts = []
        if self._env:
            parts.append(f"{len(self._env)} from {ENV_PREFIX}* variables")
        if self.directory is not None:
            parts.append(f"the folder {self.directory} ({SECRETS_DIR_ENV})")
        return " and ".join(parts)

    def _warn_once(self, what: str, message: str, *args: object) -> None:
        if what not in self._warned:
            self._warned.add(what)
            logger.warning(message, *args)

    # -- the folder --------------------------------------------------------------------------

    def _files(self) -> Iterator[tuple[tuple[str, str], Path]]:
        """The files of the folder with a valid name, as ((instance id, key), path)."""
        folder = self.directory
        if folder is None:
            return
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            self._warn_once(str(folder), "%s=%s: no such folder", SECRETS_DIR_ENV, folder)
            return
        except OSError as exc:
            raise SecretsError(f"{folder} ({SECRETS_DIR_ENV}): cannot list it: {exc}") from None
        for entry in entries:
            if entry.name.startswith("."):  # Kubernetes' ..data and friends
                continue
            path = folder / entry.name
            parsed = split_name(entry.name)
            if parsed is None:
                self._warn_once(
                    str(path),
                    "%s: not named <instanceId>__<key> with a valid instance id and key; ignored",
                    path,
                )
                continue
            try:
                regular = entry.is_file()  # follows symlinks, as mounted secrets are
            except OSError:
                regular = False
            if not regular:
                self._warn_once(str(path), "%s: not a regular file; ignored", path)
                continue
            yield parsed, path

    def _read(self, path: Path) -> str | None:
        """The value in `path` (None: gone or empty)."""
        try:
            raw = read_regular(path, MAX_FILE_BYTES)
        except FileNotFoundError:
            return None
        except UnsafeFile as exc:
            raise SecretsError(str(exc)) from None
        except OSError as exc:
            raise SecretsError(f"{path}: cannot read the secret: {exc.strerror or exc}") from None
        try:
            value = _strip_newline(raw.decode())
        except UnicodeDecodeError:
            raise SecretsError(f"{path}: the secret is not UTF-8 text") from None
        MASK.add([value])
        return value or None

    def _file(self, instance_id: str, key: str) -> Path | None:
        if self.directory is None or SEPARATOR in instance_id:
            return None  # such an id cannot be named by a file (split at the first `__`)
        path = self.directory / f"{instance_id}{SEPARATOR}{key}"
        return path if split_name(path.name) == (instance_id, key) else None

    # -- lookups -----------------------------------------------------------------------------

    def lookup(self, instance_id: str, key: str) -> tuple[str, Origin] | None:
        """The value of `key` of `instance_id` and where it comes from, or None."""
        found = self._env.get((instance_id, key))
        if found is not None:
            MASK.add([found[0]])
            return found[0], Origin("env", found[1])
        path = self._file(instance_id, key)
        if path is not None:
            value = self._read(path)
            if value is not None:
                return value, Origin("dir", str(path))
        return None

    def origins(self, instance_id: str) -> dict[str, Origin]:
        """The keys of `instance_id` set here, and where each comes from."""
        found = {
            key: Origin("dir", str(path))
            for (iid, key), path in self._files()
            if iid == instance_id and self._read(path) is not None
        }
        for (iid, key), (_, name) in self._env.items():
            if iid == instance_id:
                found[key] = Origin("env", name)
        return dict(sorted(found.items()))

    def instance_ids(self) -> set[str]:
        return {iid for iid, _ in self._env} | {iid for (iid, _), _ in self._files()}

    def env_values(self) -> list[str]:
        return [value for value, _ in self._env.values()]

    def learn(self) -> None:
        """Teach the masker every value here (those of instances not running included)."""
        MASK.add(self.env_values())
        for _, path in self._files():
            try:
                self._read(path)
            except SecretsError as exc:
                self._warn_once(f"read:{path}", "%s", exc)


class LayeredSecretsStore:
    """The store with the environment's secrets laid over it: what a running engine and the
    CLI use when GRAMBOT_SECRET__* or GRAMBOT_SECRETS_DIR are set."""

    def __init__(self, store: SecretsStore, external: ExternalSecrets) -> None:
        self.inner = store
        self.external = external
        MASK.add(external.env_values())  # a value may show up before anything reads it

    def __repr__(self) -> str:
        return f"{self.inner!r} under {self.external.describe()}"

    def get(self, instance_id: str, key: str) -> str | None:
        found = self.external.lookup(instance_id, key)
        return found[0] if found is not None else self.inner.get(instance_id, key)

    def keys(self, instance_id: str) -> list[str]:
        return sorted({*self.inner.keys(instance_id), *self.external.origins(instance_id)})

    def origin(self, instance_id: str, key: str) -> Origin | None:
        found = self.external.lookup(instance_id, key)
        return found[1] if found is not None else None

    def sources(self, instance_id: str) -> dict[str, Origin]:
        """Every key of `instance_id` and where its value comes from."""
        found = {key: Origin("store", "") for key in self.inner.keys(instance_id)}
        found.update(self.external.origins(instance_id))
        return dict(sorted(found.items()))

    def set(self, instance_id: str, key: str, value: str) -> None:
        self._refuse(instance_id, key)
        self.inner.set(instance_id, key, value)

    def delete(self, instance_id: str, key: str) -> bool:
        self._refuse(instance_id, key)
        return self.inner.delete(instance_id, key)

    def _refuse(self, instance_id: str, key: str) -> None:
        origin = self.origin(instance_id, key)
        if origin is not None:
            raise SecretsError(origin.refusal(instance_id, key))
