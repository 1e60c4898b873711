"""Process isolation: `"isolation": "process"` runs an instance in a child process forked from
a zygote, confined (Landlock, RLIMIT_AS, nice, no capabilities), with the same plugin API over a
pipe (docs/isolation.md).

    backend.py     ProcessIsolation: the seam the core calls; modes, limits, status, the zygote
    remote.py      ProcessGeneration: one load of an isolated instance, as the engine holds it
    process.py     ChildProcess: one child's pipe, requests in flight, how it ended
    spec.py        Spec and Enforcement: what a child is asked to be, how its limits are kept
    proxies.py     what the registries hold for the child's registrations
    calls.py       how arguments, results and errors of those calls cross the pipe
    wire.py        length-prefixed msgpack frames, capped at 16 MiB
    forkserver.py  the engine's side of the zygote
    zygote.py      the zygote process
    child.py       the child process: the plugin runs here
    confine.py     what a child does to itself after the fork
    landlock.py    Landlock through ctypes
"""
