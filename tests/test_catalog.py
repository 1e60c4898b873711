"""plugin.json descriptors and the plugin catalog (grambot.config.descriptor / .catalog)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import grambot
from grambot.config.catalog import (
    ENTRY_POINT_GROUP,
    PluginCatalog,
    builtin_plugins_dir,
)
from grambot.config.descriptor import (
    DESCRIPTOR_NAME,
    PLUGIN_ID_PATTERN,
    PluginDescriptor,
    load_descriptor,
)
from grambot.errors import CatalogError, DescriptorError, Problem

FIXTURES = Path(__file__).parent / "fixtures" / "catalog"

MakePlugin = Callable[..., Path]


@pytest.fixture
def make_plugin() -> MakePlugin:
    """Write a plugin folder: `make_plugin(folder, **descriptor)` -> the plugin.json path."""

    def make(folder: Path, entry_file: str | None = "plugin.py", **fields: Any) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        data = {"entry": "plugin.py", **fields}
        if entry_file is not None:
            (folder / entry_file).write_text('"""plugin."""\n', encoding="utf-8")
        path = folder / DESCRIPTOR_NAME
        path.write_text(json.dumps(data), encoding="utf-8")
        return path

    return make


def problems_of(path: Path, **kwargs: Any) -> list[Problem]:
    with pytest.raises(DescriptorError) as info:
        load_descriptor(path, source=kwargs.pop("source", "pluginDir"), **kwargs)
    assert info.value.problems
    return info.value.problems


def paths_of(problems: list[Problem]) -> list[str]:
    return [p.json_path for p in problems]


# -- descriptor --------------------------------------------------------------------------------


def test_valid_descriptor_with_every_summit_field() -> None:
    path = FIXTURES / "summit-full" / DESCRIPTOR_NAME
    d = load_descriptor(path, source="builtin")
    folder = path.parent.resolve()
    assert d == PluginDescriptor(
        id="telegram",
        name="Telegram",
        description="Telegram connector.",
        entry="plugin.py",
        folder=folder,
        entry_path=folder / "plugin.py",
        descriptor_path=folder / DESCRIPTOR_NAME,
        source="builtin",
        version="1.0.0",
        timeout_ms=5000,
        allowed_env=("TELEGRAM_TOKEN",),
        allowed_modules=("httpx",),
        allowed_vault_paths=("notes/",),
        cache_key_prefix="telegram",
        raw=d.raw,
    )
    assert d.raw["x-extra"]["kept"] == (1, 2)  # unknown keys kept, read-only
    with pytest.raises(TypeError):
        d.raw["id"] = "other"  # type: ignore[index]
    with pytest.raises(AttributeError):
        d.id = "other"  # type: ignore[misc]


def test_name_only_summit_manifest_uses_name_as_id() -> None:
    d = load_descriptor(FIXTURES / "name-only" / DESCRIPTOR_NAME, source="custom")
    assert (d.id, d.name, d.entry_path.name) == ("web-search", "web-search", "main.py")
    assert d.allowed_modules is None and d.allowed_env == () and d.timeout_ms is None


def test_defaults_name_and_description(tmp_path: Path, make_plugin: MakePlugin) -> None:
    d = load_descriptor(make_plugin(tmp_path / "p", id="echo"), source="pluginDir")
    assert (d.name, d.description, d.version, d.cache_key_prefix) == ("echo", "", None, None)
    assert d.allowed_modules is None


def test_name_only_manifest_with_unusable_name(tmp_path: Path, make_plugin: MakePlugin) -> None:
    problems = problems_of(make_plugin(tmp_path / "p", name="Web Search"))
    assert paths_of(problems) == ["name"]
    assert PLUGIN_ID_PATTERN in problems[0].message


def test_no_id_and_no_name(tmp_path: Path, make_plugin: MakePlugin) -> None:
    assert paths_of(problems_of(make_plugin(tmp_path / "p"))) == ["id"]


def test_wrong_types_each_named(tmp_path: Path, make_plugin: MakePlugin) -> None:
    path = make_plugin(
        tmp_path / "p",
        id="ok",
        version=1,
        timeoutMs="5000",
        allowedEnv=["A", 2],
        allowedModules="httpx",
        cacheKeyPrefix=True,
    )
    problems = problems_of(path)
    assert sorted(paths_of(problems)) == sorted(
        ["version", "timeoutMs", "allowedEnv[1]", "allowedModules", "cacheKeyPrefix"]
    )
    assert all(p.file == path for p in problems)
    text = str(DescriptorError(problems))
    assert "timeoutMs" in text and "'5000'" in text


@pytest.mark.parametrize("timeout", [-1, 0, True, 1.5])
def test_timeout_must_be_a_positive_int(
    tmp_path: Path, make_plugin: MakePlugin, timeout: object
) -> None:
    problems = problems_of(make_plugin(tmp_path / "p", id="ok", timeoutMs=timeout))
    assert paths_of(problems) == ["timeoutMs"]
    assert problems[0].value == repr(timeout)


def test_bad_id(tmp_path: Path, make_plugin: MakePlugin) -> None:
    problems = problems_of(make_plugin(tmp_path / "p", id="../evil"))
    assert paths_of(problems) == ["id"]
    assert problems[0].value == "'../evil'"


def test_missing_entry_field(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / DESCRIPTOR_NAME).write_text('{"id": "x"}', encoding="utf-8")
    assert paths_of(problems_of(folder / DESCRIPTOR_NAME)) == ["entry"]


def test_missing_entry_file(tmp_path: Path, make_plugin: MakePlugin) -> None:
    path = make_plugin(tmp_path / "p", entry_file=None, id="x", entry="main.py")
    problems = problems_of(path)
    assert paths_of(problems) == ["entry"]
    assert "does not exist" in problems[0].message


def test_entry_must_be_a_py_file(tmp_path: Path, make_plugin: MakePlugin) -> None:
    path = make_plugin(tmp_path / "p", entry_file="plugin.txt", id="x", entry="plugin.txt")
    assert paths_of(problems_of(path)) == ["entry"]


def test_entry_escaping_with_dotdot(tmp_path: Path, make_plugin: MakePlugin) -> None:
    (tmp_path / "x.py").write_text("", encoding="utf-8")
    path = make_plugin(tmp_path / "p", id="x", entry="../x.py")
    (problem,) = problems_of(path)
    assert problem.json_path == "entry"
    folder = (tmp_path / "p").resolve()
    outside = (tmp_path / "x.py").resolve()
    assert problem.message == (
        f"entry '../x.py' resolves to {outside}, outside the plugin folder {folder}"
    )


def test_entry_with_a_nul_byte(tmp_path: Path, make_plugin: MakePlugin) -> None:
    assert paths_of(problems_of(make_plugin(tmp_path / "p", id="x", entry="a\0.py"))) == ["entry"]


def test_absolute_entry_is_refused(tmp_path: Path, make_plugin: MakePlugin) -> None:
    (tmp_path / "x.py").write_text("", encoding="utf-8")
    path = make_plugin(tmp_path / "p", id="x", entry=str(tmp_path / "x.py"))
    assert paths_of(problems_of(path)) == ["entry"]


def test_entry_symlink_to_a_file_outside(tmp_path: Path, make_plugin: MakePlugin) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.py").write_text("", encoding="utf-8")
    path = make_plugin(tmp_path / "p", entry_file=None, id="x", entry="x.py")
    (tmp_path / "p" / "x.py").symlink_to(elsewhere / "x.py")
    (problem,) = problems_of(path)
    assert problem.json_path == "entry"
    assert f"resolves to {(elsewhere / 'x.py').resolve()}, outside the plugin folder" in str(
        problem
    )


def test_symlinked_plugin_folder_is_resolved(tmp_path: Path, make_plugin: MakePlugin) -> None:
    make_plugin(tmp_path / "real", id="x")
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    d = load_descriptor(tmp_path / "link" / DESCRIPTOR_NAME, source="pluginDir")
    assert d.folder == (tmp_path / "real").resolve()
    assert d.entry_path == (tmp_path / "real" / "plugin.py").resolve()


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / DESCRIPTOR_NAME
    path.write_text('{\n  "id": "x",\n  "entry": plugin.py\n}\n', encoding="utf-8")
    (problem,) = problems_of(path)
    assert "line 3, column 12" in problem.message
    assert str(path) in str(problem)


def test_non_utf8_and_non_object(tmp_path: Path) -> None:
    path = tmp_path / DESCRIPTOR_NAME
    path.write_bytes(b'{"id": "caf\xe9", "entry": "plugin.py"}')
    assert "UTF-8" in problems_of(path)[0].message
    path.write_text("[1, 2]", encoding="utf-8")
    (problem,) = problems_of(path)
    assert "JSON object" in problem.message and problem.value == "list"


def test_unknown_source_is_a_programming_error(tmp_path: Path, make_plugin: MakePlugin) -> None:
    with pytest.raises(ValueError, match="unknown plugin source"):
        load_descriptor(make_plugin(tmp_path / "p", id="x"), source="elsewhere")


# -- catalog -----------------------------------------------------------------------------------


def test_recursive_discovery_under_plugin_dirs(tmp_path: Path, make_plugin: MakePlugin) -> None:
    root = tmp_path / "plugins"
    make_plugin(root / "alpha", id="alpha")
    make_plugin(root / "group" / "deeper" / "beta", id="beta")
    make_plugin(root / "alpha" / "vendored" / "inner", id="inner")  # inside a plugin folder
    make_plugin(root / ".hidden" / "h", id="hidden")
    make_plugin(root / "node_modules" / "n", id="nodemod")
    make_plugin(root / "__pycache__" / "c", id="cached")
    make_plugin(root / "venv" / "v", id="venvplug")
    catalog = PluginCatalog.discover(
        builtin_dir=None, plugin_dirs=[root, tmp_path / "missing"], entry_points=False
    )
    assert catalog.ids() == ["alpha", "beta"]
    assert catalog.problems == []
    beta = catalog.get("beta")
    assert beta is not None and beta.source == "pluginDir"
    assert beta.folder == (root / "group" / "deeper" / "beta").resolve()
    assert "alpha" in catalog and "inner" not in catalog and 3 not in catalog
    assert [d.id for d in catalog.descriptors()] == ["alpha", "beta"]
    assert catalog.get("nope") is None


def test_plugin_dir_that_is_itself_a_plugin(tmp_path: Path, make_plugin: MakePlugin) -> None:
    make_plugin(tmp_path / "solo", id="solo")
    catalog = PluginCatalog.discover(
        builtin_dir=None, plugin_dirs=[tmp_path / "solo"], entry_points=False
    )
    assert catalog.ids() == ["solo"]


def test_symlink_loop_does_not_hang(tmp_path: Path, make_plugin: MakePlugin) -> None:
    root = tmp_path / "plugins"
    make_plugin(root / "a" / "p", id="p")
    (root / "a" / "loop").symlink_to(root, target_is_directory=True)
    catalog = PluginCatalog.discover(builtin_dir=None, plugin_dirs=[root], entry_points=False)
    assert catalog.ids() == ["p"]


def test_builtins_are_direct_subfolders(tmp_path: Path, make_plugin: MakePlugin) -> None:
    builtin = tmp_path / "builtin"
    make_plugin(builtin / "echo", id="echo")
    make_plugin(builtin / "nested" / "deep", id="deep")
    (builtin / "__init__.py").write_text("", encoding="utf-8")
    catalog = PluginCatalog.discover(builtin_dir=builtin, plugin_dirs=[], entry_points=False)
    assert catalog.ids() == ["echo"]
    echo = catalog.get("echo")
    assert echo is not None and echo.source == "builtin"


def test_duplicate_id_keeps_builtin_and_names_both(tmp_path: Path, make_plugin: MakePlugin) -> None:
    first = make_plugin(tmp_path / "builtin" / "x", id="x")
    second = make_plugin(tmp_path / "plugins" / "copy", id="x")
    catalog = PluginCatalog.discover(
        builtin_dir=tmp_path / "builtin", plugin_dirs=[tmp_path / "plugins"], entry_points=False
    )
    kept = catalog.get("x")
    assert kept is not None and kept.source == "builtin"
    (problem,) = catalog.problems
    assert problem.message == (
        f"plugin id 'x' is defined twice: {first.resolve()} and {second.resolve()}; "
        "the first is used"
    )


def test_add_refuses_a_duplicate(tmp_path: Path, make_plugin: MakePlugin) -> None:
    catalog = PluginCatalog()
    catalog.add(load_descriptor(make_plugin(tmp_path / "a", id="x"), source="custom"))
    with pytest.raises(CatalogError) as info:
        catalog.add(load_descriptor(make_plugin(tmp_path / "b", id="x"), source="custom"))
    assert str(tmp_path / "a" / DESCRIPTOR_NAME) in str(info.value)
    assert str(tmp_path / "b" / DESCRIPTOR_NAME) in str(info.value)
    assert catalog.ids() == ["x"]


def test_one_broken_descriptor_does_not_hide_others(
    tmp_path: Path, make_plugin: MakePlugin
) -> None:
    root = tmp_path / "plugins"
    make_plugin(root / "a", id="a")
    make_plugin(root / "b", id="b", timeoutMs=-5)
    (root / "c").mkdir()
    (root / "c" / DESCRIPTOR_NAME).write_text("{not json", encoding="utf-8")
    make_plugin(root / "d", id="d", entry="../a/plugin.py")
    make_plugin(root / "e", id="e")
    catalog = PluginCatalog.discover(builtin_dir=None, plugin_dirs=[root], entry_points=False)
    assert catalog.ids() == ["a", "e"]
    assert [(p.file.parent.name if p.file else None, p.json_path) for p in catalog.problems] == [
        ("b", "timeoutMs"),
        ("c", ""),
        ("d", "entry"),
    ]


def test_plugin_dir_that_is_a_file_is_a_problem(tmp_path: Path) -> None:
    not_dir = tmp_path / "file"
    not_dir.write_text("", encoding="utf-8")
    catalog = PluginCatalog.discover(builtin_dir=None, plugin_dirs=[not_dir], entry_points=False)
    assert len(catalog.problems) == 1 and "not a directory" in str(catalog.problems[0])


def test_builtin_plugins_dir_finds_the_repository_folder() -> None:
    found = builtin_plugins_dir()
    assert found is not None and found.is_dir()
    repo = Path(grambot.__file__).resolve().parent.parent
    installed = Path(grambot.__file__).parent / "_builtin_plugins"
    assert found in {repo / "builtin_plugins", installed}


def test_discovery_never_imports_plugin_code(tmp_path: Path) -> None:
    before = set(sys.modules)
    catalog = PluginCatalog.discover(builtin_dir=FIXTURES, plugin_dirs=[], entry_points=False)
    assert catalog.ids() == ["telegram", "web-search"]  # summit-full/plugin.py raises if imported
    assert set(sys.modules) - before == set()


# -- entry points ------------------------------------------------------------------------------


def _make_distribution(site: Path, *, entry_points: str, with_descriptor: bool = True) -> None:
    package = site / "myplugpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        'raise RuntimeError("myplugpkg must not be imported by the catalog")\n', encoding="utf-8"
    )
    (package / "plugin.py").write_text('"""plugin."""\n', encoding="utf-8")
    if with_descriptor:
        descriptor = {"id": "myplug", "name": "My plug", "entry": "plugin.py"}
        (package / DESCRIPTOR_NAME).write_text(json.dumps(descriptor), encoding="utf-8")
    dist_info = site / "myplugpkg-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: myplugpkg\nVersion: 0.1\n", encoding="utf-8"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n{entry_points}\n", encoding="utf-8"
    )


def test_entry_point_plugin_found_without_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    _make_distribution(site, entry_points="myplug = myplugpkg")
    monkeypatch.syspath_prepend(str(site))
    catalog = PluginCatalog.discover(builtin_dir=None, plugin_dirs=[])
    descriptor = catalog.get("myplug")
    assert descriptor is not None, catalog.problems
    assert descriptor.source == "entry-point"
    assert descriptor.package_name == "myplugpkg"
    assert descriptor.folder == (site / "myplugpkg").resolve()
    assert "myplugpkg" not in sys.modules
    assert str(site / "myplugpkg") not in sys.path


def test_entry_point_failures_name_the_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    _make_distribution(
        site,
        entry_points="nodesc = myplugpkg\nghost = no_such_pkg_xyz\nbad = my-plug/pkg",
        with_descriptor=False,
    )
    monkeypatch.syspath_prepend(str(site))
    catalog = PluginCatalog.discover(builtin_dir=None, plugin_dirs=[])
    assert "myplug" not in catalog
    text = "\n".join(str(p) for p in catalog.problems)
    assert "entry point 'nodesc'" in text and "has no plugin.json" in text
    assert "entry point 'ghost'" in text and "is not installed" in text
    assert "entry point 'bad'" in text and "must name a package holding plugin.json" in text
    assert "myplugpkg" not in sys.modules


def test_entry_points_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    _make_distribution(site, entry_points="myplug = myplugpkg")
    monkeypatch.syspath_prepend(str(site))
    catalog = PluginCatalog.discover(builtin_dir=None, plugin_dirs=[], entry_points=False)
    assert catalog.ids() == [] and catalog.problems == []
