"""The interpreter while many instances load at once (a reconcile of `BURST` or more loads).

Four settings, for the burst only, then put back:

* The heap that existed before the burst is set aside (`gc.freeze()`): each full collection
  walks every tracked object, and loading N instances grows the heap by N instances' modules
  and classes and triggers full collections along the way, so without this a big reconcile
  spends a growing share of its time rescanning objects that were old before it started.
  `gc.unfreeze()` afterwards puts them back into the oldest generation, where the next full
  collection sees them again: nothing becomes uncollectable.
* The youngest generation is collected after `YOUNG_THRESHOLD` net new container objects
  instead of CPython's 700. What a load allocates mostly survives (modules, classes, pydantic
  schemas), so the frequent young collections walk it only to promote it. Measured (bench
  scale, load 1000 instances): 1.76x the floor with 700, 1.50x with 10,000, 1.44x with 20,000.
  The cost is garbage cycles of up to that many objects (a few MB) living a little longer
  during the burst.
* The thread switch interval (`sys.setswitchinterval`) is at least `SWITCH_INTERVAL`, 20 ms
  instead of CPython's 5. A burst keeps every stage worker busy with CPU-bound imports (pydantic
  building models), and a thread waiting for the interpreter lock forces the running one to
  hand it over after each interval: with eight workers and the loop on two cores, each hand-off
  moves the work to a core whose caches hold none of it. The cost: while the burst lasts, a
  thread (the event loop among them) may wait up to 20 ms per thread ahead of it for the lock,
  where it waited 5; the loop already stalls for hundreds of milliseconds while it starts a
  thousand loads.
* On CPython 3.11, the two cached properties of pydantic that every model build reads
  (`NsResolver.types_namespace`, `LazyLocalNamespace.data`) take no lock. 3.11's
  `functools.cached_property` takes one lock shared by every instance of the class (3.12
  removed it: gh-87634), so the workers building plugins' settings models queue on it; a holder
  preempted inside sends the others to sleep, and from then on the loop and the workers hand
  the interpreter lock around per outcome (the loop woken 400-530 times in a load of 1000
  instead of 2-12; 3,000-5,000 voluntary context switches instead of 200-400). Both are pure
  (a namespace computed from their object's fields): two threads reading one at once compute
  it twice, as they do on 3.12 and later, where pydantic runs without the lock. A pydantic
  without them is left as it is.

  Measured together (bench scale, load 1000 instances, two cores; the bench's best of 5 rounds,
  one figure per process): 1.49-1.73x the floor with neither (6 processes), 1.27-1.77x with the
  longer switches alone (16), 1.45-1.84x without the lock alone (6), 1.24-1.45x with both (16):
  neither alone removes the slow processes.

Each is left alone when someone else in the process changed it (a frozen heap that is not
the interpreter's own, thresholds or an interval other than the ones this set).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import sys
import threading
from collections.abc import Iterator

__all__ = ["BURST", "SWITCH_INTERVAL", "YOUNG_THRESHOLD", "tuned_for_burst"]

BURST = 64  # loads in one reconcile from which the interpreter is set for a burst
YOUNG_THRESHOLD = 20_000
SWITCH_INTERVAL = 0.02  # seconds

# (module, class, cached property) read by every pydantic model build (pydantic 2.10 and later)
_SHARED_LOCK_PROPERTIES = (
    ("pydantic._internal._namespace_utils", "NsResolver", "types_namespace"),
    ("pydantic._internal._namespace_utils", "LazyLocalNamespace", "data"),
)

_RLOCK = type(threading.RLock())

# What was frozen when this module was imported counts as the interpreter's own, not someone
# else's: CPython 3.12 starts with the immortal tuples of its static types in the permanent
# generation (375 on 3.12.1; none on 3.11 and 3.13). Our first unfreeze releases them into the
# oldest generation with the rest (immortal: never collected); from then on, 0.
_frozen_by_interpreter = gc.get_freeze_count()


@contextlib.contextmanager
def tuned_for_burst(loads: int) -> Iterator[None]:
    """For a burst of `loads` loads: the old heap set aside, young collections less often,
    longer thread switches."""
    global _frozen_by_interpreter
    if loads < BURST:
        yield
        return
    freeze = gc.get_freeze_count() == _frozen_by_interpreter
    before = gc.get_threshold()
    ours = (max(before[0], YOUNG_THRESHOLD), *before[1:])
    gc.set_threshold(*ours)
    switch_before = sys.getswitchinterval()
    sys.setswitchinterval(max(switch_before, SWITCH_INTERVAL))
    switch_ours = sys.getswitchinterval()  # as the interpreter stores it (whole microseconds)
    if freeze:
        gc.freeze()
    try:
        with _cached_properties_unlocked():
            yield
    finally:
        if freeze:
            gc.unfreeze()
            _frozen_by_interpreter = 0
        if gc.get_threshold() == ours:  # nobody changed them meanwhile
            gc.set_threshold(*before)
        if sys.getswitchinterval() == switch_ours:
            sys.setswitchinterval(switch_before)


@contextlib.contextmanager
def _cached_properties_unlocked() -> Iterator[None]:
    """pydantic's model-building cached properties without 3.11's class-wide lock (a thread
    inside one when it is put back leaves the lock it entered)."""
    swapped: list[tuple[functools.cached_property[object], object, object]] = []
    if sys.version_info < (3, 12):
        for module_name, class_name, name in _SHARED_LOCK_PROPERTIES:
            owner = getattr(sys.modules.get(module_name), class_name, None)  # never imported
            prop = vars(owner).get(name) if isinstance(owner, type) else None
            lock = getattr(prop, "lock", None)
            # a real lock only: another burst under way has swapped it already
            if isinstance(prop, functools.cached_property) and isinstance(lock, _RLOCK):
                ours = contextlib.nullcontext()
                prop.lock = ours  # type: ignore[attr-defined]
                swapped.append((prop, lock, ours))
    try:
        yield
    finally:
        for swapped_prop, original, put in swapped:
            if swapped_prop.lock is put:  # type: ignore[attr-defined]
                swapped_prop.lock = original  # type: ignore[attr-defined]
