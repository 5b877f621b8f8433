"""The embed-studio command works with no WebUI."""

from __future__ import annotations

import subprocess
import sys

from embed_studio.cli import main

# The workflow of the guides, one command a step: every one must be listed, each with what it does.
WORKFLOW_COMMANDS = ("fetch", "caption", "tag", "tags", "images", "create", "train", "inspect", "ui")


def test_help_lists_every_command_with_what_it_does(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: embed-studio")
    listed = {}
    for line in out.splitlines():
        words = line.split(maxsplit=1)
        if line.startswith("    ") and not line.startswith("      ") and words:
            listed[words[0]] = words[1] if len(words) > 1 else ""
    for command in WORKFLOW_COMMANDS:
        assert len(listed.get(command, "")) > 10, f"{command!r} is missing from --help or says nothing: {out}"


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
