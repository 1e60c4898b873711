"""Shared pieces of the benchmarks: the result record, statistics, timing helpers."""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
BENCH_PLUGINS = BENCH_DIR / "plugins"
PYTHON = sys.executable


@dataclass
class Result:
    """One line of results.json (and of the Markdown table).

    `value` is grambot's figure and `baseline` the same-run baseline's, both in `unit`;
    `ratio` is value / baseline; `target` says in words what must hold and `meets` whether it
    held (always False for a skipped entry, whose `value` is None and whose `notes` say why).
    """

    name: str
    value: float | None
    baseline: float | None
    ratio: float | None
    target: str
    unit: str
    meets: bool
    notes: str = ""
    group: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def bounded(
    name: str,
    value: float,
    baseline: float,
    *,
    limit: float,
    unit: str,
    digits: int | None,
    notes: str,
    group: str,
    at_least: bool = False,
    details: dict[str, Any] | None = None,
) -> Result:
    """A row whose target bounds the value: at most `limit` `unit` (at least, `at_least`);
    value and baseline rounded to `digits`, the ratio of the two unrounded."""
    return Result(
        name=name,
        value=round(value, digits),
        baseline=round(baseline, digits),
        ratio=ratio(value, baseline),
        target=f"value {'>=' if at_least else '<='} {limit:g} {unit}",
        unit=unit,
        meets=value >= limit if at_least else value <= limit,
        notes=notes,
        group=group,
        details=details or {},
    )


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def alternate(
    a: Callable[[], float], b: Callable[[], float], rounds: int
) -> tuple[list[float], list[float]]:
    """Run `a` and `b` `rounds` times each, alternating which goes first; returns both lists."""
    got_a: list[float] = []
    got_b: list[float] = []
    for i in range(rounds):
        gc.collect()
        if i % 2 == 0:
            got_a.append(a())
            gc.collect()
            got_b.append(b())
        else:
            got_b.append(b())
            gc.collect()
            got_a.append(a())
    return got_a, got_b


def time_process(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    ok_codes: Sequence[int] = (0,),
) -> float:
    """Wall seconds from spawn to exit of `argv` (output discarded); raises on another exit
    code than `ok_codes`."""
    start = time.perf_counter()
    done = subprocess.run(
        list(argv),
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode not in ok_codes:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()}")
    return elapsed


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
