"""Paths the user gives that cannot be used: the real `embed-studio` says so in one line naming them."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cli_process import assert_one_line_error, run_cli  # noqa: E402

# Nothing listens there: a command that got as far as a request would fail differently.
NO_SERVER = "http://127.0.0.1:9"


def test_fetch_out_is_a_file(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run_cli("fetch", "e621", "zangoose", "--out", blocker, "--base-url", NO_SERVER, cwd=tmp_path)
    assert_one_line_error(result, str(blocker))
    result = run_cli("fetch", "e621", "zangoose", "--out", blocker / "sub", "--base-url", NO_SERVER, cwd=tmp_path)
    assert_one_line_error(result, str(blocker))
    assert blocker.read_text() == "x"


def test_create_dir_is_a_file(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run_cli("create", "hypernetwork", "hn", "--dir", blocker, cwd=tmp_path)
    assert_one_line_error(result, str(blocker))


def test_unwritable_current_folder(read_only_dir):
    read_only_dir.make_read_only()
    # The default output folder is ./hypernetworks, inside a folder nobody may write.
    result = run_cli("create", "hypernetwork", "hn", cwd=read_only_dir.path)
    assert_one_line_error(result, str(read_only_dir.path / "hypernetworks"))
    result = run_cli("fetch", "e621", "zangoose", "--out", "data", "--base-url", NO_SERVER, cwd=read_only_dir.path)
    assert_one_line_error(result, str(read_only_dir.path / "data"))
