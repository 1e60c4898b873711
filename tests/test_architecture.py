"""The shape the design promises: `Engine` is the only facade of the instances, and modules
stay small enough to read (DESIGN §1, §5.11)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

GRAMBOT = Path(__file__).resolve().parent.parent / "grambot"
FACADE_USERS = [
    GRAMBOT / "testing.py",
    *sorted((GRAMBOT / "app").glob("*.py")),
    *sorted((GRAMBOT / "cli").glob("*.py")),
    *sorted((GRAMBOT / "bot").glob("*.py")),
]


@pytest.mark.parametrize("path", FACADE_USERS, ids=lambda p: str(p.relative_to(GRAMBOT)))
def test_callers_use_the_engine_never_the_manager(path: Path) -> None:
    source = path.read_text()
    reached = [
        f"{path.name}:{node.lineno}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and node.attr == "manager"
    ]
    assert reached == [], f"reaches past Engine into the manager at {', '.join(reached)}"
    assert "engine.manager" not in source  # also inside generated code (the scaffold)


def test_the_manager_is_small_and_no_module_is_huge() -> None:
    sizes = {p: len(p.read_text().splitlines()) for p in GRAMBOT.rglob("*.py")}
    manager = next(p for p in sizes if p.name == "manager.py")
    assert sizes[manager] <= 350, sizes[manager]
    big = {str(p.relative_to(GRAMBOT)): n for p, n in sizes.items() if n > 600}
    assert big == {}
