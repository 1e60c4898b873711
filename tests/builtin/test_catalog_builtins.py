"""What every built-in promises before it runs: a valid descriptor, a settings schema with
defaults, descriptions and camelCase keys, named secrets, and no SDK import until load."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from grambot.config.catalog import PluginCatalog
from grambot.containment.loader import PluginNamespace
from grambot.contract.entry import read_definition
from tests.builtin.conftest import BUILTIN_DIR

BUILTINS = {
    "telegram": ("botToken",),
    "anthropic": ("apiKey",),
    "openai-codex": ("apiKey",),
    "brave-search": ("apiKey",),
    "gpt-image": ("apiKey",),
    "nanobanana": ("apiKey",),
}
SDKS = ("telegram", "anthropic", "openai", "httpx", "httpx2")
REPO = BUILTIN_DIR.parent


def catalog() -> PluginCatalog:
    return PluginCatalog.discover(builtin_dir=BUILTIN_DIR, plugin_dirs=[], entry_points=False)


def test_the_six_builtins_are_in_the_catalog_without_problems() -> None:
    found = catalog()
    assert found.problems == []
    assert set(BUILTINS) <= set(found.ids())
    for plugin_id in BUILTINS:
        descriptor = found.get(plugin_id)
        assert descriptor is not None and descriptor.source == "builtin"
        assert descriptor.name and descriptor.description and descriptor.version


@pytest.mark.parametrize("plugin_id", sorted(BUILTINS))
def test_settings_schemas_have_defaults_descriptions_and_camel_case_keys(plugin_id: str) -> None:
    descriptor = catalog().get(plugin_id)
    assert descriptor is not None
    namespace = PluginNamespace(f"schema-{plugin_id}", descriptor.folder)
    try:
        module = namespace.import_entry(descriptor.entry_path)
        schema: type[BaseModel] = read_definition(module).settings_schema
        declared = module.SECRETS
        assert declared == BUILTINS[plugin_id]
        schema.model_validate({})  # every setting has a default
        for name, field in schema.model_fields.items():
            assert field.description, f"{plugin_id}: {name} has no description"
            key = field.alias or name
            assert "_" not in key, f"{plugin_id}: {name} is exposed as {key!r}, not camelCase"
            if field.alias:  # populate_by_name: the Python name works too
                assert schema.model_validate({name: getattr(schema(), name)})
        json_schema = schema.model_json_schema(by_alias=True)
        assert all("description" in p for p in json_schema["properties"].values())
        with pytest.raises(ValueError, match="xtra"):
            schema.model_validate({"noSuchSetting": 1})
    finally:
        namespace.unload()


def test_listing_and_creating_builtins_imports_no_sdk(tmp_path: Path) -> None:
    """Catalog, entry import, settings validation and create(api) — none pulls an SDK in."""
    code = textwrap.dedent(
        f"""
        import json, logging, sys, types
        from pathlib import Path
        from grambot.config.catalog import PluginCatalog
        from grambot.contract.definition import validate_settings
        from grambot.contract.entry import read_definition
        from grambot.containment.loader import PluginNamespace

        catalog = PluginCatalog.discover(
            builtin_dir=Path({str(BUILTIN_DIR)!r}), plugin_dirs=[], entry_points=False
        )
        created = []
        for plugin_id in {sorted(BUILTINS)!r}:
            descriptor = catalog.get(plugin_id)
            namespace = PluginNamespace("probe-" + plugin_id, descriptor.folder)
            definition = read_definition(namespace.import_entry(descriptor.entry_path))
            settings = validate_settings(definition.settings_schema, {{}}, "settings")
            api = types.SimpleNamespace(
                settings=settings,
                instance=types.SimpleNamespace(instance_id="probe-" + plugin_id,
                                               plugin_id=plugin_id, enabled=True),
                data_dir=Path({str(tmp_path)!r}) / plugin_id,
                logger=logging.getLogger("probe"),
                secrets=None, registrar=None, events=None,
            )
            created.append(type(definition.create(api)).__name__)
        print(json.dumps({{"created": created,
                          "sdks": [m for m in {SDKS!r} if m in sys.modules]}}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    result: dict[str, Any] = json.loads(out.stdout)
    assert len(result["created"]) == len(BUILTINS)
    assert result["sdks"] == []


def test_no_builtin_folder_goes_on_sys_path() -> None:
    assert not any(Path(p).resolve().is_relative_to(BUILTIN_DIR) for p in sys.path if p)
