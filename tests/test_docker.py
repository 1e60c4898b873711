"""The container recipe: Dockerfile, .dockerignore and compose.yaml.

Without a Docker daemon (this machine has none) the files are checked as text, and the build
stage is replayed: its COPY steps (through .dockerignore) and RUN steps run in a temporary
folder standing in for the image's file system, then the image's ENTRYPOINT + CMD and its
HEALTHCHECK run from the virtual environment that made. Where a daemon answers, the image is
built and run for real."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import dockerfile
from tests.helpers import entry, eventually
from tests.runproc import workspace_with

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
SHUTDOWN_MARGIN = 15  # seconds a supervisor waits beyond --shutdown-timeout before SIGKILL


def _stages() -> tuple[dict[str, str], list[dockerfile.Stage]]:
    return dockerfile.stages(DOCKERFILE.read_text())


def _final() -> dockerfile.Stage:
    return _stages()[1][-1]


def _env(stage: dockerfile.Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for name, value in dockerfile.assignments(instruction.args).items():
            env[name] = dockerfile.expand(value, env)
    return env


def _shutdown_timeout(command: list[str]) -> float:
    if "--shutdown-timeout" in command:
        return float(command[command.index("--shutdown-timeout") + 1])
    return 60.0  # grambot run's default


# -- the Dockerfile as text -------------------------------------------------------------------


def test_the_image_is_slim_runs_as_a_user_and_keeps_the_workspace_in_a_volume() -> None:
    _, stages = _stages()
    assert all(
        re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim|python:3\.\d+-slim", s.base) for s in stages
    ), [s.base for s in stages]
    final = _final()
    user = final.last("USER")
    assert user is not None, "no USER: the container would run as root"
    assert user.args.split(":")[0] not in ("root", "0"), user.args
    workspace = _env(final)["GRAMBOT_WORKSPACE"]
    volume = final.last("VOLUME")
    assert volume is not None and workspace in volume.exec_form()
    stop = final.last("STOPSIGNAL")
    assert stop is not None and stop.args == "SIGTERM"
    health = final.last("HEALTHCHECK")
    assert health is not None and "grambot status --check" in health.args
    entrypoint, cmd = final.last("ENTRYPOINT"), final.last("CMD")
    assert entrypoint is not None and cmd is not None
    assert entrypoint.exec_form() == ["grambot"] and cmd.exec_form()[0] == "run"


def test_the_sdks_come_from_the_extras_build_argument() -> None:
    _, stages = _stages()
    build = stages[0]
    args = {k: v for i in build.all("ARG") for k, v in dockerfile.assignments(i.args).items()}
    assert args.get("EXTRAS") == "all"
    assert any("${EXTRAS:+[$EXTRAS]}" in run.args for run in build.all("RUN"))


def test_no_secret_is_baked_into_the_image() -> None:
    assert dockerfile.secret_problems(DOCKERFILE.read_text()) == []


@pytest.mark.parametrize(
    "line",
    [
        "ENV TELEGRAM_TOKEN=123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
        "ENV GRAMBOT_SECRET__tg__botToken=x",
        "ARG API_KEY=hunter2",
        "RUN echo sk-ant-api03-abcdefghijklmnop > /key",
        "COPY .scout /workspace/.scout",
        "COPY secrets.json /x/",
    ],
)
def test_the_secret_check_catches_what_it_looks_for(line: str) -> None:
    text = DOCKERFILE.read_text().replace("USER 10001:10001", f"{line}\nUSER 10001:10001")
    assert dockerfile.secret_problems(text), line


def test_dockerignore_keeps_workspaces_out_and_every_source_file_in() -> None:
    patterns = dockerfile.ignore_patterns((REPO / ".dockerignore").read_text())
    for excluded in (".scout/secrets.json", "plugins/x/.scout/secrets.json", "secrets/tg__a"):
        assert dockerfile.ignored(excluded, patterns), excluded
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    if tracked.returncode != 0:
        pytest.skip(f"not a git checkout: {tracked.stderr.strip()}")
    sources = [source for copy in _stages()[1][0].all("COPY") for source in copy.exec_form()[:-1]]
    assert sources
    needed = [
        path
        for path in tracked.stdout.splitlines()
        if any(path == s or path.startswith(s.rstrip("/") + "/") for s in sources)
    ]
    lost = [path for path in needed if dockerfile.ignored(path, patterns)]
    assert needed and not lost, lost


# -- compose.yaml -----------------------------------------------------------------------------


def test_compose_runs_with_init_a_grace_period_and_secrets_as_files() -> None:
    compose: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    service = compose["services"]["grambot"]
    assert service["init"] is True
    grace = re.fullmatch(r"(\d+)s", str(service["stop_grace_period"]))
    assert grace, service["stop_grace_period"]
    assert float(grace.group(1)) == _shutdown_timeout(service["command"]) + SHUTDOWN_MARGIN
    assert service["environment"]["GRAMBOT_SECRETS_DIR"] == "/run/secrets"
    assert service["secrets"], "no secret mounted"
    for name in service["secrets"]:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*__\w+", name), name
        assert "file" in compose["secrets"][name], name  # a file, never a value in the YAML
    for name, value in service["environment"].items():
        assert not name.startswith("GRAMBOT_SECRET__"), name
        assert not dockerfile.secret_problems(f"ENV {name}={value}"), name
    mounts = [str(v).split(":") for v in service["volumes"]]
    assert [m[1] for m in mounts] == [_env(_final())["GRAMBOT_WORKSPACE"]]


# -- replaying the build without a daemon -----------------------------------------------------


class Rootfs:
    """A temporary folder standing in for the image's file system: absolute paths of the
    Dockerfile (its WORKDIRs and the ENV values that are paths) are moved under it."""

    def __init__(self, root: Path, stages: list[dockerfile.Stage]) -> None:
        self.root = root
        dirs = {i.args for s in stages for i in s.all("WORKDIR")}
        for stage in stages:
            dirs |= {v for v in _env(stage).values() if re.fullmatch(r"/[\w./-]+", v)}
        self.dirs = sorted(dirs, key=len, reverse=True)

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def rewrite(self, text: str) -> str:
        for folder in self.dirs:
            text = re.sub(rf"(?<![\w/]){re.escape(folder)}(?![\w])", str(self.path(folder)), text)
        return text


def _copy(source: Path, target: Path, relative: str, ignore: list[re.Pattern[str]]) -> None:
    if source.is_dir():
        for child in sorted(source.iterdir()):
            _copy(child, target / child.name, f"{relative}/{child.name}", ignore)
    elif not dockerfile.ignored(relative, ignore):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _replay_build(rootfs: Rootfs, stage: dockerfile.Stage, args: dict[str, str]) -> None:
    ignore = dockerfile.ignore_patterns((REPO / ".dockerignore").read_text())
    shims = rootfs.root / "shims"
    shims.mkdir(parents=True)
    (shims / "python").symlink_to(sys.executable)  # the base image's python
    env = {**os.environ, **args, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"}
    workdir = rootfs.root
    for instruction in stage.instructions:
        command, text = instruction.command, instruction.args
        if command == "ARG":
            for name, default in dockerfile.assignments(text).items():
                env[name] = args.get(name, default)
        elif command == "ENV":
            for name, value in dockerfile.assignments(text).items():
                env[name] = rootfs.rewrite(dockerfile.expand(value, env))
        elif command == "WORKDIR":
            workdir = rootfs.path(text)
            workdir.mkdir(parents=True, exist_ok=True)
        elif command == "COPY":
            *sources, target = instruction.exec_form()
            into = workdir / target
            for source in sources:
                name = Path(source).name
                dest = (
                    into / name if target.endswith("/") and not (REPO / source).is_dir() else into
                )
                _copy(REPO / source, dest, source.strip("/"), ignore)
        elif command == "RUN":
            done = subprocess.run(
                ["sh", "-c", rootfs.rewrite(text)],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, f"RUN {text}\n{done.stdout}\n{done.stderr}"
        else:
            raise AssertionError(f"the replay does not know {command} of the build stage")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_build_stage_installs_and_the_image_command_runs(tmp_path: Path) -> None:
    global_args, stages = _stages()
    build, final = stages[0], stages[-1]
    rootfs = Rootfs(tmp_path / "rootfs", stages)
    _replay_build(rootfs, build, {k: v for k, v in global_args.items() if k != "PYTHON_VERSION"})

    env = _env(final)
    venv = rootfs.path(env["VIRTUAL_ENV"])
    run_env = {
        **os.environ,
        **{k: rootfs.rewrite(v) for k, v in env.items() if k != "PATH"},
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
    }
    entrypoint, cmd = final.last("ENTRYPOINT"), final.last("CMD")
    assert entrypoint is not None and cmd is not None
    argv = [str(venv / "bin" / entrypoint.exec_form()[0]), *cmd.exec_form()]
    helped = subprocess.run(
        [*argv, "--help"], env=run_env, capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0 and "Usage: grambot run" in helped.stdout, helped.stderr

    health = final.last("HEALTHCHECK")
    assert health is not None
    probe = health.args.partition("CMD ")[2]
    workspace = workspace_with(Path(run_env["GRAMBOT_WORKSPACE"]), [entry("m", "marker")])

    def healthy() -> int:
        done = subprocess.run(["sh", "-c", probe], env=run_env, timeout=60)
        return done.returncode

    assert healthy() == 1  # no engine runs: unhealthy (1, the code Docker expects)
    engine = subprocess.Popen(
        argv, env=run_env, cwd=workspace, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        eventually(lambda: healthy() == 0, timeout=60, what="a healthy engine")
    finally:
        engine.terminate()
        _, err = engine.communicate(timeout=30)
    assert engine.returncode == 0, err.decode()


# -- with a daemon ----------------------------------------------------------------------------


def _docker() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "no docker command here"
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    return None if info.returncode == 0 else f"no Docker daemon answers: {info.stderr.strip()}"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_image_builds_runs_healthy_and_stops_cleanly(tmp_path: Path) -> None:
    why_not = _docker()
    if why_not is not None:
        pytest.skip(why_not)
    tag = f"grambot-test-{uuid.uuid4().hex[:8]}"
    name = f"{tag}-run"

    def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)

    built = docker("build", "-t", tag, str(REPO), timeout=1500)
    assert built.returncode == 0, built.stderr
    try:
        started = docker("run", "-d", "--init", "--name", name, "--health-interval=1s", tag)
        assert started.returncode == 0, started.stderr

        def health() -> str:
            return docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()

        eventually(lambda: health() == "healthy", timeout=120, what="a healthy container")
        began = time.monotonic()
        assert docker("stop", "-t", "75", name, timeout=100).returncode == 0
        assert time.monotonic() - began < 60  # an idle engine stops at once, not at SIGKILL
        code = docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
        assert code == "0", docker("logs", name).stderr
    finally:
        docker("rm", "-f", name)
        docker("rmi", "-f", tag)
