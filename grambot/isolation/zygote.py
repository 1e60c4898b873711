"""The zygote: a fresh interpreter that has imported grambot and pydantic once, and forks one
child per process-isolated instance (`python -P -m grambot.isolation.zygote FD`).

The engine starts it with `subprocess` (a fresh interpreter: none of the engine's threads,
locks or open files, `engine.lock` included) and talks to it over a SOCK_SEQPACKET socket (FD):

    engine -> zygote   {"spawn": id, "request": {...}} with the child's socket as an fd (and
                       the engine's stdin for a plugin whose manifest says `"stdin": true`)
    zygote -> engine   {"ready": pid}, {"spawned": id, "pid": pid}, {"exited": pid, "status": s}

It dies with the engine (PR_SET_PDEATHSIG, and at the end of its socket), and its children
die with it, so no child outlives the engine even when the engine is SIGKILLed. A child
confines itself (grambot.isolation.confine) and runs grambot.isolation.child; it never
returns into this loop.
"""

from __future__ import annotations

import gc
import json
import os
import selectors
import signal
import socket
import sys
from typing import Any

_CONTROL_BYTES = 64 * 1024


def main(control_fd: int, engine_pid: int) -> None:
    from grambot.isolation import child, confine  # noqa: F401  (imported once, shared by forks)

    confine.die_with_parent(engine_pid)
    control = socket.socket(fileno=control_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    gc.collect()
    gc.freeze()  # children share these pages instead of copying them on their first collection
    _send(control, {"ready": os.getpid()})
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ, "control")
    selector.register(wake_r, selectors.EVENT_READ, "child")
    while True:
        for key, _ in selector.select():
            if key.data == "child":
                os.read(wake_r, 4096)
                _reap(control)
                continue
            message, fds, _, _ = socket.recv_fds(control, _CONTROL_BYTES, 2)
            if not message:
                os._exit(0)  # the engine is gone: so are we, and our children with us
            request = json.loads(message)
            pid = os.fork()
            if pid == 0:
                selector.close()
                control.close()
                os.close(wake_r)
                os.close(wake_w)
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                if len(fds) > 1:  # the engine's stdin, for a console (`"stdin": true`)
                    os.dup2(fds[1], 0)
                    os.close(fds[1])
                _run_child(fds[0], request["request"])
            for fd in fds:
                os.close(fd)
            _send(control, {"spawned": request["spawn"], "pid": pid})
        _reap(control)


def _run_child(fd: int, request: dict[str, Any]) -> None:
    from grambot.isolation import child

    code = 1
    try:
        code = child.main(fd, request, parent=os.getppid())
    finally:
        os._exit(code)


def _reap(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(control, {"exited": pid, "status": status})


def _send(control: socket.socket, message: dict[str, Any]) -> None:
    try:
        control.send(json.dumps(message).encode())
    except OSError:
        os._exit(0)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
