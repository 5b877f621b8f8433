"""Follow a Job from a gradio event handler: yield UI updates until it ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from embed_studio.jobs import Job, JobStatus

POLL_SECONDS = 0.5


def follow_job(job: Job, render: Callable[[JobStatus], Any], poll: float = POLL_SECONDS) -> Iterator[Any]:
    """Yield render(status) while the job runs and once more when it has ended.

    The job keeps running if the browser goes away; reopening the tab can follow it again.
    """
    while not job.wait(poll):
        yield render(job.status())
    yield render(job.status())
