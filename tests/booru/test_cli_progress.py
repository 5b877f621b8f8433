"""`embed-studio fetch` as a user sees it: the real command on a pseudo-terminal and through pipes, against the
fake booru server; Ctrl-C in the middle of a download."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cli_process import TerminalRun, cli_command, cli_env, run_cli, terminal_lines  # noqa: E402

EVERY_CHANGE = {"EMBED_STUDIO_PROGRESS_INTERVAL": "0"}


def _fetch_args(server, out: Path, limit: int) -> list[str]:
    return ["fetch", "e621", "zangoose", "--out", str(out), "--limit", str(limit), "--base-url", server.url,
            "--interval", "0", "--user", "tester"]  # fmt: skip


def test_fetch_on_a_terminal_redraws_one_bar_line(booru_server, fb, tmp_path):
    server = booru_server(fb.make_posts(6))
    run = TerminalRun(*_fetch_args(server, tmp_path / "out", 6), env=EVERY_CHANGE, columns=100)
    code, stdout, shown = run.finish()
    assert code == 0, shown
    assert "6 downloaded" in stdout
    assert "\r" in shown
    lines = terminal_lines(shown)
    bar = re.compile(r"^file [1-5]/6 \|[█░]{10,}\| .*\d+\.\d\d files/s · ETA \d\d:\d\d")
    assert any(bar.search(line) for line in lines), lines
    assert lines[-1].startswith("file 6/6 |" + "█" * 10)
    assert "Traceback" not in shown


def test_fetch_on_a_terminal_20_columns_wide_never_wraps(booru_server, fb, tmp_path):
    server = booru_server(fb.make_posts(4))
    run = TerminalRun(*_fetch_args(server, tmp_path / "out", 4), env=EVERY_CHANGE, columns=20)
    code, _, shown = run.finish()
    assert code == 0, shown
    lines = terminal_lines(shown)
    assert lines and all(len(line) <= 19 for line in lines), lines  # a 20th character would wrap the line
    assert lines[-1].startswith("file 4/4")


def test_fetch_through_a_pipe_writes_plain_lines_at_the_interval(booru_server, fb, tmp_path):
    server = booru_server(fb.make_posts(5))
    every = run_cli(*_fetch_args(server, tmp_path / "a", 5), env_extra=EVERY_CHANGE)
    assert every.returncode == 0, every.stderr
    assert "\r" not in every.stderr
    counts = [line.split(" · ")[0] for line in every.stderr.splitlines() if line.startswith("file ")]
    assert {"file 1/5", "file 3/5", "file 5/5"} <= set(counts), every.stderr

    sparse = run_cli(*_fetch_args(server, tmp_path / "b", 5), env_extra={"EMBED_STUDIO_PROGRESS_INTERVAL": "3600"})
    assert sparse.returncode == 0, sparse.stderr
    lines = sparse.stderr.splitlines()
    # An hour between lines: the first and the last only, nothing per file in between.
    assert lines[0].startswith("file 0/5") and lines[-1].startswith("file 5/5"), lines
    assert not any(line.startswith(("file 2/5", "file 3/5")) for line in lines), lines
    assert "\r" not in sparse.stderr


def test_a_query_with_no_posts_is_a_total_of_zero(booru_server, fb, tmp_path):
    server = booru_server(fb.make_posts(3))
    args = _fetch_args(server, tmp_path / "out", 5)
    args[2] = "no_such_tag"
    run = TerminalRun(*args, env=EVERY_CHANGE)
    code, stdout, shown = run.finish()
    assert code == 0, shown
    assert "No posts matched" in stdout
    assert terminal_lines(shown)[-1].startswith("file 0/0 |" + "█" * 10)  # done, not 0% of nothing
    assert "Traceback" not in shown


def test_ctrl_c_in_fetch_keeps_the_finished_files_and_nothing_half_written(booru_server, fb, tmp_path):
    posts = fb.make_posts(4)
    server = booru_server(posts)
    held = {posts[2].md5, posts[3].md5}
    server.hold = held
    out = tmp_path / "out"
    run = TerminalRun(*_fetch_args(server, out, 4), env=EVERY_CHANGE)
    try:
        run.wait_for("file 2/4")  # the two free files are written; a held one is half-way through
        assert server.held.wait(60)
        run.process.send_signal(signal.SIGINT)
        run.wait_for("cancelling")
    finally:
        server.release.set()
    code, _, shown = run.finish()
    assert code == 130, shown
    assert "Traceback" not in shown
    said = [line for line in terminal_lines(shown) if line.startswith("cancelled:")]
    assert said == [f"cancelled: 2 new file(s) kept in {out}, each complete; the same command again goes on "
                    "where this one stopped"], shown  # fmt: skip
    images = sorted(p for p in out.iterdir() if p.suffix == ".png")
    by_md5 = {p.md5: p for p in posts}
    assert len(images) == 2 and not {p.stem for p in images} & held
    assert all(p.read_bytes() == by_md5[p.stem].data for p in images)  # whole files only
    assert sorted(p.name for p in out.iterdir() if p.suffix not in (".png", ".txt")) == []  # no temporaries
    assert len(list(out.glob("*.txt"))) == 2


def test_fetch_into_a_closed_stdout_ends_quietly(booru_server, fb, tmp_path):
    server = booru_server(fb.make_posts(3))
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head` that has already gone
    try:
        result = subprocess.run(
            [*cli_command(), *_fetch_args(server, tmp_path / "out", 3)], env={**cli_env(), **EVERY_CHANGE},
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert result.returncode == 141, result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 3  # the work was done; only its summary had no reader
