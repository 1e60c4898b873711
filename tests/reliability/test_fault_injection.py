"""Fault injection: 3N instances of which N are faulty, one fault each, loaded side by side.

Every healthy instance reaches `loaded`; every faulty one is in a typed state with a reason; the
registries hold exactly the registrations of loaded instances; nothing a removed instance started
keeps running unreported; the event loop and the event consumer live on throughout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from grambot.containment.guards import GuardedTool
from grambot.containment.limits import DEFAULT_TIMEOUT_MS, Limit
from grambot.containment.loader import NAMESPACE_ROOT
from grambot.containment.tracking import threads_running_code_of
from grambot.core.instance import InstanceState
from grambot.engine import Engine
from grambot.errors import StageTimeout
from grambot.registries.tools import ToolContext
from tests.helpers import FIXTURE_PLUGINS, Workspace, entry, eventually_async
from tests.reliability.evidence import Evidence
from tests.reliability.faults import release_all

FAULTY_PLUGINS = Path(__file__).resolve().parents[1] / "fixtures" / "faulty"
PLUGIN_DIRS = [str(FIXTURE_PLUGINS), str(FAULTY_PLUGINS)]
TIMEOUTS = {"create": 2.0, "load": 2.0, "unload": 2.0, "eventHandler": 0.3}
# Every reason an instance may be failed for (README, "Lifecycle"; "invalid-plugin": the entry
# module defines no usable `plugin`).
FAILURE_KINDS = {
    "plugin-not-found",
    "invalid-settings",
    "invalid-plugin",
    "import-error",
    "create-error",
    "load-error",
    "timeout",
    "registration-conflict",
}
BURST = 200
# The deadline-tool plugin's manifest `timeoutMs`: short, so that its hanging tool times out fast.
TOOL_MS = json.loads((FAULTY_PLUGINS / "deadline-tool" / "plugin.json").read_text())["timeoutMs"]


@dataclass(frozen=True)
class Fault:
    name: str
    plugin: str
    settings: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None  # None: the instance loads (its fault lies elsewhere)
    stage: str | None = None

    @property
    def instance_id(self) -> str:
        return f"x-{self.name}"

    def entry(self) -> dict[str, Any]:
        return entry(self.instance_id, self.plugin, **self.settings)


def _faulty(fault: str, **settings: Any) -> dict[str, Any]:
    return {"fault": fault, **settings}


FAULTS = [
    Fault("import-raise", "import-raise", kind="import-error", stage="import"),
    Fault("import-hang", "import-hang", kind="timeout", stage="import"),
    Fault("unknown-plugin", "no-such-plugin", kind="plugin-not-found", stage="lookup"),
    Fault(
        "validator-raise",
        "faulty",
        {"validator": "raise"},
        "invalid-settings",
        "settings validation",
    ),
    Fault(
        "validator-crash",
        "faulty",
        {"validator": "crash"},
        "invalid-settings",
        "settings validation",
    ),
    Fault("validator-hang", "faulty", {"validator": "hang"}, "timeout", "settings validation"),
    Fault("create-raise", "faulty", _faulty("create-raise"), "create-error", "create"),
    Fault("create-hang", "faulty", _faulty("create-hang"), "timeout", "create"),
    Fault("load-raise", "faulty", _faulty("load-raise", tool_name="lr-tool"), "load-error", "load"),
    Fault("load-hang", "faulty", _faulty("load-hang", tool_name="lh-tool"), "timeout", "load"),
    Fault("load-exit", "faulty", _faulty("load-exit"), "load-error", "load"),
    Fault(
        "conflict",
        "faulty",
        _faulty("conflict", tool_name="h0-tool"),
        "registration-conflict",
        "load",
    ),
    Fault("burst", "faulty", _faulty("burst", burst=BURST), "load-error", "load"),
    Fault("handler-raise", "faulty", _faulty("emit", event_type="faulty.raise")),
    Fault("handler-hang", "faulty", _faulty("emit", event_type="faulty.hang")),
    Fault("tool-raise", "faulty", _faulty("tool-raise", tool_name="raising-tool")),
    Fault("tool-hang", "deadline-tool", {"mode": "hang", "tool_name": "hanging-tool"}),
    Fault("task-leak", "faulty", _faulty("task-leak")),
    Fault("thread-leak", "faulty", _faulty("thread-leak")),
    Fault("unload-raise", "faulty", _faulty("unload-raise")),
    Fault("unload-hang", "faulty", _faulty("unload-hang")),
]


def _healthy(count: int) -> list[dict[str, Any]]:
    """Half probes, half healthy instances of the faulty plugin itself (sharing its code)."""
    return [
        entry(f"h{n}", "probe" if n % 2 == 0 else "faulty", tool_name=f"h{n}-tool")
        for n in range(count)
    ]


def _instance_modules(prefix: str) -> list[str]:
    return [m for m in sys.modules if m.startswith(f"{NAMESPACE_ROOT}.{prefix}")]


def _pending_tasks(prefix: str) -> list[str]:
    return sorted(
        t.get_name()
        for t in asyncio.all_tasks()
        if t.get_name().startswith(prefix) and not t.done()
    )


def _tool_owners(engine: Engine) -> dict[str, str | None]:
    tools = engine.registries.tools
    return {key: tools.owner_of(key) for key in tools}


@pytest.mark.slow  # ~8 s: it waits out 2 s load and unload deadlines of the hanging faults
async def test_a_third_faulty_instances_never_disturb_the_rest(
    engine: Engine,
    workspace: Workspace,
    caplog: pytest.LogCaptureFixture,
    evidence: Evidence,
) -> None:
    try:
        await _scenario(engine, workspace, caplog, evidence)
    finally:
        release_all()  # a failed assertion must not leave a stubborn task to hang the loop


async def _scenario(
    engine: Engine, workspace: Workspace, caplog: pytest.LogCaptureFixture, evidence: Evidence
) -> None:
    loop = asyncio.get_running_loop()
    healthy = _healthy(2 * len(FAULTS))
    healthy_ids = [e["instanceId"] for e in healthy]
    seen: dict[str, int] = {"faulty.burst": 0, "after": 0}

    def count(event: Any) -> None:
        seen[event.type] += 1

    async def hanging_handler(event: Any) -> None:
        await asyncio.sleep(3600)

    def raising_handler(event: Any) -> None:
        raise RuntimeError(f"handler fails on {event.type}")

    engine.event_engine.register("faulty.burst", count)
    engine.event_engine.register("after", count)
    engine.event_engine.register("faulty.raise", raising_handler)
    engine.event_engine.register("faulty.hang", hanging_handler)

    # 1. The healthy instances alone.
    started = loop.time()
    await engine.apply(workspace.write(healthy, pluginDirs=PLUGIN_DIRS, timeouts=TIMEOUTS))
    assert sorted(engine.loaded_ids()) == sorted(healthy_ids)
    healthy_tools = {f"{i}-tool": i for i in healthy_ids}
    assert _tool_owners(engine) == healthy_tools

    # 2. Add one instance per fault next to them.
    with caplog.at_level(logging.WARNING, logger="grambot"):
        await engine.apply(
            workspace.write(
                healthy + [f.entry() for f in FAULTS], pluginDirs=PLUGIN_DIRS, timeouts=TIMEOUTS
            )
        )
    load_seconds = loop.time() - started
    for instance_id in healthy_ids[::2]:  # the probes log their calls: nobody was reloaded
        assert workspace.calls(instance_id) == ["create", "load"], instance_id
    for instance_id in healthy_ids:
        assert engine.state_of(instance_id) is InstanceState.LOADED, instance_id
    loading = [f for f in FAULTS if f.kind is None]
    for fault in FAULTS:
        record = engine.instance(fault.instance_id)
        assert record is not None, fault.name
        if fault.kind is None:
            assert record.state is InstanceState.LOADED, (fault.name, record.failure)
            continue
        assert record.state is InstanceState.FAILED, fault.name
        assert record.failure is not None and record.failure.message, fault.name
        assert record.failure.kind in FAILURE_KINDS, (fault.name, record.failure.kind)
        assert (record.failure.kind, record.failure.stage) == (fault.kind, fault.stage), (
            fault.name,
            record.failure,
        )
        assert fault.instance_id in caplog.text  # every failure is logged, naming the instance
    assert "plugin code raised SystemExit" in (engine.instance("x-load-exit").failure.message)  # type: ignore[union-attr]

    # Registries: exactly what loaded instances registered.
    expected_tools = {
        **healthy_tools,
        "raising-tool": "x-tool-raise",
        "hanging-tool": "x-tool-hang",
    }
    assert _tool_owners(engine) == expected_tools
    for registry in (
        engine.registries.connectors,
        engine.registries.inference,
        engine.registries.images,
    ):
        assert len(registry) == 0
    # Nothing a failed instance started is still running; its modules are gone.
    failed = [f for f in FAULTS if f.kind is not None]
    await eventually_async(
        lambda: not any(_pending_tasks(f.instance_id + ":") for f in failed), 2.0
    )
    for fault in failed:
        if fault.name != "import-hang":  # its abandoned import is checked after release
            assert _instance_modules(fault.instance_id + "__") == [], fault.name

    # Tools called through the registry: a raising tool hurts only its caller; a hanging one
    # is ended at its plugin's deadline (manifest timeoutMs, else 5000 ms) and its task
    # cancelled, while the other tools go on answering.
    tools = engine.registries.tools
    with pytest.raises(RuntimeError, match="fails on purpose"):
        await tools.get("raising-tool").execute({}, ToolContext())  # type: ignore[union-attr]
    hanging, echo = tools.get("hanging-tool"), tools.get("h0-tool")
    assert isinstance(hanging, GuardedTool) and hanging.limit == Limit.from_ms(TOOL_MS)
    for name in ("raising-tool", "h0-tool", "h1-tool"):  # no timeoutMs: the default deadline
        tool = tools.get(name)
        assert isinstance(tool, GuardedTool), name
        assert tool.limit == Limit.from_ms(DEFAULT_TIMEOUT_MS), name
    assert echo is not None
    call_started = loop.time()
    hang_call = asyncio.ensure_future(hanging.execute({}, ToolContext()))
    answered = await echo.execute({"text": "still here"}, ToolContext())
    answered_after = loop.time() - call_started
    with pytest.raises(StageTimeout, match=f"tool 'hanging-tool' timed out after {TOOL_MS} ms"):
        await hang_call
    tool_seconds = loop.time() - call_started
    assert answered.text == "still here" and answered_after < TOOL_MS / 1000
    assert TOOL_MS / 1000 * 0.9 <= tool_seconds < TOOL_MS / 1000 + 2.0, tool_seconds
    await eventually_async(lambda: not _pending_tasks("x-tool-hang:"), 2.0)
    assert engine.state_of("x-tool-hang") is InstanceState.LOADED

    # Events: the burst of the failed instance is handled in full, the raising and the hanging
    # handler are logged, and the consumer goes on to the next event.
    with caplog.at_level(logging.ERROR, logger="grambot"):
        engine.queue.emit("test", "test", "after")
        await eventually_async(lambda: seen["after"] == 1, 5.0, what=f"the 'after' event of {seen}")
    assert seen["faulty.burst"] == BURST
    assert "handler fails on faulty.raise" in caplog.text
    assert "timed out after 0.3 s" in caplog.text
    assert engine.event_engine.running

    # 3. Remove the faulty instances: leftovers are cancelled or reported by name.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="grambot"):
        await engine.apply(workspace.write(healthy, pluginDirs=PLUGIN_DIRS, timeouts=TIMEOUTS))
    assert sorted(engine.loaded_ids()) == sorted(healthy_ids)
    assert all(engine.instance(f.instance_id) is None for f in FAULTS)
    assert _tool_owners(engine) == healthy_tools
    log = caplog.text
    assert "x-unload-raise: unload failed" in log
    assert "x-unload-hang: unload failed: StageTimeout" in log
    assert "x-task-leak:stubborn" in log  # the task that ignores cancellation, by name
    assert "x-thread-leak-spinner" in log  # the thread that never stops, by name
    for fault in FAULTS:
        assert not _pending_tasks(f"{fault.instance_id}:") or fault.name == "task-leak"
    release_all()
    await eventually_async(lambda: not _pending_tasks("x-"), 5.0, what="no x- task pending")
    await eventually_async(
        lambda: not any(t.name.startswith("x-") for t in threading.enumerate()), 5.0
    )
    # The import that hung was abandoned; once it returns it must not resurrect its modules.
    await eventually_async(lambda: not threads_running_code_of(NAMESPACE_ROOT), 5.0)
    assert _instance_modules("x-") == []

    # 4. Remove everything.
    await engine.apply(workspace.write([], pluginDirs=PLUGIN_DIRS, timeouts=TIMEOUTS))
    assert engine.loaded_ids() == []
    assert len(engine.registries.tools) == 0
    await eventually_async(lambda: not _pending_tasks("h"), 2.0, what="no h task pending")
    assert _instance_modules("") == []
    assert engine.event_engine.running and not loop.is_closed()

    evidence.add(
        "fault injection",
        f"{3 * len(FAULTS)} instances side by side, {len(FAULTS)} faulty: "
        + ", ".join(f.name for f in FAULTS),
        f"all {len(healthy_ids)} healthy loaded and never reloaded; "
        f"{len(failed)} failed with typed reasons "
        f"({', '.join(sorted({str(f.kind) for f in failed}))}); "
        f"{len(loading)} loaded with their fault elsewhere; registries = loaded instances' "
        "registrations; leaked task and thread reported by name at unload; event consumer "
        f"handled a {BURST}-event burst past a raising and a hanging handler",
        instances=3 * len(FAULTS),
        faulty=len(FAULTS),
        load_seconds=round(load_seconds, 2),
    )
    evidence.add(
        "tool deadlines",
        "a tool that never returns, called through the ToolRegistry, in the 63-instance engine "
        f"above (its plugin's manifest: timeoutMs {TOOL_MS}); another tool called meanwhile",
        f"the call raised StageTimeout 'timed out after {TOOL_MS} ms' and its task was "
        "cancelled; the other tool answered during the hang; the instance stayed loaded; "
        f"tools of plugins without timeoutMs carry the {DEFAULT_TIMEOUT_MS} ms default",
        deadline_ms=TOOL_MS,
        call_seconds=round(tool_seconds, 3),
        other_tool_answered_after_ms=round(answered_after * 1000, 1),
    )


async def test_background_task_raising_systemexit_does_not_stop_the_engine(
    engine: Engine, workspace: Workspace, caplog: pytest.LogCaptureFixture, evidence: Evidence
) -> None:
    settings = [entry("h", "probe"), entry("x", "faulty", fault="task-exit")]
    with caplog.at_level(logging.ERROR, logger="grambot"):
        await engine.apply(workspace.write(settings, pluginDirs=PLUGIN_DIRS))
        await eventually_async(lambda: not _pending_tasks("x:"), 2.0)
        await asyncio.sleep(0.05)  # the loop keeps turning after the task died
    assert sorted(engine.loaded_ids()) == ["h", "x"]
    assert "x:crash" in caplog.text and "SystemExit" in caplog.text
    engine.queue.emit("test", "test", "after")
    await eventually_async(lambda: engine.event_engine.handled >= 1, 2.0)
    evidence.add(
        "fault injection",
        "a plugin's background task raises SystemExit",
        "the event loop and the event consumer live on; the failure is logged naming the task",
    )
