"""A reconcile that loads many instances at once: the collector's old heap is set aside and its
young generation collected less often only while it loads, and everything is still collectable
afterwards."""

from __future__ import annotations

import gc
import sys
import weakref

from grambot.core import burst
from grambot.core.instance import Instance, InstanceState
from grambot.engine import Engine
from grambot.plugins.loader import NAMESPACE_ROOT
from tests.conftest import Workspace, entry


async def test_a_burst_of_loads_unfreezes_and_stays_collectable(
    engine: Engine, workspace: Workspace
) -> None:
    count = burst.BURST + 6
    frozen_during: list[int] = []
    young_during: list[int] = []
    threshold_before = gc.get_threshold()
    original = Instance.load

    async def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        frozen_during.append(gc.get_freeze_count())
        young_during.append(gc.get_threshold()[0])
        return await original(self, *args, **kwargs)

    Instance.load = spy  # type: ignore[method-assign]
    try:
        await engine.apply(workspace.write([entry(f"c{i}", "counter") for i in range(count)]))
    finally:
        Instance.load = original  # type: ignore[method-assign]
    assert all(engine.state_of(f"c{i}") is InstanceState.LOADED for i in range(count))
    assert frozen_during and all(n > 0 for n in frozen_during)  # set aside while loading
    assert gc.get_freeze_count() == 0  # and put back
    assert min(young_during) >= burst.YOUNG_THRESHOLD > threshold_before[0]
    assert gc.get_threshold() == threshold_before

    generation = engine.instance("c0").generation  # type: ignore[union-attr]
    assert generation is not None
    module = sys.modules[f"{generation.namespace.name}.plugin"]
    del generation
    ref = weakref.ref(module)
    del module
    await engine.apply(workspace.write([]))
    gc.collect()
    assert ref() is None
    assert not [n for n in sys.modules if n.startswith(NAMESPACE_ROOT + ".")]


def test_thresholds_someone_else_set_during_a_burst_are_left_alone() -> None:
    before = gc.get_threshold()
    try:
        with burst.collector_set_for_burst(burst.BURST):
            gc.set_threshold(1234, 5, 6)  # a plugin tuning the collector meanwhile
        assert gc.get_threshold() == (1234, 5, 6)
        with burst.collector_set_for_burst(burst.BURST - 1):  # not a burst: untouched
            assert gc.get_threshold() == (1234, 5, 6)
    finally:
        gc.set_threshold(*before)
