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
import subprocess
import sys
import tempfile
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


def _crashed(name: str, why: str) -> Result:
    return Result(
        f"{name}: benchmark crashed", None, None, None, "runs", "", False, notes=why, group=name
    )


def _run_group(name: str, quick: bool) -> list[Result]:
    """One group in a fresh interpreter: what an earlier group left in the process (threads,
    a zygote, a grown heap, warm or cold caches) must not move another group's figures."""
    with tempfile.TemporaryDirectory(prefix="grambot-bench-") as tmp:
        dump = Path(tmp) / "results.json"
        argv = [sys.executable, "-m", "bench.run", "--group", name, "--dump", str(dump)]
        done = subprocess.run([*argv, *(["--quick"] if quick else [])], check=False)
        if done.returncode != 0 or not dump.exists():
            return [_crashed(name, f"exit status {done.returncode} (its traceback is above)")]
        return [Result(**r) for r in json.loads(dump.read_text())]


def _group_main(name: str, quick: bool, dump: Path) -> int:
    """`python -m bench.run --group NAME --dump PATH`: run one group here, results to PATH."""
    module = importlib.import_module(f"bench.{name}")
    try:
        got: list[Result] = module.run(quick)
    except Exception:
        traceback.print_exc()
        got = [_crashed(name, traceback.format_exc(limit=3).strip().splitlines()[-1])]
    dump.write_text(json.dumps([r.to_dict() for r in got], ensure_ascii=False))
    return 0


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
    parser.add_argument("--group", choices=BENCHMARKS, help=argparse.SUPPRESS)
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.group is not None:
        return _group_main(args.group, args.quick, args.dump)
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
        got = _run_group(name, args.quick)
        failures += any(r.name.endswith("benchmark crashed") for r in got)
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


if __name__ == "__main__":
    raise SystemExit(main())
