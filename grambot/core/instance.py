"""One entry of settings.json through its whole life: `Instance` (the model is Home Assistant's
`ConfigEntry`).

    disabled ─load()─► loading ─► loaded ─start()─► (connectors running)
                          │          └──unload()──► unloading ─► disabled
                          └─► failed / retrying ──(retry timer, edit, `grambot retry`)─► loading

An Instance owns its entry (`config`), its state with a reason (`failure`), its retry attempt
and timer, the problems of an edit it holds back (`held`: the running instance keeps running as
it was), and its live handles: the `Generation` of its current load (namespace, registrar,
tasks and timers, the object `create` returned, its runtime helpers, the connectors it started).

Its methods are the one implementation of preparing, loading, starting and unloading: every
path (reconcile, retry, secrets change, code reload, `grambot retry/reload`) goes through them,
so a rule kept here holds everywhere: a loaded connector is started again whatever reloaded it,
an unload leaves nothing of the instance running, a plugin's BaseException is its failure. The
manager decides *when* (grambot.core.manager); the instance knows *how*.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from grambot.config.settings import InstanceConfig
from grambot.containment.boundary import describe, engine_cancelled, format_details
from grambot.containment.loader import LoaderSnapshot
from grambot.containment.stages import Progress
from grambot.contract.registrar import KINDS
from grambot.core.failures import Failure, classify
from grambot.core.generation import Generation, Services
from grambot.core.loading import bring_up, new_generation
from grambot.masking import MASK

__all__ = ["Current", "Generation", "Instance", "InstanceState", "Services", "Supervisor"]

logger = logging.getLogger("grambot.instance")


class InstanceState(StrEnum):
    DISABLED = "disabled"
    LOADING = "loading"
    LOADED = "loaded"
    FAILED = "failed"
    RETRYING = "retrying"
    UNLOADING = "unloading"


class Supervisor(Protocol):
    """Who runs the instances (grambot.core.manager.PluginManager): an instance tells it what
    needs the manager's lock."""

    def retry_due(self, instance: Instance) -> None:
        """Its retry timer fired: load it again."""
        ...

    def lost(self, instance: Instance, generation: Generation, failure: Failure) -> None:
        """The process of its load `generation` ended unasked: fail it (Instance.lost)."""
        ...


class Current(NamedTuple):
    """What `plan` reads of an instance (grambot.core.plan), as a plain value: for tests and
    tools that plan without a running engine (an `Instance` has the same attributes)."""

    config: InstanceConfig
    state: InstanceState
    failure_kind: str | None = None
    load_seq: int = 0


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def settings_digest(config: InstanceConfig) -> str:
    """A short digest of an entry's settings (status shows which settings are in force)."""
    data = json.dumps(config.settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(data.encode(), digest_size=6).hexdigest()


def _migrated(generation: Generation | None) -> dict[str, int] | None:
    if generation is None or generation.migrated is None:
        return None
    return {"from": generation.migrated[0], "to": generation.migrated[1]}


class Instance:
    def __init__(
        self,
        config: InstanceConfig,
        services: Services,
        supervisor: Supervisor,
        state: InstanceState = InstanceState.DISABLED,
    ) -> None:
        self.config = config
        self.state = state  # LOADING for a new entry about to load
        self.since = time.time()
        self.failure: Failure | None = None
        self.attempt = 0  # the number of the pending retry
        self.next_attempt_at: float | None = None
        self.held: tuple[str, ...] = ()  # problems of the entry as written, not applied
        self.load_seq = 0
        self.stalls = 0  # times it blocked the event loop (grambot.app.watchdog)
        self._services = services
        self._supervisor = supervisor
        self._generation: Generation | None = None
        self._retry: asyncio.TimerHandle | None = None

    # -- what it is ------------------------------------------------------------------------

    @property
    def instance_id(self) -> str:
        return self.config.instance_id

    @property
    def plugin_id(self) -> str:
        return self.config.plugin_id

    @property
    def retry_handle(self) -> asyncio.TimerHandle | None:
        return self._retry

    @property
    def generation(self) -> Generation | None:
        """The live handles of its current load (None when nothing of it runs)."""
        return self._generation

    @property
    def failure_kind(self) -> str | None:
        return self.failure.kind if self.failure is not None else None

    def registrations(self) -> dict[str, list[str]]:
        generation = self._generation
        if generation is None:
            return {kind: [] for kind in KINDS}
        return generation.registrar.registrations()

    def to_status(self) -> dict[str, Any]:
        """This instance in status.json."""
        failure, generation = self.failure, self._generation
        return {
            "instanceId": self.instance_id,
            "pluginId": self.plugin_id,
            "state": str(self.state),
            "reason": failure.kind if failure else None,
            "error": failure.message if failure else None,
            "since": iso(self.since),
            "registrations": self.registrations(),
            "attempt": self.attempt,
            "nextAttemptAt": iso(self.next_attempt_at) if self.next_attempt_at else None,
            "held": list(self.held),
            "health": generation.health.to_status() if generation is not None else None,
            "stalls": self.stalls,
            "migrated": _migrated(generation),
            "settingsDigest": settings_digest(self.config),
            "ignoredSettings": list(generation.ignored) if generation is not None else [],
            "isolation": self._isolation_status(),
        }

    def _isolation_status(self) -> dict[str, Any]:
        isolation = self._services.isolation
        if isolation is None:
            return {"mode": "inprocess"}
        return isolation.status(self.instance_id, self._generation)

    @property
    def healthy(self) -> bool:
        """False when its long-running work last reported an error (`api.health`)."""
        generation = self._generation
        return generation is None or generation.health.healthy

    def __repr__(self) -> str:
        return f"Instance({self.instance_id!r}, {self.state}, failure={self.failure!r})"

    # -- state changes the manager makes without plugin code -------------------------------

    def disable(self, config: InstanceConfig) -> None:
        """The entry is disabled (call `unload` first if it runs)."""
        self.cancel_retry()
        self.config, self.held, self.attempt = config, (), 0
        if self.state is not InstanceState.DISABLED:
            self._set(InstanceState.DISABLED)

    def hold(self, problems: tuple[str, ...]) -> None:
        """The entry as written cannot be applied: whatever runs keeps running as it was."""
        self.held = problems
        self._services.on_change()

    def keep(self, config: InstanceConfig) -> None:
        """The entry is unchanged as data (key order, say): nothing to do."""
        self.config = config
        if self.held:
            self.held = ()

    def reject(self, config: InstanceConfig, failure: Failure) -> None:
        """The entry cannot load at all (its plugin is unknown): `failed`, nothing tried."""
        self.cancel_retry()
        self.config, self.held, self.attempt = config, (), 0
        self._set(InstanceState.FAILED, failure)
        logger.error(
            "instance %s (plugin %s): %s",
            self.instance_id,
            self.plugin_id,
            failure.message,
            extra=self._fields("instance.failed", stage=failure.stage, kind=failure.kind),
        )

    def cancel_retry(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self.next_attempt_at = None

    # -- the lifecycle ---------------------------------------------------------------------

    async def prepare(self, config: InstanceConfig) -> Generation | Failure:
        """Import the plugin of `config` into a new generation and validate its settings, and
        nothing else: the check an edit passes before it may replace a running instance."""
        progress = Progress("lookup")
        generation: Generation | None = None
        try:
            generation = self._new_generation(config)
            await generation.import_and_validate(progress, create=False)
        except BaseException as exc:
            if generation is not None:
                generation.discard()
            if engine_cancelled(exc):
                raise
            return classify(exc, progress.stage, self._redact)
        return generation

    async def load(
        self,
        config: InstanceConfig | None = None,
        *,
        prepared: Generation | None = None,
        retry: bool = False,
        snapshot: LoaderSnapshot | None = None,
    ) -> bool:
        """Bring up a new generation of it (grambot.core.loading.bring_up), or `prepared`, the
        one an edit validated. True when loaded; otherwise what was done is undone and the
        instance is `failed` or `retrying`. `retry`: this is a retry (the attempt count goes
        on). `snapshot`: the view of the plugin files its batch of loads shares (the
        manager's)."""
        if config is not None:
            self.config = config
        self.cancel_retry()
        if not retry:
            self.attempt = 0
        self._set(InstanceState.LOADING)
        progress = Progress("lookup")
        generation = prepared
        try:
            if generation is None:
                generation = self._new_generation(self.config)
            self._generation = generation
            failure = await bring_up(
                generation,
                progress,
                self._redact,
                imported=prepared is not None,
                snapshot=snapshot,
            )
        except BaseException as exc:  # no generation could be made, or the engine cancelled
            if generation is not None and self._generation is generation:
                self._generation = None  # bring_up released it
            if engine_cancelled(exc):  # shutdown, or a caller gave up
                cancelled = Failure("cancelled", progress.stage, "its load was cancelled", True)
                self._set(InstanceState.FAILED, cancelled)  # the next reconcile loads it again
                raise
            failure = classify(exc, progress.stage, self._redact)
            del exc
        if failure is not None:
            if self._generation is generation:
                self._generation = None
            self._settle(failure)
            return False
        assert generation is not None
        self.load_seq = next(self._services.load_order)
        retries, self.attempt = self.attempt, 0
        self._set(InstanceState.LOADED)
        if generation.durable is not None:  # its stored jobs run from now on (issue 16)
            generation.durable.loaded()
        logger.info(
            "instance %s (plugin %s) loaded%s",
            self.instance_id,
            self.plugin_id,
            f" after {retries} retries" if retries else "",
            extra=self._fields("instance.loaded", attempt=retries or None),
        )
        if generation.ignored:
            logger.warning(
                "instance %s: plugin %s has no setting %s: ignored (misspelt?)",
                self.instance_id,
                self.plugin_id,
                ", ".join(repr(key) for key in generation.ignored),
                extra=self._fields("instance.settings-ignored"),
            )
        return True

    async def start(self) -> None:
        """Start the connectors this instance registered and has not started (once the whole
        batch it loaded with is loaded, so no message arrives before the providers it needs).
        A connector that fails to start fails the instance."""
        generation = self._generation
        if self.state is not InstanceState.LOADED or generation is None:
            return
        connectors = self._services.registries.connectors
        for key in generation.registrar.registrations()["connectors"]:
            connector = connectors.get(key)
            if connector is None or connector in generation.started:
                continue
            start = getattr(connector, "wrapped", connector).start
            try:
                await generation.stage(start, "connector start", generation.deadlines.load)
            except BaseException as exc:
                if engine_cancelled(exc):
                    raise
                failure = classify(exc, "connector start", self._redact)
                del exc
                self._set(InstanceState.UNLOADING)
                await self._teardown(generation)
                self._settle(failure)
                return
            generation.started.append(connector)

    async def reconfigure(self, config: InstanceConfig) -> bool | Failure:
        """Apply `config` to the running instance in place, when only its settings changed and
        its plugin object has `reconfigure(settings) -> bool` that accepts them. The settings are
        migrated and validated first: a Failure says why they cannot apply (the caller holds
        the edit). False: reload it instead (no hook, the hook said no, or it failed)."""
        generation = self._generation
        if (
            generation is None
            or self.state is not InstanceState.LOADED
            or config.plugin_id != self.plugin_id
            or config.isolation_spec != self.config.isolation_spec  # another process: reload
        ):
            return False
        hook = getattr(generation.plugin_object, "reconfigure", None)
        if not callable(hook):
            return False
        try:
            settings, migrated = await generation.validate(config)
        except BaseException as exc:
            if engine_cancelled(exc):
                raise
            return classify(exc, "settings validation", self._redact)
        try:
            accepted = await generation.stage(
                hook, "reconfigure", generation.deadlines.load, settings
            )
        except BaseException as exc:
            if engine_cancelled(exc):
                raise
            logger.warning(
                "instance %s (plugin %s): reconfigure failed (%s); reloading it instead",
                self.instance_id,
                self.plugin_id,
                self._redact(describe(exc)),
                extra=self._fields("instance.reconfigure-failed", stage="reconfigure"),
            )
            return False
        if accepted is not True:
            return False
        generation.reconfigured(config, settings, migrated)
        self.config, self.held = config, ()
        self._services.on_change()
        logger.info(
            "instance %s (plugin %s) reconfigured in place",
            self.instance_id,
            self.plugin_id,
            extra=self._fields("instance.reconfigured"),
        )
        return True

    async def unload(self) -> None:
        """Stop its connectors, call its `unload`, then remove everything it left: its
        registrations (later ones refused), tasks, timers, http client and modules. A stage
        that fails or hangs is logged and passed: unload always completes."""
        self.cancel_retry()
        generation = self._generation
        if generation is None:
            return
        self._set(InstanceState.UNLOADING)
        try:
            await self._teardown(generation)  # interrupted, it still releases what is left
        finally:
            self._set(InstanceState.DISABLED)
        logger.info(
            "instance %s (plugin %s) unloaded",
            self.instance_id,
            self.plugin_id,
            extra=self._fields("instance.unloaded"),
        )

    async def lost(self, generation: Generation, failure: Failure) -> None:
        """The process of its current load ended unasked (process isolation; its proxies are
        gone already): what is left of the load is released, and it fails with the reason,
        retried with the engine's backoff."""
        if self._generation is not generation or self.state is not InstanceState.LOADED:
            return
        self._set(InstanceState.UNLOADING)
        await self._teardown(generation)
        self._settle(failure)

    def _new_generation(self, config: InstanceConfig) -> Generation:
        return new_generation(self._services, config, self._task_failed, self._lost)

    def _lost(self, generation: Generation, failure: Failure) -> None:
        self._supervisor.lost(self, generation, failure)

    async def _teardown(self, generation: Generation) -> None:
        """The one teardown (Generation.teardown): `unload` is called when `create` ran."""
        try:
            await generation.teardown(call_unload=generation.created, redact=self._redact)
        finally:
            if self._generation is generation:
                self._generation = None

    # -- state -----------------------------------------------------------------------------

    def _settle(self, failure: Failure) -> None:
        """After a failed load: `retrying` with a timer (a failure that may pass, retries on)
        or `failed`; the first failure is logged with its traceback, later ones in one line."""
        policy = self._services.retry_policy
        iid, pid = self.instance_id, self.plugin_id
        details = failure.details or None  # the traceback: `exception` in JSON, below in text
        if not failure.recoverable or policy is None:
            self._set(InstanceState.FAILED, failure)
            logger.error(
                "instance %s (plugin %s) failed at %s: %s",
                iid,
                pid,
                failure.stage,
                failure.message,
                extra=self._fields(
                    "instance.failed", stage=failure.stage, kind=failure.kind, details=details
                ),
            )
            return
        self.attempt += 1
        delay = policy.delay(self.attempt)
        self.next_attempt_at = time.time() + delay
        loop = asyncio.get_running_loop()
        # a fresh context: the timer is the engine's, never counted as the instance's own
        self._retry = loop.call_later(delay, self._retry_fired, context=contextvars.Context())
        self._set(InstanceState.RETRYING, failure)
        fields = self._fields(
            "instance.retrying", stage=failure.stage, kind=failure.kind, attempt=self.attempt
        )
        if self.attempt == 1:
            logger.error(
                "instance %s (plugin %s) failed at %s: %s; retrying in %.3g s",
                iid,
                pid,
                failure.stage,
                failure.message,
                delay,
                extra={**fields, "details": details},
            )
        else:
            logger.warning(
                "instance %s (plugin %s): retry %d failed at %s: %s; next attempt in %.3g s",
                iid,
                pid,
                self.attempt - 1,
                failure.stage,
                failure.message,
                delay,
                extra=fields,
            )

    def _retry_fired(self) -> None:
        self._retry = None
        self._supervisor.retry_due(self)

    def _set(self, state: InstanceState, failure: Failure | None = None) -> None:
        if state is not InstanceState.RETRYING:
            self.next_attempt_at = None
        self.state = state
        self.failure = failure
        self.since = time.time()
        self._services.on_change()

    def _redact(self, text: str) -> str:
        """`text` through the one masker (grambot.masking), this instance's secrets included
        even if it never read them (plugin errors may quote them)."""
        return MASK.redact_instance(self._services.secrets, self.instance_id, text)

    def _fields(self, event: str, **more: object) -> dict[str, object]:
        """Structured fields of a log record about this instance (grambot.app.logs)."""
        return {"event": event, "instance": self.instance_id, **more}

    def _task_failed(self, instance_id: str, task_name: str, exc: BaseException) -> None:
        logger.error(
            "instance %s: background task %s failed: %s",
            instance_id,
            task_name,
            self._redact(describe(exc)),
            extra={
                "event": "instance.task-failed",
                "instance": instance_id,
                "details": self._redact(format_details(exc)),
            },
        )
