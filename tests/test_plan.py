"""`plan(current, desired, catalog)`: the pure half of reconcile, rule by rule (no engine, no
plugin code, no I/O: every input is built here)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from grambot.config.settings import EngineSettings, InstanceConfig, parse_settings
from grambot.core.instance import Current, InstanceState
from grambot.core.plan import Action, differs, plan

CATALOG = frozenset({"probe", "echo"})
WS = Path("/ws")


def desired(*entries: dict[str, Any]) -> EngineSettings:
    text = json.dumps({"plugins": list(entries)})
    return parse_settings(text, path=WS / ".scout/settings.json", workspace=WS)


def entry(iid: str, plugin: str = "probe", enabled: bool = True, **settings: Any) -> dict[str, Any]:
    return {"instanceId": iid, "pluginId": plugin, "enabled": enabled, "settings": settings}


def now(
    iid: str,
    state: InstanceState,
    plugin: str = "probe",
    failure: str | None = None,
    seq: int = 1,
    **settings: Any,
) -> Current:
    config = InstanceConfig(iid, plugin, True, settings, "plugins[0]")
    return Current(config, state, failure, seq)


def actions(current: dict[str, Current], settings: EngineSettings) -> dict[str, Action]:
    the_plan = plan(current, settings, CATALOG)
    got = {s.instance_id: s.action for s in the_plan.steps}
    got.update({c.instance_id: Action.KEEP for c in the_plan.kept})
    return got


LOADED, FAILED, RETRYING, DISABLED = (
    InstanceState.LOADED,
    InstanceState.FAILED,
    InstanceState.RETRYING,
    InstanceState.DISABLED,
)


def test_new_entries_load_and_disabled_ones_are_recorded() -> None:
    got = actions({}, desired(entry("a"), entry("b", enabled=False)))
    assert got == {"a": Action.LOAD, "b": Action.DISABLE}


def test_an_entry_gone_from_the_file_is_removed() -> None:
    assert actions({"a": now("a", LOADED)}, desired()) == {"a": Action.REMOVE}


def test_an_equal_entry_is_kept_whatever_its_key_order() -> None:
    current = {"a": now("a", LOADED, x=1, y=[1, 2])}
    settings = desired({"settings": {"y": [1, 2], "x": 1}, "pluginId": "probe", "instanceId": "a"})
    assert actions(current, settings) == {"a": Action.KEEP}


def test_a_changed_running_instance_is_replaced_and_a_changed_failed_one_loaded() -> None:
    current = {"a": now("a", LOADED, x=1), "b": now("b", FAILED, x=1), "c": now("c", RETRYING)}
    settings = desired(entry("a", x=2), entry("b", x=2), entry("c", "echo"))
    assert actions(current, settings) == {"a": Action.REPLACE, "b": Action.LOAD, "c": Action.LOAD}


def test_a_failed_or_retrying_instance_with_an_unchanged_entry_waits() -> None:
    current = {"a": now("a", FAILED, failure="setup-error"), "b": now("b", RETRYING)}
    assert actions(current, desired(entry("a"), entry("b"))) == {
        "a": Action.KEEP,  # until an edit, a secret change or `grambot retry`
        "b": Action.KEEP,  # its retry stays pending
    }


def test_an_unknown_plugin_holds_a_running_instance_and_rejects_a_new_one() -> None:
    the_plan = plan(
        {"a": now("a", LOADED)}, desired(entry("a", "nope"), entry("b", "nope")), CATALOG
    )
    held, rejected = the_plan.steps
    assert (held.action, rejected.action) == (Action.HOLD, Action.REJECT)
    assert "no plugin with id 'nope'" in held.problems[0] and "echo, probe" in held.problems[0]
    assert held.config is None  # nothing of the edit applies to it
    assert rejected.config is not None and rejected.config.plugin_id == "nope"


def test_a_rejected_entry_is_not_rejected_again_until_it_changes() -> None:
    current = {"b": now("b", FAILED, plugin="nope", failure="plugin-not-found")}
    assert actions(current, desired(entry("b", "nope"))) == {"b": Action.KEEP}
    assert actions(current, desired(entry("b", "nope", x=1))) == {"b": Action.REJECT}


def test_an_instance_whose_plugin_appeared_loads() -> None:
    current = {"a": now("a", FAILED, plugin="echo", failure="plugin-not-found")}
    assert actions(current, desired(entry("a", "echo"))) == {"a": Action.LOAD}


def test_an_entry_invalid_as_written_is_held_with_its_problems() -> None:
    settings = desired(entry("a"), {"instanceId": "b", "pluginId": "probe", "enabled": "yes"})
    the_plan = plan({"b": now("b", LOADED)}, settings, CATALOG)
    step = next(s for s in the_plan.steps if s.instance_id == "b")
    assert step.action is Action.HOLD
    assert "plugins[1].enabled" in step.problems[0] and "'yes'" in step.problems[0]


def test_a_disabled_instance_enabled_again_loads_and_a_running_one_disabled_stops() -> None:
    current = {"a": now("a", DISABLED), "b": now("b", LOADED)}
    got = actions(current, desired(entry("a"), entry("b", enabled=False)))
    assert got == {"a": Action.LOAD, "b": Action.DISABLE}


def test_plan_reads_nothing_but_its_arguments(tmp_path: Path) -> None:
    # A workspace path that does not exist and a catalog that is a plain set: nothing is
    # looked up on disk or in a real catalog.
    settings = parse_settings(
        json.dumps({"plugins": [entry("a")]}),
        path=tmp_path / "nowhere" / "settings.json",
        workspace=tmp_path / "nowhere",
    )
    assert [s.action for s in plan({}, settings, {"probe"}).steps] == [Action.LOAD]


def test_an_entry_differs_whenever_what_decides_its_isolation_does() -> None:
    # `differs` compares the isolation fields before building specs: every field the spec
    # reads must be among them (a field added to one and not the other would go unnoticed).
    base = InstanceConfig("i", "p", True, {}, "$.plugins[0]")
    values: dict[str, list[Any]] = {
        "isolation": ["process", "inprocess"],
        "isolation_default": ["process"],
        "memory_mb": [64],
        "sandbox": ["required", "best-effort"],
        "cpu_seconds": [2.0],
        "max_processes": [8],
    }
    for field in dataclasses.fields(InstanceConfig):
        for value in values.get(field.name, []):
            other = dataclasses.replace(base, **{field.name: value})
            if other.isolation_spec != base.isolation_spec:
                assert differs(base, other), (field.name, value)
    changed = {
        n
        for n, vs in values.items()
        for v in vs
        if dataclasses.replace(base, **{n: v}).isolation_spec != base.isolation_spec
    }
    assert changed == set(values)  # each field listed changes the spec
