"""Run the real `embed-studio` command in a child process, on this checkout's package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import embed_studio

# The child runs the same embed_studio the tests imported (this checkout, or PYTHONPATH's).
PACKAGE_ROOT = Path(embed_studio.__file__).resolve().parents[1]


def cli_command() -> list[str]:
    """The installed console script beside this interpreter, else `python -m embed_studio`."""
    script = shutil.which("embed-studio", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "embed_studio"]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    # Whatever an editable install points at.
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(*args: str, cwd: str | os.PathLike | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*cli_command(), *map(str, args)], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )


def popen_cli(*args: str, cwd: str | os.PathLike | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [*cli_command(), *map(str, args)], cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def assert_one_line_error(result: subprocess.CompletedProcess, *names: str) -> str:
    """A failed command said why in one `error:` line naming `names`, with no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for name in names:
        assert name in errors[0], errors[0]
    return errors[0]
