"""The garbage collector while `grambot run` loads many instances at once.

This is the application's choice for its own process, not the engine's: an `Engine` embedded
elsewhere changes no interpreter setting (its host owns the collector and the thread switch
interval). `grambot run` hands `collector_set_aside` to its Engine as `around_loads`, and the
manager wraps each batch of loads in it; from `BURST` loads on it sets, for the burst only:

* the heap that existed before the burst aside (`gc.freeze()`): each full collection walks
  every tracked object, and loading N instances grows the heap by N instances' modules and
  classes and triggers full collections along the way, so without this a big reconcile spends
  a growing share of its time rescanning objects that were old before it started.
  `gc.unfreeze()` afterwards puts them back into the oldest generation, where the next full
  collection sees them again: nothing becomes uncollectable.
* the youngest generation collected after `YOUNG_THRESHOLD` net new container objects instead
  of CPython's 700. What a load allocates mostly survives (modules, classes, pydantic schemas),
  so the frequent young collections walk it only to promote it. The cost is garbage cycles of
  up to that many objects (a few MB) living a little longer during the burst.

Measured (bench scale, load 1000 instances, two cores, CPython 3.11; bench/README.md): 1.05-1.55x
the floor with this (median 1.36x over 8 processes), 1.30-2.01x without (median 1.78x). Below
`BURST` loads (a real bot's reconcile) it does nothing. Each setting is left alone when someone
else in the process changed it meanwhile (a plugin, say).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["BURST", "YOUNG_THRESHOLD", "collector_set_aside"]

BURST = 64  # loads in one batch from which the collector is set aside
YOUNG_THRESHOLD = 20_000

# What was frozen when this module was imported counts as the interpreter's own: CPython 3.12
# starts with the immortal tuples of its static types in the permanent generation (375 on
# 3.12.1; none on 3.11 and 3.13). Our first unfreeze releases them into the oldest generation
# with the rest (immortal: never collected); from then on, 0. (Module state: the collector it
# describes is the process's, one per interpreter.)
_frozen_by_interpreter = gc.get_freeze_count()


@contextlib.contextmanager
def collector_set_aside(loads: int) -> Iterator[None]:
    """For a batch of `loads` loads: the old heap set aside and young collections less often
    while it loads, when it is a burst (`BURST` or more)."""
    global _frozen_by_interpreter
    if loads < BURST:
        yield
        return
    freeze = gc.get_freeze_count() == _frozen_by_interpreter  # not someone else's frozen heap
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
