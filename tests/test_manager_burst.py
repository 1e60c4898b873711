"""A reconcile that loads many instances at once leaves the interpreter to the application: an
embedded Engine changes no collector setting and no thread switch interval, `grambot run`'s
burst hook sets the collector aside only while the burst loads, and everything is still
collectable afterwards."""

from __future__ import annotations

import gc
import sys
import weakref
from pathlib import Path

from grambot.app.collector import BURST as COLLECTOR_BURST
from grambot.app.collector import YOUNG_THRESHOLD, collector_set_aside
from grambot.containment.loader import NAMESPACE_ROOT
from grambot.engine import Engine
from tests.helpers import FIXTURE_PLUGINS, Workspace, entry

BURST = COLLECTOR_BURST + 6  # loads in one reconcile

# load() records the interpreter's settings as plugin code sees them while the burst loads
_WITNESS = """
import gc
import sys

from grambot import Plugin


class Witness:
    def __init__(self, api):
        self.seen = None

    def load(self):
        self.seen = (gc.get_threshold(), sys.getswitchinterval(), gc.get_freeze_count())


plugin = Plugin(create=Witness)
"""


def _witness_dir(root: Path) -> Path:
    folder = root / "witness-plugins" / "witness"
    folder.mkdir(parents=True)
    (folder / "plugin.json").write_text(
        '{"id": "witness", "name": "Witness", "description": "Records the interpreter.", '
        '"entry": "plugin.py"}'
    )
    (folder / "plugin.py").write_text(_WITNESS)
    return folder.parent


def _seen(engine: Engine, count: int) -> list[tuple[tuple[int, int, int], float, int]]:
    seen = []
    for i in range(count):
        generation = engine.instance(f"w{i}").generation  # type: ignore[union-attr]
        assert generation is not None, f"w{i} did not load"
        seen.append(generation.plugin_object.seen)
    return seen


async def test_an_embedded_engine_leaves_the_interpreter_as_it_found_it(
    engine: Engine, workspace: Workspace
) -> None:
    threshold, switch, frozen = gc.get_threshold(), sys.getswitchinterval(), gc.get_freeze_count()
    dirs = [str(FIXTURE_PLUGINS), str(_witness_dir(workspace.root))]
    await engine.apply(
        workspace.write([entry(f"w{i}", "witness") for i in range(BURST)], pluginDirs=dirs)
    )
    assert set(_seen(engine, BURST)) == {(threshold, switch, frozen)}  # during the burst
    assert (gc.get_threshold(), sys.getswitchinterval()) == (threshold, switch)  # and after
    await engine.apply(workspace.write([], pluginDirs=dirs))


async def test_grambot_runs_hook_sets_the_collector_aside_only_while_a_burst_loads(
    workspace: Workspace,
) -> None:
    threshold, switch = gc.get_threshold(), sys.getswitchinterval()
    dirs = [str(FIXTURE_PLUGINS), str(_witness_dir(workspace.root))]
    # as grambot.app.runtime makes it
    engine = Engine(
        workspace.root, builtin_dir=None, entry_points=False, around_loads=collector_set_aside
    )
    await engine.event_engine.start()
    try:
        await engine.apply(
            workspace.write([entry(f"w{i}", "witness") for i in range(BURST)], pluginDirs=dirs)
        )
        for young, *rest in {(t[0], t[1:], s, f) for t, s, f in _seen(engine, BURST)}:
            assert young >= YOUNG_THRESHOLD > threshold[0]
            assert rest[0] == threshold[1:]
            assert rest[1] == switch  # the switch interval is never changed
            assert rest[2] > 0  # the old heap set aside while loading
        assert gc.get_threshold() == threshold  # and put back
        assert gc.get_freeze_count() == 0

        generation = engine.instance("w0").generation  # type: ignore[union-attr]
        assert generation is not None
        module = sys.modules[f"{generation.namespace.name}.plugin"]
        del generation
        ref = weakref.ref(module)
        del module
        await engine.apply(workspace.write([], pluginDirs=dirs))
        gc.collect()
        assert ref() is None  # still collectable
        assert not [n for n in sys.modules if n.startswith(NAMESPACE_ROOT + ".")]
    finally:
        await engine.stop(drain_deadline=1.0)


def test_collector_settings_someone_else_changed_during_a_burst_are_left_alone() -> None:
    before = gc.get_threshold()
    try:
        with collector_set_aside(BURST):
            gc.set_threshold(1234, 5, 6)  # a plugin tuning the interpreter meanwhile
        assert gc.get_threshold() == (1234, 5, 6)
        frozen = gc.get_freeze_count()
        with collector_set_aside(COLLECTOR_BURST - 1):  # not a burst: untouched
            assert gc.get_threshold() == (1234, 5, 6)
            assert gc.get_freeze_count() == frozen
    finally:
        gc.set_threshold(*before)
