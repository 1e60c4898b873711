"""The collector while many instances load at once (a reconcile of `BURST` or more loads).

Two settings of the cyclic garbage collector, for the burst only, then put back:

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

Both are left alone when someone else in the process changed them (a frozen heap that is not
the interpreter's own, thresholds other than the ones this set).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["BURST", "YOUNG_THRESHOLD", "collector_set_for_burst"]

BURST = 64  # loads in one reconcile from which the collector is set for a burst
YOUNG_THRESHOLD = 20_000

# What was frozen when this module was imported counts as the interpreter's own, not someone
# else's: CPython 3.12 starts with the immortal tuples of its static types in the permanent
# generation (375 on 3.12.1; none on 3.11 and 3.13). Our first unfreeze releases them into the
# oldest generation with the rest (immortal: never collected); from then on, 0.
_frozen_by_interpreter = gc.get_freeze_count()


@contextlib.contextmanager
def collector_set_for_burst(loads: int) -> Iterator[None]:
    """For a burst of `loads` loads: the old heap set aside, young collections less often."""
    global _frozen_by_interpreter
    if loads < BURST:
        yield
        return
    freeze = gc.get_freeze_count() == _frozen_by_interpreter
    before = gc.get_threshold()
    ours = (max(before[0], YOUNG_THRESHOLD), *before[1:])
    gc.set_threshold(*ours)
    if freeze:
        gc.freeze()
    try:
        yield
    finally:
        if freeze:
            gc.unfreeze()
            _frozen_by_interpreter = 0
        if gc.get_threshold() == ours:  # nobody changed them meanwhile
            gc.set_threshold(*before)
