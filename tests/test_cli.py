"""The embed-studio command works with no WebUI."""

from __future__ import annotations

import subprocess
import sys

from embed_studio.cli import main


def test_help_lists_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "usage: embed-studio" in out


def test_module_entry_point_runs_without_webui():
    result = subprocess.run(
        [sys.executable, "-m", "embed_studio", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "embed-studio" in result.stdout


def test_ui_command_is_registered():
    result = subprocess.run(
        [sys.executable, "-m", "embed_studio", "ui", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "--port" in result.stdout
