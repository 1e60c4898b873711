"""A reconcile that loads many instances at once: the collector's old heap is set aside, its
young generation collected less often and the interpreter's thread switch interval longer only
while it loads, and everything is still collectable afterwards."""

from __future__ import annotations

import gc
import sys
import threading
import weakref

import pytest

from grambot.containment.loader import NAMESPACE_ROOT
from grambot.core import burst
from grambot.core.instance import Instance, InstanceState
from grambot.engine import Engine
from tests.helpers import Workspace, entry


async def test_a_burst_of_loads_unfreezes_and_stays_collectable(
    engine: Engine, workspace: Workspace
) -> None:
    count = burst.BURST + 6
    frozen_during: list[int] = []
    young_during: list[int] = []
    switch_during: list[float] = []
    threshold_before = gc.get_threshold()
    switch_before = sys.getswitchinterval()
    original = Instance.load

    async def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        frozen_during.append(gc.get_freeze_count())
        young_during.append(gc.get_threshold()[0])
        switch_during.append(sys.getswitchinterval())
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
    assert min(switch_during) >= burst.SWITCH_INTERVAL > switch_before
    assert sys.getswitchinterval() == switch_before

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


def test_settings_someone_else_changed_during_a_burst_are_left_alone() -> None:
    before, switch_before = gc.get_threshold(), sys.getswitchinterval()
    try:
        with burst.tuned_for_burst(burst.BURST):
            gc.set_threshold(1234, 5, 6)  # a plugin tuning the interpreter meanwhile
            sys.setswitchinterval(0.001)
        assert gc.get_threshold() == (1234, 5, 6)
        assert sys.getswitchinterval() == 0.001
        with burst.tuned_for_burst(burst.BURST - 1):  # not a burst: untouched
            assert gc.get_threshold() == (1234, 5, 6)
            assert sys.getswitchinterval() == 0.001
    finally:
        gc.set_threshold(*before)
        sys.setswitchinterval(switch_before)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12 removed cached_property's lock")
async def test_pydantic_namespace_properties_take_no_class_wide_lock_during_a_burst(
    engine: Engine, workspace: Workspace
) -> None:
    _namespace_utils = pytest.importorskip(
        "pydantic._internal._namespace_utils", reason="pydantic < 2.10: the burst leaves it be"
    )

    properties = [
        _namespace_utils.NsResolver.__dict__["types_namespace"],
        _namespace_utils.LazyLocalNamespace.__dict__["data"],
    ]
    locks_before = [p.lock for p in properties]
    locks_during: list[list[object]] = []
    original = Instance.load

    async def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        locks_during.append([p.lock for p in properties])
        return await original(self, *args, **kwargs)

    Instance.load = spy  # type: ignore[method-assign]
    try:
        count = burst.BURST + 1
        await engine.apply(workspace.write([entry(f"c{i}", "counter") for i in range(count)]))
    finally:
        Instance.load = original  # type: ignore[method-assign]
    assert locks_during
    for locks in locks_during:  # every model build reads them; 3.11 serialised every thread
        assert not any(isinstance(lock, type(threading.RLock())) for lock in locks)
        assert all(hasattr(lock, "__enter__") for lock in locks)
    assert [p.lock for p in properties] == locks_before  # put back


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12 removed cached_property's lock")
def test_overlapping_bursts_put_pydantic_locks_back_whichever_ends_first() -> None:
    _namespace_utils = pytest.importorskip(
        "pydantic._internal._namespace_utils", reason="pydantic < 2.10: the burst leaves it be"
    )

    prop = _namespace_utils.NsResolver.__dict__["types_namespace"]
    lock = prop.lock
    first = burst.tuned_for_burst(burst.BURST)
    second = burst.tuned_for_burst(burst.BURST)  # another engine's reconcile, say
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    assert prop.lock is lock
