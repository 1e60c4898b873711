"""The per-instance namespace loader: isolation, real files, fresh code, full unload."""

from __future__ import annotations

import asyncio
import builtins
import gc
import logging
import sys
import weakref
from pathlib import Path

from grambot.containment.loader import CODE_CACHE, NAMESPACE_ROOT, PluginNamespace
from grambot.core.instance import InstanceState
from grambot.engine import Engine
from tests.helpers import FIXTURE_PLUGINS, Workspace, entry


def _namespace_modules() -> list[str]:
    return [name for name in sys.modules if name.startswith(NAMESPACE_ROOT + ".")]


def _instance_loggers(instance_id: str) -> list[str]:
    return [
        name
        for name in logging.Logger.manager.loggerDict
        if name == f"grambot.plugin.{instance_id}"
        or name.startswith(f"{NAMESPACE_ROOT}.{instance_id}__")
    ]


async def test_unloaded_instance_is_collectable(engine: Engine, workspace: Workspace) -> None:
    await engine.apply(workspace.write([entry("col", "collectable")]))
    assert engine.state_of("col") is InstanceState.LOADED
    # The registries hold guards (grambot.containment.guards); `wrapped` is the plugin's object.
    thing = getattr(engine.registries.connectors.get("col"), "wrapped", None)
    assert thing is not None
    for registry in (engine.registries.inference, engine.registries.images):
        assert getattr(registry.get("col"), "wrapped", None) is thing
    assert getattr(engine.registries.tools.get("collectable_tool"), "wrapped", None) is thing
    cls_ref = weakref.ref(type(thing))
    module_ref = weakref.ref(sys.modules[type(thing).__module__])
    task = next(t for t in asyncio.all_tasks() if t.get_name() == "collectable-forever")
    assert _namespace_modules() and _instance_loggers("col")
    del thing

    await engine.apply(workspace.write([]))
    await asyncio.sleep(0)
    assert task.cancelled()
    del task
    assert _namespace_modules() == []
    assert _instance_loggers("col") == []
    assert all(
        len(r) == 0
        for r in (
            engine.registries.connectors,
            engine.registries.tools,
            engine.registries.inference,
            engine.registries.images,
        )
    )
    gc.collect()
    assert module_ref() is None
    assert cls_ref() is None


async def test_instance_whose_load_fails_is_collectable(
    engine: Engine, workspace: Workspace
) -> None:
    classes: list[weakref.ref[type]] = []
    original = engine.registries.connectors.register

    def spy(key, owner, item):  # type: ignore[no-untyped-def]
        classes.append(weakref.ref(type(getattr(item, "wrapped", item))))
        original(key, owner, item)

    engine.registries.connectors.register = spy  # type: ignore[method-assign]
    await engine.apply(workspace.write([entry("col", "collectable", fail_load=True)]))
    record = engine.instance("col")
    assert record is not None and record.state is InstanceState.FAILED
    assert record.failure is not None and "load failed on purpose" in record.failure.message
    assert "plugin.py" in record.failure.details  # the traceback, kept as text
    assert classes and _namespace_modules() == [] and _instance_loggers("col") == []
    assert not [
        t for t in asyncio.all_tasks() if t.get_name() == "collectable-forever" and not t.done()
    ]
    gc.collect()
    assert classes[0]() is None


async def test_traceback_shows_the_real_file_paths(engine: Engine, workspace: Workspace) -> None:
    await engine.apply(workspace.write([entry("t", "tracer")]))
    record = engine.instance("t")
    assert record is not None and record.failure is not None
    assert "ValueError: boom from the helper" in record.failure.message
    raiser = FIXTURE_PLUGINS / "tracer" / "deep" / "raiser.py"
    assert f'File "{raiser.resolve()}", line 2, in explode' in record.failure.details
    assert 'raise ValueError("boom from the helper")' in record.failure.details


def test_plugin_folders_never_go_on_sys_path_and_builtins_stay_untouched(tmp_path: Path) -> None:
    before = list(sys.path)
    original_import = builtins.__import__
    folder = tmp_path / "telegram"  # a plugin folder named like an SDK must not shadow it
    folder.mkdir()
    (folder / "plugin.py").write_text("VALUE = 1\n")
    namespace = PluginNamespace("shadow", folder)
    module = namespace.import_entry(folder / "plugin.py")
    assert module.VALUE == 1
    assert sys.path == before
    assert builtins.__import__ is original_import
    assert "telegram.plugin" not in sys.modules
    namespace.unload()


def test_same_size_same_mtime_edit_is_recompiled(tmp_path: Path) -> None:
    import os

    source = tmp_path / "plugin.py"
    source.write_text("VALUE = 1\n")
    stat = source.stat()
    first = PluginNamespace("edit", tmp_path)
    assert first.import_entry(source).VALUE == 1
    first.unload()
    source.write_text("VALUE = 2\n")  # same size
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime
    second = PluginNamespace("edit", tmp_path)
    assert second.import_entry(source).VALUE == 2
    second.unload()


def test_code_is_compiled_once_per_content(tmp_path: Path) -> None:
    source = tmp_path / "plugin.py"
    source.write_text("VALUE = 3\n")
    assert CODE_CACHE.get(source) is CODE_CACHE.get(source)


def test_installed_package_absolute_self_import_gets_its_own_modules(tmp_path: Path) -> None:
    package = tmp_path / "selfimp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "state.py").write_text("HITS = []\n")
    (package / "plugin.py").write_text(
        "import selfimp.state\n"
        "from selfimp.state import HITS\n"
        "from selfimp import state as state_alias\n"
        "HITS.append(1)\n"
        "SAME = selfimp.state is state_alias\n"
    )
    one = PluginNamespace("one", package, package_name="selfimp")
    two = PluginNamespace("two", package, package_name="selfimp")
    first, second = one.import_entry(package / "plugin.py"), two.import_entry(package / "plugin.py")
    assert first.HITS == [1] and second.HITS == [1]
    assert first.HITS is not second.HITS
    assert first.SAME and second.SAME
    assert first.state_alias.__name__ == f"{one.name}.state"
    assert "selfimp" not in sys.modules and "selfimp.state" not in sys.modules
    one.unload()
    two.unload()
    assert _namespace_modules() == []


def test_dataclasses_pydantic_and_type_hints_work_inside_a_namespace(tmp_path: Path) -> None:
    (tmp_path / "plugin.py").write_text(
        "from __future__ import annotations\n"
        "import dataclasses, typing\n"
        "from pydantic import BaseModel\n"
        "@dataclasses.dataclass\n"
        "class Node:\n"
        "    child: typing.Optional[Node] = None\n"
        "class Model(BaseModel):\n"
        "    node_name: str\n"
        "    nested: typing.Optional[Model] = None\n"
        "HINTS = typing.get_type_hints(Node)\n"
        "PARSED = Model.model_validate({'node_name': 'a', 'nested': {'node_name': 'b'}})\n"
    )
    namespace = PluginNamespace("dc", tmp_path)
    module = namespace.import_entry(tmp_path / "plugin.py")
    assert module.HINTS["child"] == module.typing.Optional[module.Node]
    assert module.PARSED.nested.node_name == "b"
    namespace.unload()
