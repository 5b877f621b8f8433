"""Mirror a running Job into the WebUI's shared.state: its progress bar, text line and Interrupt."""

from __future__ import annotations

from modules import shared

from embed_studio.jobs import Job, JobStatus
from embed_studio.progress import status_line


def mirror_job(job: Job) -> None:
    """Show `job` in the WebUI's progress bar; the WebUI's Interrupt button cancels it."""

    def on_update(status: JobStatus) -> None:
        state = shared.state
        if status.state == "running":
            if state.job != f"embed-studio:{job.id}":
                state.begin(job=f"embed-studio:{job.id}")
            state.job_count = 1
            state.sampling_steps = int(status.total or 0)
            state.sampling_step = int(status.done)
            state.textinfo = status_line(status)
            if state.interrupted:
                job.cancel()
        elif state.job == f"embed-studio:{job.id}":
            state.textinfo = status_line(status)
            state.end()

    job.add_listener(on_update)
