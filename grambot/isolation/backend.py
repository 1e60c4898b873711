"""`ProcessIsolation`: the engine's process-isolation backend, the one object the core knows.

`Instance` asks it for each new load (`generation`): None means in process (a plain
`Generation`); otherwise a `ProcessGeneration` whose child the zygote forks. It decides the
mode and limits of an entry (`spec`), builds each child's request (what the child may read and
write, its secrets, its deadlines), counts restarts and last exits for status, and owns the
zygote (started on first use, or at `grambot run` start when settings.json asks for process
isolation; closed at shutdown).

    mode      the entry's `isolation`, else the manifest's, else `isolation.default`
              ("inprocess"); an entry saying "inprocess" for a plugin whose manifest says
              "process" is refused (`isolation-required`, not retried)
    memoryMb  the entry's, else the manifest's, else DEFAULT_MEMORY_MB
    cpuSeconds, maxProcesses   the entry's, else the manifest's, else not limited
    sandbox   the entry's, else the manifest's, else "required" when the manifest asks for
              process isolation and "best-effort" otherwise

Each child's limits are kept by the kernel where it can (docs/isolation.md): memoryMb by a
memory cgroup the engine makes for the child, else RLIMIT_AS; maxProcesses by a pids cgroup,
else RLIMIT_NPROC when the engine is not root; else the instance is refused under `sandbox:
required` (`limit-unavailable`) and runs unlimited, with the reason in status, under
best-effort. cpuSeconds is sampled by the engine (grambot.isolation.cpu).
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from typing import Any

from grambot.config.catalog import builtin_plugins_dir
from grambot.config.descriptor import PluginDescriptor
from grambot.config.settings import InstanceConfig, thaw
from grambot.containment.tracking import TaskFailureReporter
from grambot.contract.context import SHARED_VAULT_ROOT
from grambot.core.generation import Generation, OnLost, Services
from grambot.core.instance import iso
from grambot.errors import IsolatedFailure
from grambot.isolation import cgroups, landlock
from grambot.isolation.forkserver import ForkServer
from grambot.isolation.remote import ProcessGeneration
from grambot.isolation.spec import Enforcement, Spec, config_fields

__all__ = ["DEFAULT_MEMORY_MB", "ProcessIsolation", "Spec", "config_fields"]

logger = logging.getLogger(__name__)

DEFAULT_MEMORY_MB = 1024  # past the zygote's own image; RLIMIT_AS (docs/isolation.md)
GROUPS_CLOSE_WAIT = 0.5  # at shutdown, for what is left in the children's cgroups to go


NO_PROCESS_LIMIT = "no pids cgroup can be made here, and RLIMIT_NPROC does not hold root"


def processes_mechanism(controllers: set[str], root: bool) -> str | None:
    """What keeps maxProcesses here: the pids cgroup, else RLIMIT_NPROC (it holds every
    process of the user, and not root at all), else nothing (None)."""
    if "pids" in controllers:
        return "cgroup"
    return None if root else "rlimit"


def resolve(config: InstanceConfig, descriptor: PluginDescriptor) -> Spec | None:
    """The entry's process spec, None to run it in process; IsolatedFailure if refused."""
    required = descriptor.isolation == "process"
    mode = config.isolation or ("process" if required else config.isolation_default)
    if mode == "inprocess":
        if required:
            raise IsolatedFailure(
                "isolation-required",
                f"instance {config.instance_id!r}: plugin {descriptor.id!r} must run in its own "
                f'process ({descriptor.descriptor_path} says "isolation": "process"), but '
                f'{config.json_path}.isolation is "inprocess"; remove it or write "process"',
                recoverable=False,
                stage="isolation",
            )
        return None
    sandbox = config.sandbox or descriptor.sandbox or ("required" if required else "best-effort")
    memory = config.memory_mb or descriptor.memory_mb or DEFAULT_MEMORY_MB
    cpu = config.cpu_seconds or descriptor.cpu_seconds
    processes = config.max_processes or descriptor.max_processes
    return Spec(memory, sandbox, cpu_seconds=cpu, max_processes=processes)


class ProcessIsolation:
    def __init__(self) -> None:
        self.forkserver = ForkServer()
        self.heartbeat_interval = 1.0
        self.unresponsive_after = 5.0
        self._restarts: dict[str, int] = {}
        self._last_exit: dict[str, tuple[str, float]] = {}
        self._modes: dict[str, str] = {}
        self._landlock_abi = landlock.abi()
        self.controllers = cgroups.available()  # what cgroups can be made with here
        self.root = os.geteuid() == 0
        self._groups: list[cgroups.Group] = []
        self._spawns = itertools.count(1)

    # -- the seam ------------------------------------------------------------------------------

    def generation(
        self,
        services: Services,
        config: InstanceConfig,
        on_task_failure: TaskFailureReporter,
        on_lost: OnLost,
    ) -> Generation | None:
        """A ProcessGeneration for `config`, or None to load it in process."""
        descriptor = services.catalog.get(config.plugin_id)
        if descriptor is None:
            return None  # Generation says the plugin is not found
        spec = resolve(config, descriptor)
        self._modes[config.instance_id] = "process" if spec is not None else "inprocess"
        if spec is None:
            return None
        if spec.sandbox == "required" and self._landlock_abi < 1:
            raise IsolatedFailure(
                "sandbox-unavailable",
                f"instance {config.instance_id!r}: its sandbox is required but Landlock is not "
                'available on this kernel; write "sandbox": "best-effort" to run it without',
                recoverable=False,
                stage="isolation",
            )
        if spec.max_processes and processes_mechanism(self.controllers, self.root) is None:
            if spec.sandbox == "required":
                raise IsolatedFailure(
                    "limit-unavailable",
                    f"instance {config.instance_id!r}: maxProcesses {spec.max_processes} cannot "
                    f'be kept: {NO_PROCESS_LIMIT}; write "sandbox": "best-effort" to run it '
                    "without the limit",
                    recoverable=False,
                    stage="isolation",
                )
            logger.warning(
                "instance %s: maxProcesses is not kept: %s", config.instance_id, NO_PROCESS_LIMIT
            )
        return ProcessGeneration(self, services, config, descriptor, spec, on_task_failure, on_lost)

    def status(self, instance_id: str, generation: Generation | None) -> dict[str, Any]:
        """The instance's `isolation` in status.json."""
        mode = self._modes.get(instance_id, "inprocess")
        if mode == "inprocess":
            return {"mode": "inprocess"}
        last = self._last_exit.get(instance_id)
        status: dict[str, Any] = {
            "mode": "process",
            "pid": None,
            "rssBytes": None,
            "sandbox": None,
            "memoryMb": None,
            "cpuSeconds": None,
            "maxProcesses": None,
            "limits": None,
            "restarts": self._restarts.get(instance_id, 0),
            "lastExit": {"reason": last[0], "at": iso(last[1])} if last else None,
        }
        if isinstance(generation, ProcessGeneration):
            spec, enforced = generation.spec, generation.limits
            status.update(generation.to_status(), memoryMb=spec.memory_mb)
            status.update(cpuSeconds=spec.cpu_seconds, maxProcesses=spec.max_processes)
            status["limits"] = enforced.to_status() if enforced is not None else None
        return status

    def record_exit(self, instance_id: str, reason: str) -> None:
        """A child of this instance ended unasked (it will be restarted by the retry)."""
        self._restarts[instance_id] = self._restarts.get(instance_id, 0) + 1
        self._last_exit[instance_id] = (reason, time.time())

    # -- the zygote ----------------------------------------------------------------------------

    async def prestart(self, configs: Iterable[InstanceConfig], services: Services) -> None:
        """Start the zygote now if one of these entries (a reconcile's loads) runs out of
        process: the first such instance then does not wait for it."""
        if self.forkserver.running:
            return
        for config in configs:
            descriptor = services.catalog.get(config.plugin_id)
            if config.enabled and descriptor is not None:
                try:
                    wanted = resolve(config, descriptor) is not None
                except IsolatedFailure:
                    continue
                if wanted:
                    await self.forkserver.start()
                    return

    def close(self) -> None:
        self.forkserver.close()  # its children die with it: their cgroups can go
        left = [group for group in self._groups if not group.closed]
        deadline = time.monotonic() + GROUPS_CLOSE_WAIT  # all of them, within the shutdown's
        while left and time.monotonic() < deadline:
            left = [group for group in left if not group.close()]
            if left:
                time.sleep(0.01)
        if left:
            logger.warning("cgroups of isolated instances left: %s", [g.dirs for g in left])
        self._groups.clear()
        cgroups.remove_own()

    # -- one child's limits --------------------------------------------------------------------

    def enforce(self, instance_id: str, spec: Spec) -> Enforcement:
        """A cgroup for the next child of `instance_id` (where one can be made), and what
        keeps each of its limits."""
        memory = spec.memory_mb * 1024 * 1024
        wants_pids = spec.max_processes if "pids" in self.controllers else None
        group = None
        if self.controllers:
            name = f"{instance_id}.{next(self._spawns)}"
            group = cgroups.create(name, memory, wants_pids)
        self._groups = [g for g in self._groups if not g.closed]
        if group is not None:
            self._groups.append(group)
        processes: str | None = None
        if spec.max_processes:
            if group is not None and group.pids:
                processes = "cgroup"
            elif not self.root:
                processes = "rlimit"
            else:
                processes = f"none ({NO_PROCESS_LIMIT})"
        in_group = group is not None and group.memory
        kept_by = "cgroup" if in_group else "rlimit"
        return Enforcement(group, kept_by, processes, spec.cpu_seconds)

    def release(self, generation: ProcessGeneration) -> None:
        """Its child was not made after all: its cgroup goes (and what joined it)."""
        if generation.limits is not None and generation.limits.group is not None:
            generation.limits.group.close()

    # -- one child's request -------------------------------------------------------------------

    def request(self, generation: ProcessGeneration) -> tuple[dict[str, Any], str]:
        """What the child needs, and its private temp dir (removed at its teardown)."""
        services, config, descriptor = generation.services, generation.config, generation.descriptor
        data_dir = services.data_root / config.instance_id
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f"grambot-{config.instance_id}-")
        spec = generation.spec
        enforced = generation.limits = self.enforce(config.instance_id, spec)
        group = enforced.group
        read = [str(descriptor.folder)]
        builtins = builtin_plugins_dir()
        if builtins is not None:
            read.append(str(builtins))
        timeouts = services.timeouts
        request = {
            "config": config_fields(config),
            "durable": services.durable is not None,
            "plugin": {
                "path": str(descriptor.descriptor_path),
                "source": descriptor.source,
                "package": descriptor.package_name,
            },
            "timeouts": {
                "create": timeouts.create,
                "load": timeouts.load,
                "unload": timeouts.unload,
                "event_handler": timeouts.event_handler,
                "override_ms": timeouts.override_ms,
            },
            "override_ms": services.timeout_overrides.get(descriptor.id),
            "engine_settings": thaw(services.engine_settings),
            "data_root": str(services.data_root),
            "secrets": _secrets_of(services, config.instance_id, descriptor),
            "log_level": logging.getLogger().getEffectiveLevel(),
            "stdin": descriptor.stdin,  # a console: the child reads the engine's stdin
            "confine": {
                "cgroups": group.procs_files if group is not None else [],
                "memory_mb": None if enforced.memory == "cgroup" else spec.memory_mb,
                "max_processes": spec.max_processes if enforced.processes == "rlimit" else None,
                "sandbox": generation.spec.sandbox,
                "read": read,
                "write": [str(data_dir), tmp],
                "private": str(services.data_root.parent),
                "tmp": tmp,
                "env": list(descriptor.allowed_env),
            },
        }
        return request, tmp


def _secrets_of(
    services: Services, instance_id: str, descriptor: PluginDescriptor
) -> dict[str, dict[str, str]]:
    """This instance's secrets, and the shared ones its manifest may read: nothing else."""
    store = services.secrets
    owners = {instance_id}
    for prefix in descriptor.allowed_vault_paths:
        parts = prefix.split("/")
        if parts[0] == SHARED_VAULT_ROOT and len(parts) > 1 and parts[1]:
            owners.add(f"{SHARED_VAULT_ROOT}/{parts[1]}")
    values: dict[str, dict[str, str]] = {}
    for owner in owners:
        for key in store.keys(owner):
            value = store.get(owner, key)
            if value is not None and (owner == instance_id or _allowed(descriptor, owner, key)):
                values.setdefault(owner, {})[key] = value
    return values


def _allowed(descriptor: PluginDescriptor, owner: str, key: str) -> bool:
    path = f"{owner}/{key}"
    return any(
        path == prefix.rstrip("/") or path.startswith(prefix.rstrip("/") + "/")
        for prefix in descriptor.allowed_vault_paths
    )
