"""The runtime context of a plugin instance: Summit's `context.*`, grambot's `api.*`.

`PluginRuntime` is what an execute-style plugin receives as `context`, and what `PluginApi`
forwards `api.env`, `api.http`, `api.cache`, `api.vault` and `api.manifest` to:

* `logger`: the logger `grambot.plugin.<instanceId>`.
* `http`: an `httpx.AsyncClient` owned by the instance, created on first use (an eager client
  costs ~25 ms and ~800 KB) and closed when the instance unloads.
* `env`: a read-only mapping of the variables named in the manifest's `allowedEnv`, read from the
  process environment when asked. Others are invisible (not in `keys()`, `in` is False), and
  reading one raises `AccessDenied` naming the allowlist.
* `cache`: `get/set/delete` with an optional TTL in seconds, on the engine's cache, in a namespace
  of its own: `<cacheKeyPrefix>:<instanceId>` (just `<instanceId>` without a prefix), so two
  instances never see each other's keys, even two instances of one plugin.
* `vault`: secrets by path, read from the engine's secrets store. `<instanceId>/<key>` is the
  instance's own (what `api.secrets` holds) and always readable; `shared/<name>/<key>` is a
  secret shared on purpose, stored in the secrets store under the id `shared/<name>` (instance
  ids cannot contain `/`, so it never collides with one), and readable only under one of the
  manifest's `allowedVaultPaths` prefixes. Any other instance's path is refused whatever a
  manifest says. A refused path is named in the `AccessDenied` error.
* `manifest`: the plugin's parsed `PluginDescriptor` (`raw` holds the JSON as written).

None of this is a security boundary: a plugin runs in the engine's process and can reach
`os.environ` or the secrets file directly. The allowlists keep honest plugins honest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from grambot.config.descriptor import PluginDescriptor
from grambot.containment.loader import instance_logger_name
from grambot.errors import AccessDenied, MissingSecret
from grambot.masking import MASK
from grambot.secrets.sources import ENV_PREFIX as SECRET_ENV_PREFIX

if TYPE_CHECKING:
    import httpx

    from grambot.contract.info import InstanceInfo
    from grambot.secrets.store import SecretsStore

__all__ = [
    "SHARED_VAULT_ROOT",
    "CacheBackend",
    "InstanceCache",
    "InstanceEnv",
    "InstanceVault",
    "MemoryCache",
    "PluginRuntime",
    "cache_namespace",
]

SHARED_VAULT_ROOT = "shared"
_T = TypeVar("_T")
_MISSING: Any = object()
_http_lock = threading.Lock()


def _who(descriptor: PluginDescriptor, instance_id: str) -> str:
    if descriptor.id == instance_id:
        return f"plugin {descriptor.id!r}"
    return f"plugin {descriptor.id!r} (instance {instance_id!r})"


# -- env -------------------------------------------------------------------------------------------


class InstanceEnv(Mapping[str, str]):
    """`api.env` / `context.env`: the allowed environment variables that are set."""

    __slots__ = ("_allowed", "_descriptor", "_environ", "_instance_id")

    def __init__(
        self,
        descriptor: PluginDescriptor,
        instance_id: str,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._descriptor = descriptor
        self._instance_id = instance_id
        self._allowed = descriptor.allowed_env
        if environ is None:
            import os

            environ = os.environ
        self._environ = environ

    def _check(self, name: str) -> None:
        if name.startswith(SECRET_ENV_PREFIX):  # another instance's, maybe: api.secrets only
            raise AccessDenied(
                "env",
                name,
                f"{_who(self._descriptor, self._instance_id)} may not read the environment "
                f"variable {name!r}: {SECRET_ENV_PREFIX}* variables are instances' secrets, "
                "read through api.secrets by the instance they name",
            )
        if name not in self._allowed:
            allowlist = ", ".join(self._allowed) if self._allowed else "empty"
            raise AccessDenied(
                "env",
                name,
                f"{_who(self._descriptor, self._instance_id)} may not read the environment "
                f"variable {name!r}: it is not in allowedEnv ({allowlist}) of "
                f"{self._descriptor.descriptor_path}",
            )

    def __getitem__(self, name: str) -> str:
        self._check(name)
        return self._environ[name]

    @overload
    def get(self, name: str, /) -> str | None: ...
    @overload
    def get(self, name: str, /, default: str | _T) -> str | _T: ...
    def get(self, name: str, /, default: Any = None) -> Any:
        """The variable's value, or `default` if it is allowed but unset; AccessDenied if not
        allowed."""
        self._check(name)
        return self._environ.get(name, default)

    def _visible(self) -> list[str]:
        return [
            n for n in self._allowed if n in self._environ and not n.startswith(SECRET_ENV_PREFIX)
        ]

    def __contains__(self, name: object) -> bool:
        return name in self._visible()

    def __iter__(self) -> Iterator[str]:
        return iter(self._visible())

    def __len__(self) -> int:
        return len(self._visible())

    def __repr__(self) -> str:
        return f"InstanceEnv(allowed={list(self._allowed)!r})"  # values stay out of logs


# -- cache -----------------------------------------------------------------------------------------


class CacheBackend(Protocol):
    """Where `api.cache` keeps values; keys arrive already namespaced."""

    def get(self, namespace: str, key: str) -> Any: ...

    def set(self, namespace: str, key: str, value: Any, ttl: float | None) -> None: ...

    def delete(self, namespace: str, key: str) -> bool: ...


class MemoryCache:
    """The engine's in-process cache: values live until their TTL passes or the process ends.

    Keys are (namespace, key) pairs, never joined strings, so no key of one namespace can spell
    a key of another. Expired entries are dropped when read and swept every few hundred writes.
    """

    _SWEEP_EVERY = 256

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._entries: dict[tuple[str, str], tuple[Any, float | None]] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._writes = 0

    def get(self, namespace: str, key: str) -> Any:
        with self._lock:
            entry = self._entries.get((namespace, key))
            if entry is None:
                return _MISSING
            value, expires = entry
            if expires is not None and expires <= self._clock():
                del self._entries[(namespace, key)]
                return _MISSING
            return value

    def set(self, namespace: str, key: str, value: Any, ttl: float | None) -> None:
        with self._lock:
            now = self._clock()
            self._entries[(namespace, key)] = (value, None if ttl is None else now + ttl)
            self._writes += 1
            if self._writes % self._SWEEP_EVERY == 0:
                for k in [k for k, (_, e) in self._entries.items() if e is not None and e <= now]:
                    del self._entries[k]

    def delete(self, namespace: str, key: str) -> bool:
        with self._lock:
            return self._entries.pop((namespace, key), None) is not None

    def keys(self, namespace: str) -> list[str]:
        """The live keys of one namespace (for tests and tooling)."""
        now = self._clock()
        with self._lock:
            return sorted(
                k
                for (ns, k), (_, e) in self._entries.items()
                if ns == namespace and (e is None or e > now)
            )

    def __len__(self) -> int:
        return len(self._entries)


def cache_namespace(descriptor: PluginDescriptor | None, instance_id: str) -> str:
    """`<cacheKeyPrefix>:<instanceId>`, or `<instanceId>` when the manifest sets no prefix.

    Instance ids contain no `:`, so the namespace always tells the instance apart.
    """
    prefix = descriptor.cache_key_prefix if descriptor is not None else None
    return f"{prefix}:{instance_id}" if prefix else instance_id


class InstanceCache:
    """`api.cache` / `context.cache`: this instance's namespace of the engine's cache."""

    __slots__ = ("_backend", "namespace")

    def __init__(self, backend: CacheBackend, namespace: str) -> None:
        self._backend = backend
        self.namespace = namespace

    def get(self, key: str, default: Any = None) -> Any:
        value = self._backend.get(self.namespace, _key(key))
        return default if value is _MISSING else value

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store `value` under `key`, for `ttl` seconds if given (else until the process ends)."""
        if ttl is not None and not ttl > 0:
            raise ValueError(f"cache ttl must be a number of seconds > 0, got {ttl!r}")
        self._backend.set(self.namespace, _key(key), value, ttl)

    def delete(self, key: str) -> bool:
        """Remove `key`; True if it was there."""
        return self._backend.delete(self.namespace, _key(key))

    def __repr__(self) -> str:
        return f"InstanceCache({self.namespace!r})"


def _key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise TypeError(f"cache keys are non-empty strings, got {key!r}")
    return key


# -- vault -----------------------------------------------------------------------------------------


class InstanceVault:
    """`api.vault` / `context.vault`: secrets by path (see the module docstring for the rules)."""

    __slots__ = ("_descriptor", "_instance_id", "_store")

    def __init__(self, store: SecretsStore, descriptor: PluginDescriptor, instance_id: str) -> None:
        self._store = store
        self._descriptor = descriptor
        self._instance_id = instance_id

    def get(self, path: str, default: str | None = None) -> str | None:
        """The secret at `path`, or `default` if it is reachable but unset."""
        owner, key = self._resolve(path)
        value = self._store.get(owner, key)
        MASK.add([value])  # a shared secret it read may show up in its errors: masked
        return default if value is None else value

    def require(self, path: str) -> str:
        """The secret at `path`; SecretsError naming the path if it is unset."""
        owner, key = self._resolve(path)
        value = self._store.get(owner, key)
        MASK.add([value])
        if value is None:
            raise MissingSecret(
                f"{_who(self._descriptor, self._instance_id)} needs the secret {path!r}: "
                f"run `grambot secrets set {owner} {key}`"
            )
        return value

    def _resolve(self, path: str) -> tuple[str, str]:
        """(secrets-store id, key) of a reachable path; AccessDenied naming it otherwise."""
        who = _who(self._descriptor, self._instance_id)
        parts = path.split("/") if isinstance(path, str) else []
        if len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
            raise AccessDenied(
                "vault",
                str(path),
                f"{who}: vault path {path!r} is not valid: use '{self._instance_id}/<key>' "
                f"or '{SHARED_VAULT_ROOT}/<name>/<key>'",
            )
        if parts[0] == SHARED_VAULT_ROOT:
            if len(parts) < 3:
                raise AccessDenied(
                    "vault",
                    path,
                    f"{who}: vault path {path!r} is not valid: shared secrets are "
                    f"'{SHARED_VAULT_ROOT}/<name>/<key>'",
                )
            if not any(_under(path, prefix) for prefix in self._descriptor.allowed_vault_paths):
                allowed = ", ".join(self._descriptor.allowed_vault_paths) or "empty"
                raise AccessDenied(
                    "vault",
                    path,
                    f"{who} may not read the vault path {path!r}: it is under none of "
                    f"allowedVaultPaths ({allowed}) of {self._descriptor.descriptor_path}",
                )
            return f"{SHARED_VAULT_ROOT}/{parts[1]}", "/".join(parts[2:])
        if parts[0] != self._instance_id:
            raise AccessDenied(
                "vault",
                path,
                f"{who} may not read the vault path {path!r}: it belongs to instance "
                f"{parts[0]!r}; an instance reads only '{self._instance_id}/...' and shared "
                f"paths ('{SHARED_VAULT_ROOT}/<name>/...') its manifest allows",
            )
        return self._instance_id, "/".join(parts[1:])

    def __repr__(self) -> str:
        return f"InstanceVault({self._instance_id!r})"


def _under(path: str, prefix: str) -> bool:
    """Segment-wise prefix match: `shared/notes` covers `shared/notes/x`, not `shared/notesy`."""
    prefix = prefix.rstrip("/")
    return bool(prefix) and (path == prefix or path.startswith(prefix + "/"))


# -- the runtime -----------------------------------------------------------------------------------


class PluginRuntime:
    """The runtime helpers of one instance; every helper is created on first use."""

    __slots__ = (
        "_cache",
        "_cache_backend",
        "_data_dir",
        "_data_dir_made",
        "_env",
        "_http",
        "_secrets",
        "_vault",
        "instance",
        "manifest",
    )

    def __init__(
        self,
        *,
        instance: InstanceInfo,
        manifest: PluginDescriptor,
        secrets: SecretsStore,
        cache: CacheBackend,
        data_dir: Path,
    ) -> None:
        self.instance = instance
        self.manifest = manifest
        self._data_dir = data_dir
        self._data_dir_made = False
        self._secrets = secrets
        self._cache_backend = cache
        self._env: InstanceEnv | None = None
        self._cache: InstanceCache | None = None
        self._vault: InstanceVault | None = None
        self._http: httpx.AsyncClient | None = None

    @property
    def data_dir(self) -> Path:
        """`.scout/plugins/<instanceId>/`, created on first use."""
        if not self._data_dir_made:
            self._data_dir.mkdir(parents=True, exist_ok=True)
            self._data_dir_made = True
        return self._data_dir

    @property
    def logger(self) -> logging.Logger:
        return logging.getLogger(instance_logger_name(self.instance.instance_id))

    @property
    def env(self) -> InstanceEnv:
        if self._env is None:
            self._env = InstanceEnv(self.manifest, self.instance.instance_id)
        return self._env

    @property
    def cache(self) -> InstanceCache:
        if self._cache is None:
            namespace = cache_namespace(self.manifest, self.instance.instance_id)
            self._cache = InstanceCache(self._cache_backend, namespace)
        return self._cache

    @property
    def vault(self) -> InstanceVault:
        if self._vault is None:
            self._vault = InstanceVault(self._secrets, self.manifest, self.instance.instance_id)
        return self._vault

    @property
    def http(self) -> httpx.AsyncClient:
        """The instance's HTTP client (created now if it was not); closed on unload."""
        client = self._http
        if client is None:
            with _http_lock:
                client = self._http
                if client is None:
                    import httpx

                    client = httpx.AsyncClient(
                        headers={"User-Agent": f"grambot ({self.instance.instance_id})"}
                    )
                    self._http = client
        return client

    @property
    def http_created(self) -> bool:
        return self._http is not None

    async def aclose(self) -> None:
        """Close what the instance owns (its HTTP client); safe to call twice."""
        client, self._http = self._http, None
        if client is not None and not client.is_closed:
            await client.aclose()

    def __repr__(self) -> str:
        return f"PluginRuntime({self.instance.instance_id!r})"
