"""Helpers of the lowest-versions job of .ci/run (the standard library only: it runs before
anything is installed, and after).

    python .ci/lowest.py dev-tools   the `dev` extra's requirements but grambot's own extras,
                                     one a line (installed at normal resolution)
    python .ci/lowest.py check       every direct requirement of `grambot[all]` is installed at
                                     exactly the lower bound pyproject.toml declares; exit 1
                                     naming those that are not (a bound uv could not honour, or
                                     a later install that moved one)
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$")


def _project() -> dict[str, object]:
    with PYPROJECT.open("rb") as fh:
        project: dict[str, object] = tomllib.load(fh)["project"]
    return project


def _extras() -> dict[str, list[str]]:
    extras: dict[str, list[str]] = _project()["optional-dependencies"]  # type: ignore[assignment]
    return extras


def _ours(requirement: str) -> bool:
    return requirement.replace(" ", "").lower().startswith("grambot[")


def dev_tools() -> list[str]:
    return [r for r in _extras()["dev"] if not _ours(r)]


def direct_requirements() -> list[str]:
    """The core dependencies and those of every extra `all` names."""
    extras = _extras()
    found: list[str] = list(_project()["dependencies"])  # type: ignore[call-overload]
    names = re.search(r"\[([^\]]*)\]", extras["all"][0])
    for extra in (names.group(1).split(",") if names else []):
        found += [r for r in extras[extra.strip()] if not _ours(r)]
    return found


def lower_bound(requirement: str) -> tuple[str, str]:
    """(distribution name, the version of its `>=` bound)."""
    match = _REQUIREMENT.match(requirement.split(";")[0])
    if match is None:
        raise SystemExit(f"cannot read the requirement {requirement!r}")
    name, spec = match.groups()
    bound = re.search(r">=\s*([0-9][^,\s]*)", spec)
    if bound is None:
        raise SystemExit(f"{requirement!r} declares no lower bound (>=)")
    return name, bound.group(1)


def _same(installed: str, bound: str) -> bool:
    """`2.7.0` is the bound `2.7`; `2.6` is the bound `2.6`."""

    def parts(version: str) -> list[str]:
        items = version.split(".")
        while len(items) > 1 and items[-1] == "0":
            items.pop()
        return items

    return parts(installed) == parts(bound)


def check() -> int:
    wrong = []
    for requirement in direct_requirements():
        name, bound = lower_bound(requirement)
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            wrong.append(f"{name}: not installed (declared >={bound})")
            continue
        if not _same(installed, bound):
            wrong.append(f"{name}: {installed} installed, the declared lower bound is {bound}")
        else:
            print(f"  {name}=={installed}")
    for line in wrong:
        print(f"NOT AT ITS LOWER BOUND: {line}", file=sys.stderr)
    return 1 if wrong else 0


def main(argv: list[str]) -> int:
    if argv == ["dev-tools"]:
        print("\n".join(dev_tools()))
        return 0
    if argv == ["check"]:
        return check()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
