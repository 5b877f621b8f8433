"""The CLI's progress display on its edges: a narrow terminal, an unknown or zero total, output that went away.

Real jobs report into the display; the stream is a StringIO standing in for the terminal or the log file.
"""

from __future__ import annotations

import io
import re
import threading

import pytest

from embed_studio.commands.progress_display import ProgressDisplay, fit_line, progress_interval
from embed_studio.jobs import Job
from embed_studio.progress import Part, StatusParts, drawing_stats, stage_stats, status_line, status_parts


def _run(work, kind: str = "fetch", total=None, **display_args) -> tuple[Job, str]:
    stream = io.StringIO()
    display = ProgressDisplay(unit="files", stream=stream, **display_args)
    job = Job(kind, work, total=total)
    job.add_listener(display.update)
    job.run()
    display.close(job.status())
    return job, stream.getvalue()


def _drawn(text: str) -> list[str]:
    return [line for line in re.split(r"[\r\n]+", text) if line.strip()]


def test_a_terminal_20_columns_wide_gets_lines_that_never_wrap():
    def work(ctx):
        for done in range(1, 6):
            ctx.progress(done, 5, f"downloaded a-file-with-a-long-name-{done}.png", label="file", loss=0.5)

    shown = io.StringIO()
    display = ProgressDisplay(unit="files", stream=shown, interval=0, tty=True, columns=20)
    job = Job("fetch", work, total=5)
    job.add_listener(display.update)
    job.run()
    display.close(job.status())
    lines = _drawn(shown.getvalue())
    assert lines and all(len(line) <= 19 for line in lines), lines
    assert lines[-1].startswith("file 5/5")
    assert "\r" in shown.getvalue()


def test_fit_line_drops_the_free_text_first_and_keeps_the_count_and_eta():
    def work(ctx):
        ctx.progress(0, 100, "setup")
        ctx.progress(40, 100, "a long free text that does not matter much", label="step", loss=0.25)
        checked.wait(30)

    checked = threading.Event()
    job = Job("train", work)
    thread = threading.Thread(target=job.run)
    thread.start()
    try:
        while job.status().done != 40:
            job.wait(0.01)
        parts = status_parts(job.status())
        wide = fit_line(parts, 200)
        assert wide.startswith("step 40/100 |") and "ETA" in wide and "a long free text" in wide
        narrow = fit_line(parts, 40)
        assert len(narrow) <= 40 and narrow.startswith("step 40/100") and "ETA" in narrow
        assert "a long free text" not in narrow
        assert len(fit_line(parts, 5)) <= 5  # even the count is cut rather than wrapped
        assert "\n" not in fit_line(StatusParts("step 1/2", 0.5, [Part("two\nlines", 10)]), 80)
    finally:
        checked.set()
        thread.join(30)


def test_an_unknown_total_shows_the_count_without_a_bar_or_eta():
    def work(ctx):
        ctx.progress(0, None, "searching", label="file")
        ctx.progress(3, None, "got three", label="file")

    _, text = _run(work, interval=0, tty=True)
    lines = _drawn(text)
    assert any(line.startswith("file 3 ") for line in lines), lines
    assert not any("|" in line or "ETA" in line or "file 3/" in line for line in lines), lines


def test_a_total_of_zero_is_a_full_bar_not_a_division_by_zero():
    def work(ctx):
        ctx.progress(0, 0, "nothing needed the model", label="image")

    job, text = _run(work, kind="tag", interval=0, tty=True)
    assert job.exception is None
    assert "image 0/0 |" in text and "░" not in text  # full
    assert "ETA" not in text


def test_plain_lines_come_at_start_at_each_phase_and_at_the_end_never_with_carriage_returns():
    def work(ctx):
        ctx.progress(0, 4, "caching", **stage_stats("caching latents", 0, 2))
        ctx.progress(0, 4, "caching", **stage_stats("caching latents", 1, 2))
        ctx.progress(0, 4, "caching", **stage_stats("caching latents", 2, 2))
        ctx.progress(0, 4, "training", label="step", **stage_stats(None))
        for step in range(1, 5):
            ctx.progress(step, 4, f"step {step}", label="step", loss=0.1)
            if step == 2:
                ctx.progress(step, 4, "previews", **drawing_stats(1, 2))
                ctx.progress(step, 4, "previews", **drawing_stats(2, 2))
                ctx.progress(step, 4, "previews drawn", **drawing_stats(None))

    _, every = _run(work, kind="train", total=4, interval=0, tty=False)
    _, sparse = _run(work, kind="train", total=4, interval=3600, tty=False)
    assert "\r" not in every and "\r" not in sparse
    every_lines = every.splitlines()
    assert [line.split(" · ")[0] for line in every_lines if line.startswith("caching")] == [
        "caching latents 0/2", "caching latents 1/2", "caching latents 2/2",
    ]  # fmt: skip
    assert not any("ETA" in line for line in every_lines if line.startswith("caching"))  # the stage has no ETA
    assert any("drawing preview 2/2" in line for line in every_lines)
    sparse_lines = sparse.splitlines()
    # First line, each change of phase (caching, training, drawing, done drawing), the last: no line per step.
    assert sparse_lines[0].startswith("step 0/4") and sparse_lines[-1].startswith("step 4/4")
    assert any(line.startswith("caching latents 0/2") for line in sparse_lines)
    assert any("drawing preview 1/2" in line for line in sparse_lines)
    assert not any(line.startswith(("step 1/4", "step 3/4", "caching latents 1/2")) for line in sparse_lines)
    assert len(sparse_lines) < len(every_lines)


def test_output_that_went_away_silences_the_display_not_the_job():
    stream = io.StringIO()
    stream.close()  # writing raises ValueError, as a closed pipe raises BrokenPipeError
    display = ProgressDisplay(stream=stream, interval=0, tty=True)

    def work(ctx):
        for step in range(1, 4):
            ctx.progress(step, 3, "going", label="step")
        display.message("a warning nobody can read")
        return "finished"

    job = Job("train", work, total=3)
    job.add_listener(display.update)
    assert job.run() == "finished" and job.exception is None
    display.close(job.status())


def test_a_message_clears_the_bar_and_draws_it_again_below():
    stream = io.StringIO()
    display = ProgressDisplay(stream=stream, interval=0, tty=True)

    def work(ctx):
        ctx.progress(1, 2, "one", label="step")
        display.message("warning: something to read")
        ctx.progress(2, 2, "two", label="step")

    job = Job("train", work, total=2)
    job.add_listener(display.update)
    job.run()
    display.close(job.status())
    text = stream.getvalue()
    assert "\rwarning: something to read\n" in text
    after = text.split("warning: something to read\n", 1)[1]
    assert after.startswith("\rstep 1/2")  # the bar comes back under the message


@pytest.mark.parametrize(("value", "expected"), [("0", 0.0), ("2.5", 2.5), ("", 5.0), ("soon", 5.0), ("-1", 5.0)])
def test_the_interval_comes_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("EMBED_STUDIO_PROGRESS_INTERVAL", value)
    assert progress_interval() == expected


def test_a_job_names_its_count_before_its_work_does():
    assert status_line(Job("fetch", lambda ctx: None, total=5).status()).startswith("file 0/5")
    assert status_line(Job("tag", lambda ctx: None).status()).startswith("image 0")
