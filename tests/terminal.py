"""`grambot ARGS` on a real pseudo-terminal, as a person at a shell runs it: what it shows is
read from the terminal's master side, and what is typed is written to it."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time


class Terminal:
    """A pseudo-terminal as `grambot ARGS`'s stdin, stdout and stderr. `controlling` makes it
    the child's controlling terminal (in a session of its own, as a shell's job has it); without
    it the child only gets a session of its own, and /dev/tty is not there."""

    def __init__(
        self,
        *args: str,
        term: str = "dumb",
        controlling: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))

        def controlling_terminal() -> None:  # in the child
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "grambot", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, "TERM": term, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=not controlling,
            preexec_fn=controlling_terminal if controlling else None,
        )
        os.close(slave)
        self.seen = b""
        self.ended = False  # the child's side is closed: nothing more will be shown
        self._closed = False

    @property
    def text(self) -> str:
        return self.seen.decode(errors="replace")

    def read(self, timeout: float = 0.2) -> None:
        """Take in what is shown for up to `timeout` seconds, or until the terminal ends."""
        end = time.monotonic() + timeout
        while not self.ended and time.monotonic() < end:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every holder of the child's side closed it
                chunk = b""
            if not chunk:
                self.ended = True
                return
            self.seen += chunk
            if b"\x1b[6n" in chunk:  # asked where the cursor is (prompt_toolkit): answer
                os.write(self.master, b"\x1b[1;1R")

    def expect(self, text: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.seen:
            shown = f"{text!r} not shown; got {self.text!r}"
            assert not self.ended and time.monotonic() < deadline, shown
            self.read(0.1)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    # A hidden prompt is typed into only once its last character is shown: click before 8.4
    # writes "Bot token:" itself, then getpass turns the echo off, discarding what was typed
    # already (TCSAFLUSH), and only then writes the final " ".

    def send(self, line: str) -> None:
        self.type(line.encode() + b"\n")

    def answer(self, prompt: str, line: str) -> None:
        """Wait for `prompt`, then type `line` and Enter."""
        self.expect(prompt)
        self.send(line)

    def finish(self, timeout: float = 15) -> int:
        """Wait for the child to exit, take in the rest of what it showed, and close."""
        code = self.proc.wait(timeout)
        self.read(timeout)
        self.close()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if not self._closed:
            self._closed = True
            os.close(self.master)
