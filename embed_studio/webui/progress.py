"""Mirror a running Job into the WebUI's progress bar (shared.state and its task list) and Interrupt."""

from __future__ import annotations

import time

from modules import progress as webui_progress
from modules import shared

from embed_studio.jobs import Job, JobStatus
from embed_studio.progress import STAGE, status_line
from embed_studio.webui.provider import get_provider

MODEL_JOB_KINDS = ("train", "create")  # the jobs that borrow the WebUI's model under its GPU lock


def task_id(job: Job) -> str:
    """The id the WebUI's progress API and its progressbar.js know the job by."""
    return f"embed-studio-{job.id}"


def mirror_job(job: Job) -> None:
    """Show a job that borrows the WebUI's model in its progress bar; the WebUI's Interrupt cancels it.

    Only while the job's thread holds the WebUI's GPU lock: shared.state is the one state of whatever
    is generating, so a job still waiting for a txt2img to end must not reset it, and jobs that do not
    use the model (tagging, fetching) have their own status lines.
    """
    if job.kind not in MODEL_JOB_KINDS:
        return
    provider = get_provider()
    tid = task_id(job)
    shown = {"on": False, "first_step": 0}
    webui_progress.add_task_to_queue(tid)  # "In queue" in the bar until the model is free

    def on_update(status: JobStatus) -> None:
        state = shared.state
        if status.active and provider.held_by_current_thread():
            if not shown["on"]:
                shown.update(on=True, first_step=int(status.done))
                webui_progress.start_task(tid)
                state.begin(job=tid)
                state.job_count = 1
            # Steps of this run, so the WebUI's ETA (elapsed / fraction done) holds for a resumed file too.
            first = shown["first_step"]
            state.sampling_steps = max(int(status.total or 0) - first, 0)
            state.sampling_step = max(int(status.done) - first, 0)
            state.textinfo = status_line(status)
            if status.stats.get(STAGE):
                # Caching latents and other setup: the WebUI's ETA (elapsed / fraction done) starts at the first
                # training step, as the CLI's does, instead of spreading the setup over the steps.
                state.time_start = time.time()
            if state.interrupted:
                job.cancel()
        elif not status.active:
            # The GPU lock is free by now and a txt2img may have begun: only end the state if it is still ours.
            if shown["on"] and state.job == tid:
                state.textinfo = status_line(status)
                state.end()
            shown["on"] = False
            webui_progress.pending_tasks.pop(tid, None)  # a job that never got the model
            webui_progress.finish_task(tid)

    job.add_listener(on_update)
