"""Execute-style (Summit) plugins: `async def execute(inputs, context, config)`, no `create`.

Such a plugin runs two ways:

* **on demand** by plugin id (`run_plugin`, `grambot run-plugin`): a transient instance is
  imported into a fresh namespace, `execute` runs once under the plugin's deadline, and
  everything it started is cancelled, closed and forgotten. Transient instances live in an id
  space of their own, `run-plugin:<pluginId>` (a `:` no settings.json instance id can hold):
  their data dir is `.scout/run-plugin/<pluginId>/`, their cache the engine's run-plugin cache
  (never an instance's), their own vault path `run-plugin:<pluginId>/...`, so a plugin whose id
  equals an instance's id never reads that instance's secrets, data or cache;
* **as a tool**: an enabled settings.json instance of it registers a tool named after the
  instance id; the tool's arguments are the `inputs`, the instance's settings are the `config`,
  and its result comes back as JSON text (`ToolResult.data` holds the value itself).

`context` is the instance's `PluginRuntime` (logger, http, env, cache, vault, manifest, plus
`instance` and `data_dir`). The entry module may also define `settings_schema` (a pydantic model
validating `config`: `execute` then gets the model; without one it gets a plain dict, `{}` when
none is given), `input_schema` (the tool's JSON schema, a dict or a pydantic model class;
default: any object) and `metadata` (a dict; its `description` describes the tool).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from grambot.config.descriptor import PluginDescriptor
from grambot.containment.allowlist import module_guard
from grambot.containment.limits import Deadline, plugin_deadlines
from grambot.containment.loader import PluginNamespace
from grambot.containment.stages import StagePool, run_stage
from grambot.containment.tracking import InstanceTasks, install_task_tracking, instance_context
from grambot.contract.api import InstanceInfo, PluginApi, runtime_of
from grambot.contract.context import CacheBackend, PluginRuntime
from grambot.contract.definition import Plugin, validate_settings
from grambot.errors import DefinitionError
from grambot.registries.tools import ToolContext, ToolResult

if TYPE_CHECKING:
    from grambot.config.settings import Timeouts
    from grambot.secrets.store import SecretsStore

__all__ = [
    "AnyConfig",
    "ExecuteSpec",
    "ExecuteTool",
    "execute_plugin_definition",
    "is_execute_style",
    "read_execute_spec",
    "run_execute_plugin",
    "transient_instance_id",
]

logger = logging.getLogger(__name__)

ExecuteFn = Callable[[Any, PluginRuntime, Any], Awaitable[Any]]

TRANSIENT_PREFIX = "run-plugin:"  # instance ids never hold a `:`: no transient id is one
TRANSIENT_DIR = "run-plugin"  # .scout/run-plugin/<pluginId>/: beside .scout/plugins/, not in it


def transient_instance_id(plugin_id: str) -> str:
    """The id of `plugin_id`'s transient (run-plugin) instances."""
    return f"{TRANSIENT_PREFIX}{plugin_id}"


class AnyConfig(BaseModel):
    """The config schema of an execute-style plugin that declares none: any JSON object."""

    model_config = ConfigDict(extra="allow", frozen=True)


@dataclass(frozen=True)
class ExecuteSpec:
    """What an execute-style entry module offers."""

    execute: ExecuteFn
    settings_schema: type[BaseModel] | None
    input_schema: dict[str, Any]
    description: str

    def config_for(self, config: Any, where: str) -> Any:
        """`config` as `execute` receives it: validated by the plugin's schema if it has one."""
        if self.settings_schema is None:
            if config is None:
                return {}
            if not isinstance(config, Mapping):
                raise DefinitionError(f"{where}: must be a JSON object, got {config!r}")
            return dict(config)
        return validate_settings(self.settings_schema, dict(config or {}), where)


def _source(module: ModuleType) -> Any:
    return getattr(module, "plugin", module)


def is_execute_style(module: ModuleType) -> bool:
    """True when the entry module exposes `execute` and no `create`."""
    source = _source(module)
    return not callable(getattr(source, "create", None)) and callable(
        getattr(source, "execute", None)
    )


def read_execute_spec(module: ModuleType) -> ExecuteSpec:
    """The execute-style plugin in `module`; DefinitionError saying what is wrong otherwise."""
    source = _source(module)
    where = module.__file__
    execute = getattr(source, "execute", None)
    if not callable(execute):
        raise DefinitionError(
            f"{where}: not an execute-style plugin: define "
            "`async def execute(inputs, context, config)` in the entry module"
        )
    if not inspect.iscoroutinefunction(execute):
        raise DefinitionError(
            f"{where}: `execute` must be `async def execute(inputs, context, config)`"
        )
    schema = getattr(source, "settings_schema", None)
    if schema is not None and not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise DefinitionError(
            f"{where}: `settings_schema` must be a pydantic model class, got {schema!r}"
        )
    input_schema = getattr(source, "input_schema", None)
    if isinstance(input_schema, type) and issubclass(input_schema, BaseModel):
        input_schema = input_schema.model_json_schema()
    if input_schema is None:
        input_schema = {"type": "object"}
    if not isinstance(input_schema, dict):
        raise DefinitionError(
            f"{where}: `input_schema` must be a JSON schema dict or a pydantic model class, "
            f"got {input_schema!r}"
        )
    metadata = getattr(source, "metadata", None)
    description = metadata.get("description") if isinstance(metadata, Mapping) else None
    return ExecuteSpec(
        execute=execute,
        settings_schema=schema,
        input_schema=input_schema,
        description=description if isinstance(description, str) else "",
    )


# -- as a settings.json instance: a tool named after the instance ----------------------------------


def execute_plugin_definition(module: ModuleType) -> Plugin:
    """A `Plugin` whose instances register the module's `execute` as a tool (see docstring)."""
    spec = read_execute_spec(module)

    def create(api: PluginApi) -> _ExecuteInstance:
        return _ExecuteInstance(api, spec)

    return Plugin(create=create, settings_schema=spec.settings_schema or AnyConfig)


class _ExecuteInstance:
    def __init__(self, api: PluginApi, spec: ExecuteSpec) -> None:
        self.api = api
        self.spec = spec

    def load(self) -> None:
        settings = self.api.settings
        config = settings.model_dump() if isinstance(settings, AnyConfig) else settings
        self.api.registrar.register_tool(ExecuteTool(self.api, self.spec, config))


class ExecuteTool:
    """The tool of an execute-style instance: `execute(args, context, settings)`.

    Its deadline (the plugin's execute deadline) is applied by the registrar's wrapper.
    """

    def __init__(self, api: PluginApi, spec: ExecuteSpec, config: Any) -> None:
        self.name = api.instance.instance_id
        runtime = runtime_of(api)
        self.description = (
            spec.description
            or runtime.manifest.description
            or f"Runs the {runtime.manifest.id} plugin."
        )
        self._runtime = runtime
        self._spec = spec
        self._config = config

    def parameters(self) -> dict[str, Any]:
        return self._spec.input_schema

    async def execute(self, args: dict[str, Any], context: ToolContext) -> ToolResult:
        result = await self._spec.execute(args, self._runtime, self._config)
        text = result if isinstance(result, str) else json.dumps(result, default=str)
        return ToolResult(text=text, data=result)


# -- on demand: run_plugin -------------------------------------------------------------------------


async def run_execute_plugin(
    descriptor: PluginDescriptor,
    inputs: Any,
    config: Any = None,
    *,
    secrets: SecretsStore,
    cache: CacheBackend,
    data_root: Path,
    timeouts: Timeouts,
    override_ms: int | None = None,
    pool: StagePool | None = None,
) -> Any:
    """Run `descriptor`'s `execute` once in a transient instance `run-plugin:<pluginId>`
    (data dir `<data_root>/<pluginId>`); its sync steps run in `pool`'s workers (the engine's),
    or, without one, in a pool of this run's own, closed when it ends.

    Import (with the plugin's `allowedModules`) runs under the create deadline and `execute`
    under the execute deadline (see grambot.containment.limits). Raises what went wrong:
    StageTimeout, PluginImportDenied, DefinitionError, SettingsInvalid (config), or the
    plugin's own exception.
    """
    instance_id = transient_instance_id(descriptor.id)
    deadlines = plugin_deadlines(descriptor, timeouts, override_ms)
    install_task_tracking(asyncio.get_running_loop())
    stages = StagePool() if pool is None else pool
    tasks = InstanceTasks(instance_id)
    context = instance_context(tasks)
    namespace = PluginNamespace(
        instance_id,
        descriptor.folder,
        package_name=descriptor.package_name,
        import_hook=module_guard(descriptor, instance_id),
    )
    data_dir = data_root / descriptor.id
    data_dir.mkdir(parents=True, exist_ok=True)
    runtime = PluginRuntime(
        instance=InstanceInfo(instance_id, descriptor.id, True),
        manifest=descriptor,
        secrets=secrets,
        cache=cache,
        data_dir=data_dir,
    )
    try:
        module = await run_stage(
            namespace.import_entry,
            descriptor.entry_path,
            pool=stages,
            instance_id=instance_id,
            stage="import",
            deadline=Deadline.after(deadlines.create),
            context=context,
        )
        if not is_execute_style(module):
            raise DefinitionError(
                f"{descriptor.entry_path}: plugin {descriptor.id!r} is not execute-style (it "
                "has `create` or no `execute`); run it as a settings.json instance instead"
            )
        spec = read_execute_spec(module)
        del module
        cfg = spec.config_for(config, "config")
        return await run_stage(
            spec.execute,
            inputs,
            runtime,
            cfg,
            pool=stages,
            instance_id=instance_id,
            stage="execute",
            deadline=Deadline.after(deadlines.execute),
            context=context,
        )
    finally:
        leftover = await tasks.cancel_all(grace=min(1.0, deadlines.unload.seconds))
        if leftover:
            logger.warning(
                "plugin %s: tasks still running after execute: %s",
                instance_id,
                ", ".join(leftover),
            )
        try:
            await runtime.aclose()
        finally:
            namespace.unload()
            if pool is None:
                stages.close()
