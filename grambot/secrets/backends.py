"""Choosing the secrets backend, and the system-keyring backend.

Settings key (engine level):

    "secrets": {"backend": "file"}                       .scout/secrets.json (the default)
    "secrets": {"backend": "keyring", "service": "..."}  the system keyring

The keyring backend goes through the `keyring` package: each secret is the password of user
`<instanceId>/<key>` under one service name per workspace (`grambot:<absolute workspace path>`
unless `service` is given), so two workspaces never share secrets. Keyrings cannot list their
entries, so the key names (never the values) are kept in an index entry of the same service,
updated under a file lock. `SelectedSecretsStore` is what the running engine hands to its
instances: `Engine.apply` switches the backend behind it when the `secrets` key changes
(`select`), and it tells its owner about writes made in this process and about a switch.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grambot.errors import Problem, SecretsError, object_at
from grambot.files import locked
from grambot.secrets.sources import ExternalSecrets, LayeredSecretsStore
from grambot.secrets.store import FileSecretsStore, SecretsStore

__all__ = [
    "BACKENDS",
    "KeyringSecretsStore",
    "SecretsConfig",
    "SelectedSecretsStore",
    "open_store",
    "secrets_config",
]

BACKENDS = ("file", "keyring")
INDEX_USER = "__grambot_index__"  # not a valid instance id, so it cannot clash


@dataclass(frozen=True)
class SecretsConfig:
    backend: str = "file"
    service: str | None = None


def secrets_config(
    engine_settings: Mapping[str, Any], file: Path | None = None
) -> tuple[SecretsConfig, list[Problem]]:
    """Read the `secrets` key; problems (with the default config) when it is invalid."""
    raw, problems = object_at(engine_settings, "secrets", file)
    if problems:
        return SecretsConfig(), problems
    backend = raw.get("backend", "file")
    service = raw.get("service")
    if backend not in BACKENDS:
        problems.append(
            Problem(
                file,
                "secrets.backend",
                'secrets.backend must be "file" or "keyring"',
                repr(backend),
            )
        )
    if service is not None and (not isinstance(service, str) or not service.strip()):
        problems.append(
            Problem(
                file, "secrets.service", "secrets.service must be a non-empty string", repr(service)
            )
        )
    if problems:
        return SecretsConfig(), problems
    return SecretsConfig(backend=backend, service=service), []


def default_service(workspace: Path) -> str:
    return f"grambot:{workspace.resolve()}"


def open_store(
    workspace: Path, config: SecretsConfig, external: ExternalSecrets | None = None
) -> SecretsStore:
    """The configured store, under the environment's secrets (GRAMBOT_SECRET__*,
    GRAMBOT_SECRETS_DIR: grambot.secrets.sources) when there are any; `external` defaults to
    those of this process's environment."""
    scout = workspace / ".scout"
    store: SecretsStore
    if config.backend == "keyring":
        store = KeyringSecretsStore(
            config.service or default_service(workspace), scout / "secrets.lock"
        )
    else:
        store = FileSecretsStore(scout / "secrets.json")
    if external is None:
        external = ExternalSecrets()
    return LayeredSecretsStore(store, external) if external else store


def _require_keyring() -> None:
    """The keyring backend without the keyring package: say which extra brings it."""
    import importlib.util

    if importlib.util.find_spec("keyring") is None:
        raise SecretsError(
            "the keyring secrets backend needs the keyring package, which is not installed: "
            'pip install \'grambot[keyring]\' (or use "secrets": {"backend": "file"} in '
            ".scout/settings.json)"
        )


class KeyringSecretsStore:
    """Secrets in the system keyring (`keyring` package), one service per workspace."""

    def __init__(self, service: str, lock_path: Path) -> None:
        self.service = service
        self.lock_path = lock_path

    def __repr__(self) -> str:
        return f"KeyringSecretsStore({self.service!r})"

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        _require_keyring()
        import keyring.errors

        try:
            yield
        except keyring.errors.NoKeyringError:
            raise SecretsError(
                f"{what}: no system keyring is available here; install one or use "
                '"secrets": {"backend": "file"} in .scout/settings.json'
            ) from None
        except keyring.errors.KeyringError as exc:
            raise SecretsError(
                f"{what}: keyring error ({type(exc).__name__}) in service {self.service!r}"
            ) from None

    def _index(self) -> dict[str, list[str]]:
        _require_keyring()
        import keyring

        with self._errors("reading the keyring index"):
            raw = keyring.get_password(self.service, INDEX_USER)
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): [str(x) for x in v] for k, v in data.items() if isinstance(v, list)}

    def _save_index(self, index: dict[str, list[str]]) -> None:
        _require_keyring()
        import keyring

        with self._errors("writing the keyring index"):
            keyring.set_password(self.service, INDEX_USER, json.dumps(index, sort_keys=True))

    def _locked(self) -> Any:
        return locked(
            self.lock_path, "nothing was stored", error=lambda busy: SecretsError(str(busy))
        )

    def get(self, instance_id: str, key: str) -> str | None:
        _require_keyring()
        import keyring

        with self._errors(f"secret {instance_id}/{key}"):
            value: str | None = keyring.get_password(self.service, f"{instance_id}/{key}")
        return value

    def keys(self, instance_id: str) -> list[str]:
        return sorted(self._index().get(instance_id, []))

    def instance_ids(self) -> list[str]:
        return sorted(i for i, keys in self._index().items() if keys)

    def set(self, instance_id: str, key: str, value: str) -> None:
        _require_keyring()
        import keyring

        if not isinstance(value, str):
            raise SecretsError(f"secret {instance_id}/{key}: value must be a string")
        with self._locked():
            with self._errors(f"secret {instance_id}/{key}"):
                keyring.set_password(self.service, f"{instance_id}/{key}", value)
            index = self._index()
            keys = index.setdefault(instance_id, [])
            if key not in keys:
                keys.append(key)
                self._save_index(index)

    def delete(self, instance_id: str, key: str) -> bool:
        _require_keyring()
        import keyring
        import keyring.errors

        with self._locked():
            index = self._index()
            found = key in index.get(instance_id, [])
            try:
                with self._errors(f"secret {instance_id}/{key}"):
                    keyring.delete_password(self.service, f"{instance_id}/{key}")
                found = True
            except keyring.errors.PasswordDeleteError:
                pass
            except SecretsError:
                if not found:
                    raise
            if key in index.get(instance_id, []):
                index[instance_id].remove(key)
                if not index[instance_id]:
                    del index[instance_id]
                self._save_index(index)
            return found


def store_instance_ids(store: SecretsStore) -> list[str]:
    """Instance ids holding at least one secret, for stores that can tell."""
    if isinstance(store, SelectedSecretsStore):
        store = store.current
    if isinstance(store, LayeredSecretsStore):
        return sorted(set(store_instance_ids(store.inner)) | store.external.instance_ids())
    ids = getattr(store, "instance_ids", None)
    if callable(ids):
        return list(ids())
    if isinstance(store, FileSecretsStore):
        data = store._read()  # same package; the file store has no listing API of its own
        return sorted(i for i, entries in data.items() if entries)
    return []


class SelectedSecretsStore:
    """The running engine's store: a switchable backend, reporting in-process writes."""

    def __init__(
        self,
        opener: Callable[[SecretsConfig], SecretsStore],
        config: SecretsConfig | None = None,
        *,
        on_write: Callable[[str], None] | None = None,
        on_value: Callable[[str], None] | None = None,
        on_select: Callable[[], None] | None = None,
    ) -> None:
        self.config = config or SecretsConfig()
        self.current = opener(self.config)
        self._open = opener  # a backend's store, from its config (open_store, say)
        self.on_write = on_write  # called with the instance id after a set/delete
        self.on_value = on_value  # called with every value read or written (log masking)
        self.on_select = on_select  # called after the backend was switched

    def select(self, config: SecretsConfig) -> bool:
        """Use the backend `config` names from now on; False when it is in use already."""
        if config == self.config:
            return False
        self.current, self.config = self._open(config), config
        if self.on_select is not None:
            self.on_select()
        return True

    def get(self, instance_id: str, key: str) -> str | None:
        value = self.current.get(instance_id, key)
        if value is not None and self.on_value is not None:
            self.on_value(value)
        return value

    def keys(self, instance_id: str) -> list[str]:
        return self.current.keys(instance_id)

    def set(self, instance_id: str, key: str, value: str) -> None:
        if self.on_value is not None and isinstance(value, str):
            self.on_value(value)
        self.current.set(instance_id, key, value)
        if self.on_write is not None:
            self.on_write(instance_id)

    def delete(self, instance_id: str, key: str) -> bool:
        found = self.current.delete(instance_id, key)
        if self.on_write is not None:
            self.on_write(instance_id)
        return found
