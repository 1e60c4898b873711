"""Render docs/reliability.md's evidence table from the reliability tests' own output.

    python tests/reliability/report.py --run            # run tests/reliability, then render
    python tests/reliability/report.py --run --slow     # the same with the --slow sizes
    python tests/reliability/report.py results.jsonl    # render rows recorded earlier

The tests append one JSON line per piece of evidence to $GRAMBOT_RELIABILITY_OUT (see
evidence.py); this script replaces the block between the GENERATED markers of
docs/reliability.md with tables made from those lines, so the document says exactly what the
last run tried and what held, and nothing a test did not check.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "reliability.md"
BEGIN = "<!-- BEGIN GENERATED: tests/reliability/report.py -->"
END = "<!-- END GENERATED -->"
# Areas whose many small cases are listed compactly under the summary.
CASE_AREAS = ("hostile input: settings", "hostile input: descriptors", "hostile input: secrets")


def run_tests(out: Path, slow: bool) -> tuple[int, float]:
    command = [sys.executable, "-m", "pytest", "tests/reliability", "-q", "-p", "no:cacheprovider"]
    if slow:
        command.append("--slow")
    env = {**os.environ, "GRAMBOT_RELIABILITY_OUT": str(out)}
    started = time.perf_counter()
    code = subprocess.call(command, cwd=REPO, env=env)
    return code, time.perf_counter() - started


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _figures(figures: dict[str, Any]) -> str:
    return ", ".join(f"{key.replace('_', ' ')}: {value}" for key, value in figures.items())


def render(rows: list[dict[str, Any]], *, command: str, suite: str) -> str:
    by_area: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_area[row["area"]].append(row)
    first = rows[0] if rows else {}
    failed = [r for r in rows if r["outcome"] != "passed"]
    lines = [
        BEGIN,
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `{command}` "
        f"(Python {first.get('python', platform.python_version())}, {first.get('cpus', '?')} "
        f"CPUs, {'slow' if first.get('slow') else 'CI'} sizes). {suite}",
        "",
        f"**{len(rows) - len(failed)} of {len(rows)} pieces of evidence held**"
        + (f"; {len(failed)} did NOT (outcome column)." if failed else "."),
        "",
        "| area | what was tried | what held | figures | outcome |",
        "|---|---|---|---|---|",
    ]
    for area, area_rows in by_area.items():
        if area in CASE_AREAS:
            held = sum(r["outcome"] == "passed" for r in area_rows)
            lines.append(
                f"| {area} | {len(area_rows)} hostile inputs and checks (listed below) | each "
                "input: grambot's own error naming the file (and the JSON path); with an engine "
                f"running, no effect on what runs | | {held}/{len(area_rows)} passed |"
            )
            continue
        for row in area_rows:
            lines.append(
                f"| {area} | {_cell(row['tried'])} | {_cell(row['held'])} | "
                f"{_cell(_figures(row['figures']))} | {row['outcome']} ({row['seconds']} s) |"
            )
    for area in CASE_AREAS:
        if area not in by_area:
            continue
        lines += ["", f"### {area[0].upper()}{area[1:]}", "", "| input | result | outcome |"]
        lines.append("|---|---|---|")
        for row in by_area[area]:
            lines.append(f"| {_cell(row['tried'])} | {_cell(row['held'])} | {row['outcome']} |")
    lines += ["", END]
    return "\n".join(lines)


def write_doc(block: str) -> None:
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else f"{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(head + block + tail, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, help="a JSON-lines file of evidence")
    parser.add_argument("--run", action="store_true", help="run tests/reliability first")
    parser.add_argument("--slow", action="store_true", help="with --run: the --slow sizes")
    parser.add_argument("--stdout", action="store_true", help="print instead of writing the doc")
    args = parser.parse_args(argv)
    code = 0
    if args.run:
        out = Path(tempfile.mkstemp(prefix="grambot-reliability-", suffix=".jsonl")[1])
        code, seconds = run_tests(out, args.slow)
        command = "python tests/reliability/report.py --run" + (" --slow" if args.slow else "")
        suite = f"The run took {seconds:.0f} s; pytest exit code {code}."
    elif args.results is not None:
        out = args.results
        command = f"python tests/reliability/report.py {out.name}"
        suite = ""
    else:
        parser.error("give a results file or --run")
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    block = render(rows, command=command, suite=suite)
    if args.stdout:
        print(block)
    else:
        write_doc(block)
        print(f"wrote {DOC.relative_to(REPO)}: {len(rows)} rows")
    return code


if __name__ == "__main__":
    sys.exit(main())
