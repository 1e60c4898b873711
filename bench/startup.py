"""4. Start-up: CLI commands against the bare interpreter, run-to-ready against the SDK imports.

Every figure is the median wall time of whole processes, grambot and baseline alternated.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import (
    BENCH_PLUGINS,
    PYTHON,
    Result,
    alternate,
    child_env,
    median,
    ratio,
    skipped,
    time_process,
)

GROUP = "startup"
GRAMBOT = [PYTHON, "-m", "grambot"]
READY = "grambot ready"
CLI_SLACK_MS = 150.0


def _grambot_argv() -> list[str]:
    script = Path(PYTHON).with_name("grambot")
    return [str(script)] if script.exists() else GRAMBOT


def _has_command(name: str) -> bool:
    done = subprocess.run(
        [*_grambot_argv(), name, "--help"], env=child_env(), capture_output=True, check=False
    )
    return done.returncode == 0


def _cli(
    name: str, argv: list[str], rounds: int, env: dict[str, str], ok_codes: tuple[int, ...] = (0,)
) -> Result:
    bare = [PYTHON, "-c", "pass"]
    gb, base = alternate(
        lambda: time_process(argv, env=env, ok_codes=ok_codes),
        lambda: time_process(bare, env=env),
        rounds,
    )
    value, baseline = median(gb) * 1000, median(base) * 1000
    return Result(
        name=f"`{name}` (vs `python -c pass`)",
        value=round(value, 1),
        baseline=round(baseline, 1),
        ratio=ratio(value, baseline),
        target=f"value - baseline <= {CLI_SLACK_MS:g} ms",
        unit="ms",
        meets=value - baseline <= CLI_SLACK_MS,
        notes=f"median of {rounds} alternated runs each",
        group=GROUP,
    )


def _run_to_ready(workspace: Path, env: dict[str, str], timeout: float = 60.0) -> float:
    """Seconds from spawning `grambot run` to its ready line; the process is then stopped."""
    argv = [*_grambot_argv(), "run", "--workspace", str(workspace)]
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        while True:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("grambot run exited before ready:\n" + "".join(seen))
            seen.append(line)
            if READY in line:
                elapsed = time.perf_counter() - start
                if "2 instance(s) loaded" not in line:
                    raise RuntimeError("not every instance loaded:\n" + "".join(seen))
                return elapsed
            if time.perf_counter() - start > timeout:
                raise RuntimeError("no ready line:\n" + "".join(seen))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _sdk_workspace(root: Path) -> Path:
    (root / ".scout").mkdir(parents=True)
    plugins = [
        {"instanceId": "tg", "pluginId": "bench-sdkprobe", "settings": {"module": "telegram"}},
        {"instanceId": "claude", "pluginId": "bench-sdkprobe", "settings": {"module": "anthropic"}},
    ]
    data = {"pluginDirs": [str(BENCH_PLUGINS)], "plugins": plugins}
    (root / ".scout" / "settings.json").write_text(json.dumps(data))
    return root


def run(quick: bool) -> list[Result]:
    rounds = 2 if quick else 15
    env = child_env()
    results = [_cli("grambot --help", [*_grambot_argv(), "--help"], rounds, env)]

    with tempfile.TemporaryDirectory(prefix="grambot-bench-") as tmp:
        empty = Path(tmp) / "empty"
        (empty / ".scout").mkdir(parents=True)
        if _has_command("status"):
            results.append(
                _cli(
                    "grambot status",
                    [*_grambot_argv(), "status", "--workspace", str(empty)],
                    rounds,
                    env,
                    ok_codes=(0, 3),  # 3: no engine runs in the empty workspace (said clearly)
                )
            )
        else:
            results.append(
                skipped(
                    "`grambot status` (vs `python -c pass`)",
                    target=f"value - baseline <= {CLI_SLACK_MS:g} ms",
                    unit="ms",
                    why="the `grambot status` command does not exist yet (issue 3); baseline: "
                    "`python -c pass`, from the --help run",
                    baseline=results[0].baseline,
                    group=GROUP,
                )
            )

        workspace = _sdk_workspace(Path(tmp) / "sdk")
        run_env = {**env, "GRAMBOT_WORKSPACE": str(workspace)}
        run_env.pop("PYTHONWARNINGS", None)
        sdk = [PYTHON, "-c", "import telegram, anthropic"]
        run_rounds = 1 if quick else 7
        gb, base = alternate(
            lambda: _run_to_ready(workspace, run_env),
            lambda: time_process(sdk, env=env),
            run_rounds,
        )
        value, baseline = median(gb) * 1000, median(base) * 1000
        r = ratio(value, baseline)
        results.append(
            Result(
                name="`grambot run` to ready, telegram + anthropic imported in load() "
                '(vs `python -c "import telegram, anthropic"`)',
                value=round(value, 1),
                baseline=round(baseline, 1),
                ratio=r,
                target="ratio <= 1.2",
                unit="ms",
                meets=r is not None and r <= 1.2,
                notes="stand-in for the telegram/anthropic built-ins of issue 4: two instances of "
                "bench/plugins/sdkprobe, whose load() imports `telegram` and `anthropic` (the same "
                f"cost shape); median of {run_rounds} alternated runs each",
                group=GROUP,
            )
        )
    return results
