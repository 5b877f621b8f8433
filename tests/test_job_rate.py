"""A job's rate and ETA count from when its units start (setup such as loading a model or caching latents excluded)."""

from __future__ import annotations

import threading

from embed_studio import jobs
from embed_studio.jobs import Job
from embed_studio.progress import status_line


def test_rate_and_eta_leave_out_the_setup(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(jobs.time, "monotonic", lambda: clock[0])
    go_on, checked = threading.Event(), threading.Event()

    def work(ctx):
        ctx.progress(0, 100, "caching latents")
        clock[0] += 600.0  # ten minutes of setup
        ctx.progress(0, 100, "training from step 0")
        clock[0] += 10.0
        ctx.progress(20, 100, "step 20")  # 20 steps in 10 s: 2 it/s, 40 s to go
        checked.clear()
        go_on.set()
        checked.wait(30)

    job = Job("train", work)
    thread = threading.Thread(target=job.run)
    thread.start()
    assert go_on.wait(30)
    status = job.status()
    assert status.rate == 2.0 and status.eta_seconds == 40.0
    assert "2.00 it/s · ETA 00:40" in status_line(status)
    checked.set()
    thread.join(30)
