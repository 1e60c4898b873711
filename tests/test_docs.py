"""The documentation works as written: every relative link resolves (file and heading), and
every fenced `bash` block of README.md and docs/ runs in a workspace of its own, on a real
pseudo-terminal (hidden prompts are answered as a person would), or is listed in SKIP with the
reason. The blocks of one page run in order in one workspace, as a reader follows them."""

from __future__ import annotations

import http.server
import json
import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.isolation import REPO, shipped_example

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINKED = [*PAGES, REPO / "bench" / "README.md"]

# (page, first command of the block, its comment left out) -> why it is not run here
SKIP = {
    ("README.md", 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]"'): (
        "sets up this repository and runs this suite: .ci/run does exactly that"
    ),
    ("docs/deploy.md", "docker build -t grambot ."): (
        "needs a Docker daemon: tests/test_docker.py builds and runs the image where one answers, "
        "and replays the Dockerfile's install steps in a venv everywhere"
    ),
    ("docs/deploy.md", "mkdir -p secrets"): (
        "needs a Docker daemon (docker compose); tests/test_docker.py checks compose.yaml and "
        "tests/test_secret_sources.py the secrets folder it mounts"
    ),
    (
        "docs/deploy.md",
        "sudo useradd --system --home-dir /var/lib/grambot --shell /usr/sbin/nologin grambot",
    ): (
        "installs a system service (root, systemd as PID 1): tests/test_systemd.py checks the unit "
        "with systemd-analyze verify and the notify protocol against a real grambot run"
    ),
    ("docs/install.md", "python3 -m venv ~/.venvs/grambot && . ~/.venvs/grambot/bin/activate"): (
        "installs into the home folder and chats on a terminal: tests/test_install.py installs "
        "the built wheel in a clean venv, runs grambot init and printf 'hi\\n' | grambot run"
    ),
    ("docs/reliability.md", "python tests/reliability/report.py --run"): (
        "runs tests/reliability, which this suite runs itself"
    ),
}
# pages whose blocks pip install: run in a throwaway venv layered on this one (slow)
OWN_VENV = {"docs/plugin-packages.md"}
# (page, first command of the block) -> (text, replacement) applied before running it
REPLACE = {
    ("README.md", "pip install '.[all]'"): (
        "pip install '.[all]'",
        "true  # installed already (tests/test_install.py installs the wheel in a clean venv)",
    ),
}
SECRET = "doc-test-secret-value-0123456789"
HIDDEN_PROMPT = re.compile(rb"(?: for [\w.-]+|Repeat for confirmation): $")
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.S | re.M)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def blocks(page: Path) -> list[tuple[str, str]]:
    """(first command, body) of each bash block, indentation removed."""
    found = []
    for match in FENCE.finditer(page.read_text()):
        indent, language, body = match.groups()
        if language == "bash":
            lines = [line[len(indent) :] for line in body.splitlines()]
            found.append((lines[0].split("  #")[0].strip(), "\n".join(lines) + "\n"))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in LINKED:
        for target in LINK.findall(FENCE.sub("", page.read_text())):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            name = page.relative_to(REPO)
            if not resolved.exists():
                broken.append(f"{name}: {target}: no such file")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{name}: {target}: no heading #{anchor} there")
    assert not broken, "\n".join(broken)


def test_the_readme_stays_short_and_links_every_page() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 220
    for page in PAGES[1:]:
        assert f"(docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"


def test_every_listed_block_exists() -> None:
    present = {(str(p.relative_to(REPO)), first) for p in PAGES for first, _ in blocks(p)}
    stale = (set(SKIP) | set(REPLACE)) - present
    assert not stale, f"listed blocks no longer in the docs: {stale}"


class _Posts(http.server.BaseHTTPRequestHandler):
    """The sample REST API of docs/execute-plugins.md, on 127.0.0.1."""

    def do_GET(self) -> None:
        body = json.dumps({"id": 1, "title": "hello", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def rest_api() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Posts)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run_on_terminal(script: str, cwd: Path, env: dict[str, str], timeout: float) -> tuple[int, str]:
    """`bash -e` running `script` on a pseudo-terminal; hidden prompts get SECRET."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                seen += chunk
                if HIDDEN_PROMPT.search(seen):
                    os.write(master, SECRET.encode() + b"\r")
                    seen += b"<typed>\n"
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            pytest.fail(f"timed out after {timeout} s:\n{seen.decode(errors='replace')}")
        return proc.wait(10), seen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)


def layered_venv(root: Path) -> Path:
    """A venv that sees this one's packages (a .pth file) but installs into itself, with
    `python`, `pip` and `grambot` of its own: a page's `pip install` never touches the suite's."""
    import site
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(root), "platbase": str(root)}))
    purelib.mkdir(parents=True, exist_ok=True)
    # an `import` line of a .pth runs: addsitedir also reads that folder's own .pth files
    # (the editable install of grambot)
    dirs = ", ".join(repr(d) for d in site.getsitepackages())
    (purelib / "_suite.pth").write_text(f"import site; list(map(site.addsitedir, ({dirs},)))\n")
    for command, module in (("pip", "pip"), ("grambot", "grambot")):
        script = root / "bin" / command
        script.write_text(f'#!/bin/sh\nexec "{root}/bin/python" -m {module} "$@"\n')
        script.chmod(0o755)
    return root / "bin"


def _pages_with_blocks() -> list[object]:
    return [
        pytest.param(p, marks=pytest.mark.slow) if str(p.relative_to(REPO)) in OWN_VENV else p
        for p in PAGES
        if blocks(p)
    ]


@pytest.mark.parametrize("page", _pages_with_blocks(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_bash_block_runs(page: Path, tmp_path: Path, rest_api: str) -> None:
    name = str(page.relative_to(REPO))
    todo = [(first, body) for first, body in blocks(page) if (name, first) not in SKIP]
    workspace = shipped_example(tmp_path / "workspace")
    bin_dir = layered_venv(tmp_path / "venv") if name in OWN_VENV else Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "TOKEN": SECRET,
        "TERM": "dumb",
        "PYTHONUNBUFFERED": "1",
    }
    for first, body in todo:
        if (name, first) in REPLACE:
            old, new = REPLACE[name, first]
            body = body.replace(old, new)
        body = body.replace("http://127.0.0.1:8000", rest_api)
        code, output = run_on_terminal(body, workspace, env, timeout=180)
        assert code == 0, f"{name}: this block failed (exit {code}):\n{body}\n--- output:\n{output}"
