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
    # A progress line at every change, as a test reading them expects (the default is one every few seconds).
    env.setdefault("EMBED_STUDIO_PROGRESS_INTERVAL", "0")
    return env


def run_cli(
    *args: str, cwd: str | os.PathLike | None = None, timeout: float = 300, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*cli_command(), *map(str, args)], cwd=cwd, env={**cli_env(), **(env_extra or {})}, capture_output=True,
        text=True, timeout=timeout,
    )  # fmt: skip


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


class TerminalRun:
    """The real CLI with stderr on a pseudo-terminal `columns` wide (as in a user's shell) and stdout on a pipe.

    wait_for() reads the terminal until a text shows up, so a test acts on what the user would see (send
    Ctrl-C once a count is drawn) instead of sleeping.
    """

    def __init__(self, *args: str, columns: int = 100, env: dict[str, str] | None = None, cwd=None):
        import fcntl
        import pty
        import struct
        import termios

        self.master, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        self.process = subprocess.Popen(
            [*cli_command(), *map(str, args)], cwd=cwd, env={**cli_env(), **(env or {})}, stdin=terminal,
            stdout=subprocess.PIPE, stderr=terminal,
        )  # fmt: skip
        os.close(terminal)  # the child holds it; the end of its output reads as EIO here
        self.raw = b""

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", errors="replace")

    def _read(self, deadline: float) -> bool:
        """Read what is there (waiting at most until `deadline`); False once the terminal is closed."""
        import select
        import time

        ready, _, _ = select.select([self.master], [], [], max(0.0, min(1.0, deadline - time.monotonic())))
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every holder of the terminal has closed it
            return False
        self.raw += chunk
        return bool(chunk)

    def wait_for(self, text: str, timeout: float = 240) -> str:
        import time

        deadline = time.monotonic() + timeout
        while text not in self.text:
            if not self._read(deadline) or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared on the terminal:\n{self.text[-3000:]}")
        return self.text

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        """Wait for the command to end; returns (exit code, stdout, what the terminal showed)."""
        import time

        deadline = time.monotonic() + timeout
        while self._read(deadline) and time.monotonic() < deadline:
            pass
        stdout = self.process.stdout.read().decode("utf-8", errors="replace")
        code = self.process.wait(timeout=max(1.0, deadline - time.monotonic()))
        os.close(self.master)
        return code, stdout, self.text


def terminal_lines(shown: str) -> list[str]:
    """Every line the terminal drew: the text between carriage returns and newlines."""
    import re

    return [part for part in re.split(r"[\r\n]+", shown) if part.strip()]
