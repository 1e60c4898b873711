"""A reconcile that loads many instances at once: the collector's old heap is set aside only
while it loads, and everything is still collectable afterwards."""

from __future__ import annotations

import gc
import sys
import weakref

from grambot.core import manager
from grambot.core.instance import Instance, InstanceState
from grambot.engine import Engine
from grambot.plugins.loader import NAMESPACE_ROOT
from tests.conftest import Workspace, entry


async def test_a_burst_of_loads_unfreezes_and_stays_collectable(
    engine: Engine, workspace: Workspace
) -> None:
    count = manager.BURST + 6
    frozen_during: list[int] = []
    original = Instance.load

    async def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        frozen_during.append(gc.get_freeze_count())
        return await original(self, *args, **kwargs)

    Instance.load = spy  # type: ignore[method-assign]
    try:
        await engine.apply(workspace.write([entry(f"c{i}", "counter") for i in range(count)]))
    finally:
        Instance.load = original  # type: ignore[method-assign]
    assert all(engine.state_of(f"c{i}") is InstanceState.LOADED for i in range(count))
    assert frozen_during and all(n > 0 for n in frozen_during)  # set aside while loading
    assert gc.get_freeze_count() == 0  # and put back

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
