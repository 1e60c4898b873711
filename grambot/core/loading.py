"""Where a load runs, and the load sequence itself: written once, for load, reload and check.

`new_generation` is the one place that picks the kind of a new load: the engine's isolation
backend (grambot.isolation, reached through the `Isolation` Protocol) when the entry runs out
of process, else an `InProcessGeneration`. `bring_up` runs import → validate settings → create
→ load, each under its deadline, and undoes what it did when a step fails.
"""

from __future__ import annotations

from collections.abc import Callable

from grambot.config.settings import InstanceConfig
from grambot.containment.boundary import engine_cancelled
from grambot.containment.loader import LoaderSnapshot
from grambot.containment.stages import Progress
from grambot.containment.tracking import TaskFailureReporter
from grambot.core.failures import Failure, classify
from grambot.core.generation import Generation, OnLost, Services
from grambot.core.inprocess import InProcessGeneration

__all__ = ["bring_up", "new_generation"]


def new_generation(
    services: Services,
    config: InstanceConfig,
    on_task_failure: TaskFailureReporter,
    on_lost: OnLost,
) -> Generation:
    """A new generation for `config`: in a child when the engine's isolation backend runs it
    there (and `on_lost` hears when that child ends unasked), else in this process."""
    isolation = services.isolation
    if isolation is not None:
        elsewhere = isolation.generation(services, config, on_task_failure, on_lost)
        if elsewhere is not None:
            return elsewhere
    return InProcessGeneration(services, config, on_task_failure)


async def bring_up(
    generation: Generation,
    progress: Progress,
    redact: Callable[[str], str],
    *,
    imported: bool = False,
    snapshot: LoaderSnapshot | None = None,
) -> Failure | None:
    """import → validate settings → create → load, each under its deadline (the first three
    share the create deadline, and run as one worker-thread hand-off when `create` is sync);
    `imported`: the first two ran already (an edit validated before it replaced a running
    instance); `snapshot`: the view of the plugin files the import reads. None when loaded;
    else the Failure, once everything the steps did is undone (the plugin's `unload` called if
    `create` ran). Cancelled by the engine, it releases the load at once (`abandon`) and lets
    the cancellation through."""
    try:
        if not imported:
            await generation.import_and_validate(progress, create=True, snapshot=snapshot)
        if not generation.created:
            await generation.create(progress)
        await generation.call("load", progress)
    except BaseException as exc:
        if engine_cancelled(exc):  # shutdown, or a caller gave up: leave nothing behind
            generation.abandon()
            raise
        failure = classify(exc, progress.stage, redact)
        del exc  # its frames hold the plugin's objects: not kept through the teardown
        await generation.teardown(call_unload=generation.created, redact=redact)
        return failure
    return None
