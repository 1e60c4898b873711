"""Run the benchmarks: `python -m bench [--quick] [--only NAME ...] [--out PATH]`.

Writes results.json (every entry: name, value, baseline, ratio, target, unit, meets) and a
Markdown table beside it (results.md), and prints the table. `--quick` is the CI smoke mode:
small sizes, seconds, and its `meets` figures mean nothing.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, Result

# run order: the cheap and the subprocess-heavy ones first, then the long in-process ones
BENCHMARKS = ("events", "stages", "isolation", "scale", "edit", "startup", "cycles", "state")
FIELDS = ("name", "value", "baseline", "ratio", "target", "unit", "meets")


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown(results: list[Result], meta: dict[str, Any]) -> str:
    lines = [
        "| benchmark | grambot | baseline | ratio | unit | target | meets |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {_fmt(r.value)} | {_fmt(r.baseline)} | "
            f"{_fmt(round(r.ratio, 3)) if r.ratio is not None else '—'} | {r.unit} | "
            f"{r.target} | {_fmt(r.meets)} |"
        )
    notes = [f"- *{r.name}*: {r.notes}" for r in results if r.notes]
    header = (
        f"Run {meta['started']} on {meta['machine']}, Python {meta['python']}, "
        f"{meta['cpus']} CPUs{' (quick mode: not judged)' if meta['quick'] else ''}; "
        f"{meta['duration_s']:.0f} s in all."
    )
    return "\n".join([header, "", *lines, "", *notes, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: small sizes, no judging")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    parser.add_argument(
        "--out",
        type=Path,
        help="results.json path (default bench/results.json;"
        " bench/results-quick.json with --quick)",
    )
    args = parser.parse_args(argv)
    out: Path = args.out or BENCH_DIR / ("results-quick.json" if args.quick else "results.json")
    selected = args.only or list(BENCHMARKS)

    started = time.time()
    results: list[Result] = []
    failures = 0
    for name in BENCHMARKS:
        if name not in selected:
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        module = importlib.import_module(f"bench.{name}")
        try:
            got: list[Result] = module.run(args.quick)
        except Exception:
            failures += 1
            traceback.print_exc()
            got = [
                Result(
                    f"{name}: benchmark crashed",
                    None,
                    None,
                    None,
                    "runs",
                    "",
                    False,
                    notes=traceback.format_exc(limit=3).strip().splitlines()[-1],
                    group=name,
                )
            ]
        for r in got:
            print(
                f"   {r.name}: {_fmt(r.value)} vs {_fmt(r.baseline)} {r.unit} "
                f"(ratio {_fmt(r.ratio)}; {r.target}: {'ok' if r.meets else 'NO'})",
                file=sys.stderr,
                flush=True,
            )
        print(f"   ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
        results.extend(got)

    meta = {
        "started": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(
            timespec="seconds"
        ),
        "duration_s": round(time.time() - started, 1),
        "quick": args.quick,
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {**meta, "results": [r.to_dict() for r in results]}, indent=2, ensure_ascii=False
        )
        + "\n"
    )
    table = markdown(results, meta)
    out.with_suffix(".md").write_text(table)
    print(table)
    return 1 if failures else 0
