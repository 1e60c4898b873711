"""Live checks: does this entry work, with these credentials, right now?

`check_entry` loads an entry in a throwaway generation: its own import namespace, scratch
registries (nothing it registers reaches the engine's), a scratch data folder, an event queue
nobody reads, and the secrets of its instance seen through an overlay (candidate values first;
what it writes stays in memory). It runs import → settings → create → load — never `start`: a
polling check would steal updates from the running instance — then the plugin's `check(api)`
hook, and unloads. The result is ok, or the typed reason (`auth`, `network`, ...) with a
message masked of every secret it saw.

Used by `grambot check ID`, `grambot enable ... --check` and `grambot secrets set ... --check`
(grambot/cli/hooks.py), through `Engine.check`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from grambot.config.settings import InstanceConfig
from grambot.containment.boundary import describe, engine_cancelled
from grambot.containment.stages import Progress, StagePool
from grambot.contract.context import MemoryCache
from grambot.core.failures import Failure, classify
from grambot.core.generation import Applied, Generation, Isolation, Services
from grambot.core.loading import bring_up, new_generation
from grambot.events.event import PluginEventQueue
from grambot.masking import MASK
from grambot.registries import Registries
from grambot.secrets.store import SecretsStore

__all__ = ["CheckResult", "OverlaySecrets", "check_entry"]

logger = logging.getLogger("grambot.check")


@dataclass(frozen=True)
class CheckResult:
    instance_id: str
    plugin_id: str
    ok: bool
    reason: str | None  # the failure kind (`auth`, `network`, `invalid-settings`, ...)
    message: str  # what the plugin's check said, or why it failed (secrets masked)

    def __str__(self) -> str:
        who = f"{self.instance_id} ({self.plugin_id})"
        if self.ok:
            return f"ok: {who}" + (f": {self.message}" if self.message else "")
        return f"{who}: {self.reason}: {self.message}"


class OverlaySecrets:
    """The store's secrets of one instance with `candidates` laid over them; writes stay in
    memory. `on_value` sees every value read (the logs mask them)."""

    def __init__(
        self,
        base: SecretsStore,
        instance_id: str,
        candidates: Mapping[str, str] | None = None,
        on_value: Callable[[str], None] = lambda value: None,
    ) -> None:
        self._base = base
        self._instance_id = instance_id
        self._written: dict[str, str | None] = dict(candidates or {})
        self._on_value = on_value

    def get(self, instance_id: str, key: str) -> str | None:
        if instance_id == self._instance_id and key in self._written:
            value = self._written[key]
        else:
            value = self._base.get(instance_id, key)
        if value is not None:
            self._on_value(value)
        return value

    def set(self, instance_id: str, key: str, value: str) -> None:
        if instance_id != self._instance_id:
            raise PermissionError("a check writes only its own instance's secrets")
        self._written[key] = value

    def delete(self, instance_id: str, key: str) -> bool:
        existed = self.get(instance_id, key) is not None
        if instance_id == self._instance_id:
            self._written[key] = None
        return existed

    def keys(self, instance_id: str) -> list[str]:
        keys = set(self._base.keys(instance_id))
        if instance_id == self._instance_id:
            keys |= {k for k, v in self._written.items() if v is not None}
            keys -= {k for k, v in self._written.items() if v is None}
        return sorted(keys)


async def check_entry(
    applied: Applied,
    isolation: Isolation | None,
    config: InstanceConfig,
    secrets: SecretsStore,
    stage_pool: StagePool,
) -> CheckResult:
    """Load `config` for a check (see the module docstring) and unload it again, with the
    engine's catalog, deadlines and engine settings (`applied`), its isolation backend and its
    stage workers."""
    instance_id = config.instance_id
    progress = Progress("lookup")
    failure: Failure | None = None
    detail = ""

    def redact(text: str) -> str:
        return MASK.redact_instance(secrets, instance_id, text)

    def task_failed(iid: str, name: str, exc: BaseException) -> None:
        logger.warning(
            "check of %s: background task %s failed: %s", iid, name, redact(describe(exc))
        )

    with tempfile.TemporaryDirectory(prefix=f"grambot-check-{instance_id}-") as scratch:
        services = Services(
            registries=Registries(),
            events=PluginEventQueue(),
            secrets=secrets,
            cache=MemoryCache(),
            data_root=Path(scratch),
            applied=lambda: applied,
            isolation=isolation,  # "isolation": "process": the check runs in a child
            stage_pool=stage_pool,  # the engine's workers, lent for the check
        )
        generation: Generation | None = None
        try:
            made = new_generation(services, config, task_failed, _lost)
            failure = await bring_up(made, progress, redact)  # undone unless it loaded
            if failure is None:
                generation = made
                detail = await generation.run_check(progress)
        except BaseException as exc:
            if engine_cancelled(exc):
                raise
            failure = classify(exc, progress.stage, redact)
        finally:
            if generation is not None:
                await generation.teardown(call_unload=generation.created, redact=redact)
        if failure is not None:
            return CheckResult(instance_id, config.plugin_id, False, failure.kind, failure.message)
    return CheckResult(instance_id, config.plugin_id, True, None, redact(detail))


def _lost(generation: Generation, failure: Failure) -> None:
    """A checked instance's process ended: its step fails with the reason already."""
