"""The Job object the UI, the CLI and the API all poll."""

from __future__ import annotations

import threading

from embed_studio.errors import UserInputError
from embed_studio.jobs import CANCELLED, DONE, FAILED, Job, JobRegistry, format_eta
from embed_studio.progress import status_line


def test_job_reports_progress_and_result():
    seen = []

    def work(ctx):
        for i in range(1, 4):
            ctx.progress(i, 3, loss=0.5 / i)
        return "ok"

    job = Job("test", work)
    job.add_listener(lambda s: seen.append((s.state, s.done)))
    assert job.run() == "ok"
    status = job.status()
    assert status.state == DONE and status.done == 3 and status.total == 3
    assert status.stats["loss"] == 0.5 / 3
    assert ("running", 2) in seen and seen[-1] == ("done", 3)
    assert "step 3/3" in status_line(status) and "loss 0.1667" in status_line(status)


def test_cancel_stops_work_between_units():
    started, release = threading.Event(), threading.Event()
    steps = []

    def work(ctx):
        for i in range(100):
            if i == 1:
                started.set()
                release.wait(5)
            ctx.check_cancelled()
            steps.append(i)

    job = Job("test", work).start()
    assert started.wait(5)
    job.cancel()
    release.set()
    assert job.wait(5)
    assert job.status().state == CANCELLED
    assert steps == [0]


def test_user_error_becomes_a_message_not_a_crash():
    def work(ctx):
        raise UserInputError("LR schedule '0.1:x' is malformed: write rate:step pairs")

    job = Job("test", work)
    job.run()
    status = job.status()
    assert status.state == FAILED
    assert status.error == "LR schedule '0.1:x' is malformed: write rate:step pairs"
    assert not status.active


def test_registry_finds_jobs_and_lists_active():
    reg = JobRegistry()
    gate = threading.Event()
    job = reg.submit(Job("slow", lambda ctx: gate.wait(5)))
    assert reg.get(job.id) is job
    assert reg.active("slow") == [job]
    gate.set()
    job.wait(5)
    assert reg.active() == []


def test_format_eta():
    assert format_eta(None) == "--:--"
    assert format_eta(65) == "01:05"
    assert format_eta(3725) == "1:02:05"
