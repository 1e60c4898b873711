"""One generation contract: the in-process and the isolated generation implement the same
Protocol (grambot.core.generation), the core reaches isolation only through it, and the
modules of core/, isolation/ and contract/ import one another without a cycle."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "grambot"
FOLDERS = ("core", "isolation", "contract")


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[str, list[str]]]:
    """(module, names) of every import in the file: function-local and TYPE_CHECKING ones
    too, relative ones resolved."""
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            yield base, [alias.name for alias in node.names]


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (PACKAGE / folder).rglob("*.py"))


def test_the_core_reaches_isolation_only_through_the_protocol() -> None:
    found = [
        f"{_module(path)} imports {module}"
        for path in _sources("core")
        for module, _ in _imports(path)
        if module == "grambot.isolation" or module.startswith("grambot.isolation.")
    ]
    assert found == []


def test_no_private_name_is_imported_from_another_module() -> None:
    found = [
        f"{_module(path)} imports {name} from {module}"
        for path in _sources(*FOLDERS)
        for module, names in _imports(path)
        if module.startswith("grambot")
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert found == []


def test_no_import_cycle_between_modules_of_core_isolation_and_contract() -> None:
    paths = _sources(*FOLDERS)
    known = {_module(p) for p in paths}
    edges: dict[str, set[str]] = {}
    for path in paths:
        here = _module(path)
        targets = edges.setdefault(here, set())
        for module, names in _imports(path):
            for target in [f"{module}.{n}" for n in names] + [module]:
                if target in known and target != here:
                    targets.add(target)
                    break
    cycles = []
    for start in sorted(edges):  # a path back to itself, found depth first
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in sorted(edges.get(node, ())):
                if nxt == start:
                    cycles.append(" -> ".join([*trail, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert cycles == []


@pytest.mark.parametrize("kind", ["InProcessGeneration", "ProcessGeneration"])
def test_both_generation_kinds_implement_every_step_of_the_protocol(kind: str) -> None:
    from grambot.core.generation import Generation, GenerationBase
    from grambot.core.inprocess import InProcessGeneration
    from grambot.isolation.remote import ProcessGeneration

    cls = {"InProcessGeneration": InProcessGeneration, "ProcessGeneration": ProcessGeneration}[kind]
    steps = [
        name
        for name, member in vars(Generation).items()
        if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))
    ]
    assert "bring_up" not in steps and "teardown" in steps and "instance_id" in steps
    # its own or the one shared base's: never the Protocol's stubs nor the other kind's
    missing = [name for name in steps if name not in vars(cls) and name not in vars(GenerationBase)]
    assert missing == []
    assert cls.__mro__[1:] == (GenerationBase, object)
    assert InProcessGeneration not in ProcessGeneration.__mro__
