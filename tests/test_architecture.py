"""The shape the design promises (docs/architecture.md#layers), read from the code's imports:
every import goes down the layers, no two folders or modules import each other, `Engine` is the
only facade of the instances, and modules stay small enough to read (DESIGN §1, §5.11).

An import counts wherever it is written (module level, inside a function, under
`TYPE_CHECKING`): a lazy import is still a dependency. Only the module cycle check leaves out
`TYPE_CHECKING` imports, which never run.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

GRAMBOT = Path(__file__).resolve().parent.parent / "grambot"

# Lowest first. A module may import its own folder and any folder of a lower layer, nothing
# else. Folders of one layer never import each other.
LAYERS: list[set[str]] = [
    {"errors"},
    {"files", "masking", "retry", "instances"},  # foundations: nothing but errors
    {"config", "registries"},
    {"secrets", "storage"},
    {"containment"},  # how plugin code runs: knows no lifecycle and no plugin API
    {"events"},
    {"scheduling"},
    {"contract"},  # what a plugin author writes against
    {"kit"},  # helpers for plugin authors, built on the contract
    {"core"},  # the lifecycle: reaches isolation only through its Protocol
    {"isolation"},
    {"engine"},  # the only facade; imports no bot (the bot attaches from outside)
    {"bot"},  # attaches to an engine from outside
    {"testing"},  # plugin tests: an engine with its bot
    {"app"},  # the `grambot run` process: through the engine, never the core
    {"cli"},
    {"__main__"},
    {"plugins", "_testing"},  # deprecated aliases; the test plugin
]
LAYER = {folder: rank for rank, folders in enumerate(LAYERS) for folder in folders}
# Above the core, but never into it: they go through `grambot.engine`.
NEVER_INTO_CORE = {"app", "cli", "bot", "testing"}


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module, dotted (the deepest one that exists)
    line: int
    type_only: bool  # under `if TYPE_CHECKING:`

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line} imports {self.target}"


def _modules() -> dict[str, Path]:
    found = {}
    for path in GRAMBOT.rglob("*.py"):
        parts = list(path.relative_to(GRAMBOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _existing(name: str) -> str:
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def imports_of(module: str, source: str) -> Iterator[Import]:
    tree = ast.parse(source)
    type_only = _type_checking_lines(tree)
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            # `from grambot.x import y`: y may be a module of its own
            names = [f"{base}.{alias.name}" for alias in node.names] or [base]
            names = [n if n in MODULES else base for n in names]
        else:
            continue
        for name in names:
            if name == "grambot" or not name.startswith("grambot."):
                continue  # the public face re-exports; third-party modules
            target = _existing(name)
            if target != module:
                yield Import(module, target, node.lineno, node.lineno in type_only)


def all_imports() -> list[Import]:
    found = []
    for module, path in MODULES.items():
        if module != "grambot":  # the public face: lazy re-exports of the plugin API
            found.extend(imports_of(module, path.read_text()))
    return found


def folder(module: str) -> str:
    """`grambot.core.plan` -> "core"; a top-level module is a folder of its own."""
    return module.split(".")[1]


def layer_violations(imports: list[Import]) -> list[str]:
    wrong = []
    for imp in imports:
        here, there = folder(imp.source), folder(imp.target)
        if here == there:
            continue
        if LAYER[here] <= LAYER["files"] and there != "errors":
            wrong.append(f"{imp.where}: a foundation imports nothing but grambot.errors")
        elif LAYER[there] >= LAYER[here]:
            wrong.append(f"{imp.where}: {there} is not below {here}")
        elif here in NEVER_INTO_CORE and there == "core":
            wrong.append(f"{imp.where}: {here} reaches the core past grambot.engine")
        elif here == "core" and there == "isolation":
            wrong.append(f"{imp.where}: the core reaches isolation only through its Protocol")
    return wrong


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _describe(component: list[str], imports: list[Import], key: Callable[[str], str]) -> str:
    inside = [
        i.where
        for i in imports
        if key(i.source) != key(i.target) and {key(i.source), key(i.target)} <= set(component)
    ]
    return f"{' <-> '.join(component)}: {'; '.join(sorted(inside))}"


IMPORTS = all_imports()


def test_every_folder_has_a_layer() -> None:
    assert {folder(m) for m in MODULES if m != "grambot"} <= set(LAYER)


def test_every_import_goes_down_the_layers() -> None:
    assert layer_violations(IMPORTS) == []


def test_no_two_folders_import_each_other() -> None:
    edges: dict[str, set[str]] = {}
    for imp in IMPORTS:
        if folder(imp.source) != folder(imp.target):
            edges.setdefault(folder(imp.source), set()).add(folder(imp.target))
    found = cycles(edges)
    assert found == [], [_describe(c, IMPORTS, folder) for c in found]


def test_no_two_modules_import_each_other() -> None:
    edges: dict[str, set[str]] = {}
    for imp in IMPORTS:
        if not imp.type_only:
            edges.setdefault(imp.source, set()).add(imp.target)
    found = cycles(edges)
    assert found == [], [_describe(c, IMPORTS, lambda m: m) for c in found]


def test_at_most_six_loose_modules_at_the_top() -> None:
    loose = sorted(p.stem for p in GRAMBOT.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert loose == ["engine", "errors", "files", "masking", "retry", "testing"]


# The checks check something: each rule fails on the import that breaks it.
@pytest.mark.parametrize(
    ("source", "text", "complaint"),
    [
        ("grambot.containment.stages", "from grambot.core import plan", "is not below"),
        ("grambot.app.runtime", "import grambot.core.instance", "past grambot.engine"),
        ("grambot.masking", "from grambot.files import read_regular", "nothing but"),
        ("grambot.core.instance", "from grambot.isolation import backend", "is not below"),
        ("grambot.engine", "from grambot.bot import Bot", "is not below"),
    ],
)
def test_a_wrong_import_is_named(source: str, text: str, complaint: str) -> None:
    wrong = layer_violations(list(imports_of(source, f"def f():\n    {text}\n")))
    assert len(wrong) == 1 and complaint in wrong[0] and source in wrong[0], wrong


def test_a_cycle_is_found_with_the_imports_that_make_it() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


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
