"""Just enough of Docker's build files to check them and to replay a build stage without a
daemon: instructions (continuations, comments, parser directives), stages, ENV/ARG values,
`.dockerignore` matching, and the secret-looking values an image must never carry."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    command: str  # upper case: FROM, RUN, ...
    args: str  # the rest of the line, continuations joined

    def exec_form(self) -> list[str]:
        """`["a", "b"]` (exec form) or the words of the shell form."""
        text = self.args.strip()
        if text.startswith("["):
            value = json.loads(text)
            assert isinstance(value, list)
            return [str(v) for v in value]
        return shlex.split(text)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, command: str) -> list[Instruction]:
        return [i for i in self.instructions if i.command == command]

    def last(self, command: str) -> Instruction | None:
        found = self.all(command)
        return found[-1] if found else None


def instructions(text: str) -> list[Instruction]:
    result: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue  # comments and parser directives (# syntax=...)
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        command, _, args = full.partition(" ")
        result.append(Instruction(command.upper(), args.strip()))
    return result


def stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, the stages in order)."""
    global_args: dict[str, str] = {}
    found: list[Stage] = []
    for instruction in instructions(text):
        if instruction.command == "FROM":
            words = instruction.args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            found.append(Stage(words[0], name))
        elif not found:
            assert instruction.command == "ARG", instruction
            global_args.update(assignments(instruction.args))
        else:
            found[-1].instructions.append(instruction)
    return global_args, found


def assignments(args: str) -> dict[str, str]:
    """`A=1 B="two words"` (ENV, ARG) -> {"A": "1", "B": "two words"}; `ARG X` -> {"X": ""}."""
    values: dict[str, str] = {}
    for word in shlex.split(args):
        name, _, value = word.partition("=")
        values[name] = value
    return values


def expand(value: str, env: dict[str, str]) -> str:
    """`$NAME` and `${NAME}` as the Dockerfile's ENV does (unknown names become "")."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value)


# -- .dockerignore ----------------------------------------------------------------------------


def _pattern(glob: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif glob.startswith("**", i):
            out += ".*"
            i += 2
        elif glob[i] == "*":
            out += "[^/]*"
            i += 1
        elif glob[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(glob[i])
            i += 1
    return re.compile(out)


def ignore_patterns(text: str) -> list[re.Pattern[str]]:
    lines = [line.strip() for line in text.splitlines()]
    globs = [line.strip("/") for line in lines if line and not line.startswith("#")]
    assert not any(g.startswith("!") for g in globs), "exceptions are not handled here"
    return [_pattern(g) for g in globs]


def ignored(relative: str, patterns: list[re.Pattern[str]]) -> bool:
    """Whether the context path `relative` (or a folder above it) is excluded."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(p.fullmatch(prefix) for p in patterns for prefix in prefixes)


# -- secrets ----------------------------------------------------------------------------------

_SECRET_NAME = re.compile(r"(?i)(token|secret|passw(or)?d|api_?key|private_?key|credential)")
_PATH_NAME = re.compile(r"(?i)_(dir|file|path)$")
_SECRET_VALUE = re.compile(
    r"sk-[A-Za-z0-9_-]{10,}"  # OpenAI/Anthropic keys
    r"|\d{6,}:[A-Za-z0-9_-]{30,}"  # Telegram bot tokens
    r"|AIza[0-9A-Za-z_-]{30,}"  # Google keys
    r"|(?<![/\w])[A-Za-z0-9+/_-]{32,}={0,2}(?![/\w])"  # a long opaque string
)


def secret_problems(text: str) -> list[str]:
    """Instructions of a Dockerfile that bake a secret into the image."""
    problems = []
    for instruction in instructions(text):
        if instruction.command in ("ENV", "ARG", "LABEL"):
            for name, value in assignments(instruction.args).items():
                if name.startswith("GRAMBOT_SECRET__"):
                    problems.append(f"{instruction.command} {name}: a secret in the image")
                elif value and _SECRET_NAME.search(name) and not _PATH_NAME.search(name):
                    problems.append(f"{instruction.command} {name}: a secret-like name set")
        if _SECRET_VALUE.search(instruction.args):
            problems.append(f"{instruction.command}: a secret-like value: {instruction.args}")
        if instruction.command in ("COPY", "ADD"):
            sources = instruction.exec_form()[:-1]
            for source in sources:
                path = Path(source)
                if ".scout" in path.parts or path.name in ("secrets", "secrets.json"):
                    problems.append(f"{instruction.command} {source}: a workspace or secrets")
    return problems
