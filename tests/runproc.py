"""A `grambot run` subprocess on a temporary workspace, observed with deadlines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.helpers import FIXTURE_PLUGINS, eventually

DEADLINE = 10.0
# The top level of .scout/status.json as `grambot run` writes it.
STATUS_KEYS = {
    "pid",
    "startedAt",
    "updatedAt",
    "heartbeatSeconds",
    "ignoredEdit",
    "settingsProblems",
    "instances",
    "inbox",
    "schedule",
}


def write_json_atomic(path: Path, data: Any) -> None:
    """How editors save: write a temp file, then rename it over the original."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def cli(
    ws: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """A `grambot` command on `ws`, run to its end."""
    return subprocess.run(
        [sys.executable, "-m", "grambot", *args, "--workspace", str(ws)],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


class EngineProcess:
    def __init__(
        self,
        workspace: Path,
        *args: str,
        env: dict[str, str] | None = None,
        stdin_text: str | None = None,
        close_stdin: bool = True,
    ) -> None:
        """`stdin_text`: written to the process's stdin (console input), which is then closed
        unless `close_stdin` is False (at EOF a lone console stops the engine)."""
        self.workspace = workspace
        self.scout = workspace / ".scout"
        self.settings_file = self.scout / "settings.json"
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "grambot", "run", "--workspace", str(workspace), *args],
            stdin=subprocess.PIPE if stdin_text is not None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        if stdin_text is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(stdin_text)
            self.proc.stdin.flush()
            if close_stdin:
                self.proc.stdin.close()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line)

    @property
    def output(self) -> str:
        with self._lock:
            return "".join(self.lines)

    def wait_for_log(self, text: str, timeout: float = DEADLINE, count: int = 1) -> None:
        eventually(
            lambda: self.output.count(text) >= count or self.proc.poll() is not None,
            timeout,
            what=f"log line {text!r}",
        )
        assert self.output.count(text) >= count, f"{text!r} not logged:\n{self.output}"

    def wait_ready(self) -> None:
        self.wait_for_log("grambot ready")

    def status(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.scout / "status.json").read_text())
        except (OSError, ValueError):
            return None
        return data

    def states(self) -> dict[str, str]:
        status = self.status() or {"instances": []}
        return {i["instanceId"]: i["state"] for i in status["instances"]}

    def wait_states(self, expected: dict[str, str], timeout: float = DEADLINE) -> dict[str, str]:
        def match() -> bool:
            return self.states() == expected

        try:
            eventually(match, timeout, what=f"states {expected}")
        except AssertionError:
            raise AssertionError(f"states {self.states()} != {expected}\n{self.output}") from None
        return expected

    def write(self, plugins: list[dict[str, Any]], **engine_keys: Any) -> None:
        data = {"pluginDirs": [str(FIXTURE_PLUGINS)], "plugins": plugins, **engine_keys}
        write_json_atomic(self.settings_file, data)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = DEADLINE) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        finally:
            self.kill()
        return code

    def wait_exit(self, timeout: float = 30) -> int:
        """Wait for the engine to exit on its own (e.g. at EOF on stdin); killed if it has not
        within `timeout`."""
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        """Kill if still running, then release the pipe (idempotent)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self._reader.join(5)
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()


@contextmanager
def running(workspace: Path, *args: str, **options: Any) -> Iterator[EngineProcess]:
    """A `grambot run` on `workspace`, ready; stopped at the end, where it must exit 0."""
    engine = EngineProcess(workspace, *args, **options)
    try:
        engine.wait_ready()
        yield engine
    finally:
        assert engine.stop() == 0, engine.output


def workspace_with(root: Path, plugins: list[dict[str, Any]], **engine_keys: Any) -> Path:
    scout = root / ".scout"
    scout.mkdir(parents=True, exist_ok=True)
    data = {"pluginDirs": [str(FIXTURE_PLUGINS)], "plugins": plugins, **engine_keys}
    (scout / "settings.json").write_text(json.dumps(data, indent=2))
    return root
