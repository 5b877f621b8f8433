"""Long work (download, tag, train) as a job: a thread with progress, cancel and a result.

The UI and the API poll the same Job object; the WebUI glue mirrors it into shared.state.
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from embed_studio.errors import Cancelled, EmbedStudioError
from embed_studio.fileio import os_error_message

PENDING, RUNNING, DONE, FAILED, CANCELLED = "pending", "running", "done", "failed", "cancelled"


@dataclass
class JobStatus:
    """A consistent snapshot of a job, safe to hand to the UI or serialise for the API."""

    id: str
    kind: str
    state: str
    done: float
    total: float | None
    text: str
    started: float | None
    finished: float | None
    rate: float | None  # units per second since the count last stood at 0 (setup such as latent caching excluded)
    eta_seconds: float | None
    error: str | None
    images: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state in (PENDING, RUNNING)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"active": self.active}


class JobContext:
    """What the work function sees: report progress, publish images/stats, honour cancel."""

    def __init__(self, job: Job):
        self._job = job

    @property
    def cancelled(self) -> bool:
        return self._job._cancel.is_set()

    def check_cancelled(self) -> None:
        """Raise Cancelled if the user asked to stop; call it between units of work."""
        if self._job._cancel.is_set():
            raise Cancelled("Cancelled by the user.")

    def progress(self, done: float, total: float | None = None, text: str | None = None, **stats: Any) -> None:
        self._job._update(done=done, total=total, text=text, stats=stats)

    def set_text(self, text: str) -> None:
        self._job._update(text=text)

    def add_image(self, path: str) -> None:
        self._job._add_image(str(path))


WorkFn = Callable[[JobContext], Any]


class Job:
    """One unit of long work running in a background thread."""

    _ids = itertools.count(1)

    def __init__(self, kind: str, work: WorkFn, *, total: float | None = None):
        self.id = f"{kind}-{next(self._ids)}"
        self.kind = kind
        self._work = work
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._listeners: list[Callable[[JobStatus], None]] = []
        self._state = PENDING
        self._done: float = 0
        self._total = total
        self._text = ""
        self._started: float | None = None
        self._counting_since: float | None = None  # when `done` was last reported as 0: the rate's start
        self._ended: float | None = None
        self._error: str | None = None
        self._images: list[str] = []
        self._stats: dict[str, Any] = {}
        self.result: Any = None
        self.exception: BaseException | None = None
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------
    def start(self) -> Job:
        self._thread = threading.Thread(target=self.run, name=f"embed-studio-{self.id}", daemon=True)
        self._thread.start()
        return self

    def run(self) -> Any:
        """Run the work in the calling thread (the CLI does this; the UI uses start())."""
        with self._lock:
            self._state, self._started = RUNNING, time.monotonic()
            self._counting_since = self._started
        self._notify()
        try:
            self.result = self._work(JobContext(self))
            state, error = DONE, None
        except Cancelled as e:
            state, error, self.exception = CANCELLED, str(e), e
        except EmbedStudioError as e:
            state, error, self.exception = FAILED, str(e), e
        except OSError as e:  # a path that cannot be used (a file, read-only, disk full): named, no traceback
            state, error, self.exception = FAILED, os_error_message(e), e
        except Exception as e:  # an unexpected bug: keep the traceback for the log
            state, error, self.exception = FAILED, f"{type(e).__name__}: {e}", e
            traceback.print_exc()
        with self._lock:
            self._state, self._error, self._ended = state, error, time.monotonic()
        self._finished.set()
        self._notify()
        return self.result

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    def add_listener(self, listener: Callable[[JobStatus], None]) -> None:
        """Call `listener(status)` on every progress update (from the job's thread)."""
        self._listeners.append(listener)

    # -- state ---------------------------------------------------------------------------
    def status(self) -> JobStatus:
        with self._lock:
            now = self._ended or time.monotonic()
            since = self._counting_since or self._started
            elapsed = now - since if since else 0.0
            rate = self._done / elapsed if elapsed > 0 and self._done else None
            eta = None
            if rate and self._total is not None and self._state == RUNNING:
                eta = max(0.0, (self._total - self._done) / rate)
            return JobStatus(
                id=self.id,
                kind=self.kind,
                state=self._state,
                done=self._done,
                total=self._total,
                text=self._text,
                started=self._started,
                finished=self._ended,
                rate=rate,
                eta_seconds=eta,
                error=self._error,
                images=list(self._images),
                stats=dict(self._stats),
            )

    def _update(self, done=None, total=None, text=None, stats=None) -> None:
        with self._lock:
            if done is not None:
                if not done:  # work that reports 0 done is still setting up: its time is not the rate's
                    self._counting_since = time.monotonic()
                self._done = done
            if total is not None:
                self._total = total
            if text is not None:
                self._text = text
            if stats:
                self._stats.update(stats)
        self._notify()

    def _add_image(self, path: str) -> None:
        with self._lock:
            self._images.append(path)
        self._notify()

    def _notify(self) -> None:
        if not self._listeners:
            return
        status = self.status()
        for listener in list(self._listeners):
            listener(status)


class JobRegistry:
    """Jobs by id, so the UI (per browser, via gr.State holding the id) and the API share them."""

    def __init__(self, keep: int = 50):
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._keep = keep

    def submit(self, job: Job) -> Job:
        with self._lock:
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if not j.status().active]
            for old in finished[: max(0, len(self._jobs) - self._keep)]:
                del self._jobs[old.id]
        return job.start()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def latest(self, kind: str) -> Job | None:
        """The job of `kind` submitted last, running or not (the registry keeps submission order)."""
        with self._lock:
            return next((j for j in reversed(self._jobs.values()) if j.kind == kind), None)

    def active(self, kind: str | None = None) -> list[Job]:
        with self._lock:
            jobs = list(self._jobs.values())
        return [j for j in jobs if j.status().active and (kind is None or j.kind == kind)]


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


registry = JobRegistry()
