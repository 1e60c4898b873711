"""The console connector, in real `grambot run` processes.

On a pipe it reads with the event loop (no thread), and at EOF, when it is the only connector,
it asks the engine to stop once the replies are out: `printf 'hi\\n' | grambot run` answers and
exits 0. No thread of it outlives it: a reload does not leave a reader behind that swallows the
next line, and Ctrl-C warns about no leftover thread. On a terminal (a real pty here) it reads
with prompt_toolkit's prompt_async, and Ctrl-C at the prompt stops the engine.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import entry, eventually
from tests.runproc import EngineProcess, workspace_with
from tests.terminal import Terminal

LEFTOVER = "threads still running its code"
ECHO = entry("echo", "echo")


def console_ws(root: Path, *extra: dict[str, Any], **console: Any) -> Path:
    plugins = [entry("console", "console", **console), ECHO, *extra]
    return workspace_with(root, plugins, agent={"inference": "echo"})


class OpenStdin(EngineProcess):
    """A `grambot run` whose stdin is a pipe the test keeps open and writes lines to."""

    def __init__(self, workspace: Path) -> None:
        super().__init__(workspace, stdin_text="", close_stdin=False)

    def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        super().kill()


@contextmanager
def answered_one(root: Path) -> Iterator[OpenStdin]:
    """An engine on an open pipe that has answered "one"; killed at the end, where none of the
    console's threads may be left running."""
    engine = OpenStdin(console_ws(root))
    try:
        engine.wait_ready()
        engine.say("one")
        engine.wait_for_log("bot> one")
        yield engine
    finally:
        engine.kill()
    assert LEFTOVER not in engine.output, engine.output


# -- a pipe ------------------------------------------------------------------------------------


@pytest.mark.timeout(40)
def test_printf_into_grambot_run_answers_and_exits_0(tmp_path: Path) -> None:
    engine = EngineProcess(console_ws(tmp_path), stdin_text="hi\nbye\n")
    code = engine.wait_exit()
    out = engine.output
    assert code == 0, out
    assert "bot> hi" in out and "bot> bye" in out, out
    assert out.index("bot> hi") < out.index("bot> bye")
    assert "stdin" in out and "grambot stopped" in out, out
    assert LEFTOVER not in out and "Traceback" not in out, out


def test_an_isolated_console_reads_the_engines_stdin(tmp_path: Path) -> None:
    """`"isolation": "process"`: the console's child is handed the engine's stdin (its manifest
    says `"stdin": true`), accepts into the engine's inbox, and its EOF stops the engine."""
    plugins = [{**entry("console", "console"), "isolation": "process"}, ECHO]
    root = workspace_with(tmp_path, plugins, agent={"inference": "echo"})
    engine = EngineProcess(root, stdin_text="hi\nbye\n")
    code = engine.wait_exit()
    out = engine.output
    assert code == 0, out
    assert "bot> hi" in out and "bot> bye" in out, out
    assert "stdin closed" in out and "grambot stopped" in out, out
    assert "Traceback" not in out, out


@pytest.mark.timeout(40)
def test_an_empty_pipe_stops_the_engine_too(tmp_path: Path) -> None:
    engine = EngineProcess(console_ws(tmp_path), stdin_text="")
    code = engine.wait_exit()
    assert code == 0, engine.output


@pytest.mark.timeout(40)
def test_eof_does_not_stop_an_engine_with_another_connector(tmp_path: Path) -> None:
    ws = console_ws(tmp_path, entry("chat", "fakechat"))
    engine = EngineProcess(ws, stdin_text="hi\n")
    try:
        engine.wait_for_log("bot> hi")
        engine.wait_for_log("stdin")
        time.sleep(1.0)
        assert engine.proc.poll() is None, engine.output  # the other connector keeps it up
        assert engine.states()["chat"] == "loaded"
    finally:
        assert engine.stop() == 0, engine.output
    assert LEFTOVER not in engine.output


@pytest.mark.timeout(40)
def test_sigint_while_the_console_waits_on_an_open_pipe_leaves_no_thread(tmp_path: Path) -> None:
    with answered_one(tmp_path) as engine:
        engine.signal(signal.SIGINT)
        assert engine.proc.wait(20) == 0, engine.output
    assert "console-reader" not in engine.output


@pytest.mark.timeout(40)
def test_a_reloaded_console_gets_the_next_line(tmp_path: Path) -> None:
    with answered_one(tmp_path) as engine:
        # an edit of the console's settings reloads it
        reloaded = entry("console", "console", botPrefix="bot2> ")
        engine.write([reloaded, ECHO], agent={"inference": "echo"})
        engine.wait_for_log("instance console (plugin console) loaded", count=2)
        engine.say("two")
        engine.wait_for_log("bot2> two")
        engine.say("three")
        engine.wait_for_log("bot2> three")
        assert engine.output.count("bot2> two") == 1


# -- a terminal --------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_on_a_terminal_the_console_prompts_answers_and_ctrl_c_stops_cleanly(
    tmp_path: Path,
) -> None:
    terminal = Terminal(
        "run", "--workspace", str(console_ws(tmp_path)), term="xterm", controlling=True
    )
    try:
        terminal.expect("grambot ready", 20)
        terminal.expect("you>", 20)  # drawn by prompt_toolkit: the space is a cursor move
        terminal.type(b"hello there\r")
        terminal.expect("bot> hello there", 20)
        terminal.type(b"\x03")  # Ctrl-C

        def exited() -> bool:
            terminal.read(0.1)
            return terminal.proc.poll() is not None

        eventually(exited, 20, 0, what="grambot run to exit after Ctrl-C")
        terminal.read(0.3)
        assert terminal.proc.poll() == 0, terminal.text
    finally:
        terminal.close()
    assert LEFTOVER not in terminal.text and "Traceback" not in terminal.text, terminal.text
    assert "Warning" not in terminal.text, terminal.text
    assert "grambot stopped" in terminal.text
    # log lines are printed above the prompt, never into it
    year = time.strftime("%Y")
    assert f"you> {year}-" not in terminal.text, terminal.text
