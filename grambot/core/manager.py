"""PluginManager: executes plans, so the running instances match settings.json.

Every operation (a reconcile, a reload, a retry, shutdown) takes one lock, so an instance is
never loaded twice; a reconcile still waiting when a newer one arrives is superseded. The steps
of one reconcile (grambot.core.plan):

1. entries that would replace a running instance are imported and validated first, each in a
   new generation, while the old one keeps running: an edit that does not pass is held;
2. removed, disabled and validly replaced instances unload, last loaded first;
3. new, changed and re-enabled instances load concurrently, then the connectors they
   registered start (after the whole batch loaded: no message arrives before the providers);
4. an instance that lost a registration conflict to an instance that left retries at once.

Every path that brings instances up (reconcile, `reload`, `retry_now`, a retry timer) goes
through `_bring_up`, so loaded connectors are always started.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager, nullcontext

from grambot.config.settings import EngineSettings, InstanceConfig
from grambot.containment.loader import LoaderSnapshot
from grambot.containment.tracking import install_task_tracking
from grambot.core.failures import Failure
from grambot.core.instance import Generation, Instance, InstanceState, Services
from grambot.core.plan import Action, Plan, Step, plan

__all__ = ["PluginManager"]

logger = logging.getLogger(__name__)

_Load = tuple[Instance, InstanceConfig | None, Generation | None]
# what the application wraps a batch of N loads in (grambot.app.collector); the engine itself
# changes no interpreter setting
AroundLoads = Callable[[int], AbstractContextManager[object]]


class PluginManager:
    def __init__(self, services: Services, *, around_loads: AroundLoads | None = None) -> None:
        """`services.on_change` must reach `changed` (the Engine wires it)."""
        self.services = services
        self._around_loads: AroundLoads = around_loads or (lambda loads: nullcontext())
        self._instances: dict[str, Instance] = {}
        self._lock = asyncio.Lock()
        self._latest: EngineSettings | None = None
        self._listeners: list[Callable[[], None]] = []
        self._retry_tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = threading.get_ident()

    # -- what runs -------------------------------------------------------------------------

    def instance(self, instance_id: str) -> Instance | None:
        return self._instances.get(instance_id)

    def instances(self) -> list[Instance]:
        return list(self._instances.values())

    def state_of(self, instance_id: str) -> InstanceState | None:
        instance = self._instances.get(instance_id)
        return instance.state if instance is not None else None

    def loaded_ids(self) -> list[str]:
        """Loaded instances in load order."""
        loaded = [i for i in self._instances.values() if i.state is InstanceState.LOADED]
        return [i.instance_id for i in sorted(loaded, key=lambda i: i.load_seq)]

    def instances_of(self, plugin_id: str) -> list[str]:
        return [i for i, inst in self._instances.items() if inst.plugin_id == plugin_id]

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener()` after every state change; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # -- operations ------------------------------------------------------------------------

    async def sync_with_settings(self, settings: EngineSettings) -> bool:
        """Reconcile with `settings`. Returns False if a newer call superseded this one."""
        self._latest = settings
        async with self._lock:
            if settings is not self._latest:
                return False
            self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
            install_task_tracking(asyncio.get_running_loop())
            catalog = frozenset(self.services.catalog.ids())
            await self._execute(plan(self._instances, settings, catalog))
            return True

    async def reload(self, instance_ids: list[str]) -> list[str]:
        """Unload (if running) and load again these enabled instances with their current entry
        (a pending retry is dropped). Returns the ids it reloaded."""
        async with self._lock:
            chosen = self._pick(instance_ids, lambda i: i.config.enabled)
            for instance in sorted(chosen, key=lambda i: i.load_seq, reverse=True):
                await instance.unload()
            await self._bring_up([(i, None, None) for i in chosen])
            return [i.instance_id for i in chosen]

    async def retry_now(self, instance_ids: list[str]) -> list[str]:
        """Load again now these failed or retrying instances. Returns the ids it tried."""
        waiting = (InstanceState.FAILED, InstanceState.RETRYING)
        async with self._lock:
            chosen = self._pick(instance_ids, lambda i: i.state in waiting)
            await self._bring_up([(i, None, None) for i in chosen])
            return [i.instance_id for i in chosen]

    async def unload_all(self) -> None:
        """Unload every instance, last loaded first (shutdown). Pending retries are dropped."""
        for instance in self._instances.values():
            instance.cancel_retry()
        for task in list(self._retry_tasks):
            task.cancel()
        async with self._lock:
            for instance in sorted(self.instances(), key=lambda i: i.load_seq, reverse=True):
                await instance.unload()
            self._instances.clear()
            self.changed()

    # -- executing a plan ------------------------------------------------------------------

    async def _execute(self, the_plan: Plan) -> None:
        replacing: dict[str, tuple[InstanceConfig, Generation]] = {}
        loading = the_plan.of(Action.LOAD, Action.REPLACE)
        await self._prestart([s.config for s in loading if s.config is not None])
        try:
            for step, result in await self._validate(the_plan):
                if isinstance(result, Failure):
                    self._instances[step.instance_id].hold((result.message,))
                elif not isinstance(result, bool) and step.config is not None:
                    replacing[step.instance_id] = (step.config, result)
            for step in the_plan.of(Action.HOLD):
                if (held := self._instances.get(step.instance_id)) is not None:
                    held.hold(step.problems)
            await self._unload_for(the_plan, replacing)
            loads = self._apply_records(the_plan, replacing)
        finally:
            for _, generation in replacing.values():  # validated, never loaded
                generation.discard()
        await self._bring_up(loads)

    async def _prestart(self, configs: list[InstanceConfig]) -> None:
        """What isolated loads will need, started now; if it cannot start, that is the
        failure of those instances, reported at their load."""
        isolation = self.services.isolation
        if isolation is None:
            return
        try:
            await isolation.prestart(configs, self.services)
        except Exception as exc:
            logger.error("the zygote of isolated instances did not start: %s", exc)

    async def _validate(self, the_plan: Plan) -> list[tuple[Step, Generation | Failure | bool]]:
        """For each entry that would replace a running instance: reconfigure it in place when
        its plugin can (True), else import and validate the entry in a new generation (or the
        Failure that holds the edit)."""
        steps = [s for s in the_plan.of(Action.REPLACE) if s.config is not None]
        tasks = [asyncio.ensure_future(self._replace(step)) for step in steps]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:  # cancelled: forget the generations already prepared
            for task in tasks:
                if not task.done():
                    task.cancel()
                elif not task.cancelled() and task.exception() is None:
                    result = task.result()
                    if not isinstance(result, (bool, Failure)):
                        result.discard()
            raise
        return list(zip(steps, results, strict=True))

    async def _replace(self, step: Step) -> Generation | Failure | bool:
        assert step.config is not None
        instance = self._instances[step.instance_id]
        done = await instance.reconfigure(step.config)
        if done is not False:
            return done  # True (applied in place) or the Failure that holds the edit
        return await instance.prepare(step.config)

    async def _unload_for(
        self, the_plan: Plan, replacing: dict[str, tuple[InstanceConfig, Generation]]
    ) -> None:
        """Unload what goes away or is validly replaced, last loaded first."""
        going = {s.instance_id for s in the_plan.of(Action.REMOVE, Action.DISABLE)}
        stopping = [
            inst
            for i in going | replacing.keys()
            if (inst := self._instances.get(i)) is not None and inst.state is InstanceState.LOADED
        ]
        for instance in sorted(stopping, key=lambda i: i.load_seq, reverse=True):
            await instance.unload()

    def _apply_records(
        self, the_plan: Plan, replacing: dict[str, tuple[InstanceConfig, Generation]]
    ) -> list[_Load]:
        """Forget removed instances, record disabled, rejected and kept entries; return what
        to load (taking the validated replacements out of `replacing`)."""
        loads: list[_Load] = []
        for step in the_plan.steps:
            if step.action is Action.REMOVE:
                if (gone := self._instances.pop(step.instance_id, None)) is not None:
                    gone.cancel_retry()
                continue
            if step.config is None:  # HOLD
                continue
            instance = self._instances.get(step.instance_id)
            if instance is None:
                first = (
                    InstanceState.LOADING if step.action is Action.LOAD else InstanceState.DISABLED
                )
                instance = Instance(step.config, self.services, self, first)
                self._instances[step.instance_id] = instance
            if step.action is Action.DISABLE:
                instance.disable(step.config)
            elif step.action is Action.REJECT:
                failure = Failure("plugin-not-found", "lookup", step.problems[0], False)
                instance.reject(step.config, failure)
            elif step.action is Action.LOAD:
                instance.held = ()  # the entry as written applies now
                loads.append((instance, step.config, None))
            elif step.instance_id in replacing:
                instance.held = ()
                config, generation = replacing.pop(step.instance_id)
                loads.append((instance, config, generation))
        for config in the_plan.kept:  # equal as data: only where it is in the file may move
            self._instances[config.instance_id].keep(config)
        self.changed()
        return loads

    async def _bring_up(self, loads: list[_Load], *, retry: bool = False) -> None:
        """Load these instances concurrently, then start the connectors of those loaded; then
        retry at once, once per operation, what lost a registration conflict to another
        instance that has since let the key go."""
        tried = {i.instance_id for i, _, _ in loads}
        while True:
            if loads:
                # the batch sees one version of each plugin file
                with LoaderSnapshot() as snapshot, self._around_loads(len(loads)):
                    loaded = await asyncio.gather(
                        *(
                            i.load(config, prepared=gen, retry=retry, snapshot=snapshot)
                            for i, config, gen in loads
                        )
                    )
                for (instance, _, _), ok in zip(loads, loaded, strict=True):
                    if ok:
                        await instance.start()
            freed = [
                i
                for i in self._instances.values()
                if i.instance_id not in tried and self._conflict_freed(i)
            ]
            if not freed:
                return
            logger.info("registrations freed: retrying %s", ", ".join(i.instance_id for i in freed))
            tried.update(i.instance_id for i in freed)
            loads, retry = [(i, None, None) for i in freed], False

    def _conflict_freed(self, instance: Instance) -> bool:
        """It failed because another instance held a key, and that key is free now."""
        failure = instance.failure
        if failure is None or failure.conflict is None:
            return False
        if instance.state not in (InstanceState.FAILED, InstanceState.RETRYING):
            return False
        kind, key, owner = failure.conflict
        if owner == instance.instance_id:
            return False
        registry = self.services.registries.by_kind(kind)
        return registry is not None and key not in registry

    def _pick(self, ids: list[str], accept: Callable[[Instance], bool]) -> list[Instance]:
        return [
            inst
            for i in dict.fromkeys(ids)
            if (inst := self._instances.get(i)) is not None and accept(inst)
        ]

    # -- retries ---------------------------------------------------------------------------

    def retry_due(self, instance: Instance) -> None:
        """Its retry timer fired (Instance's Supervisor)."""
        self._background(self._retry(instance), f"grambot-retry:{instance.instance_id}")

    def _background(self, work: Coroutine[object, object, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)  # cancelled at shutdown
        self._retry_tasks.add(task)
        task.add_done_callback(self._retry_tasks.discard)

    async def _retry(self, instance: Instance) -> None:
        async with self._lock:
            if self._instances.get(instance.instance_id) is not instance or (
                instance.state is not InstanceState.RETRYING or instance.retry_handle is not None
            ):
                return  # edited, removed or rescheduled meanwhile
            logger.info(
                "instance %s: retry %d",
                instance.instance_id,
                instance.attempt,
                extra={
                    "event": "instance.retry",
                    "instance": instance.instance_id,
                    "attempt": instance.attempt,
                },
            )
            await self._bring_up([(instance, None, None)], retry=True)

    def lost(self, instance: Instance, gen: Generation, failure: Failure) -> None:
        """Its isolated load's process ended unasked (Instance's Supervisor)."""
        self._background(self._fail(instance, gen, failure), f"grambot-lost:{instance.instance_id}")

    async def _fail(self, instance: Instance, gen: Generation, failure: Failure) -> None:
        async with self._lock:  # after the operation in progress (Instance.lost checks `gen`)
            await instance.lost(gen, failure)

    def changed(self) -> None:
        """Tell the listeners (status), on the loop's thread and in the engine's own context:
        a change reported by plugin code (api.health from a worker thread, say) must not run
        the engine's callbacks as the plugin's, nor off the loop."""
        loop = self._loop
        if loop is not None and threading.get_ident() != self._loop_thread:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                loop.call_soon_threadsafe(self.changed, context=contextvars.Context())
            return
        for listener in list(self._listeners):
            try:
                contextvars.Context().run(listener)
            except Exception:
                logger.exception("state listener failed")
