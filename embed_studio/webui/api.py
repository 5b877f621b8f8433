"""API routes under /embed-studio/v1/ on the WebUI's FastAPI app, sharing the UI's job objects.

Routes an extension adds get no authentication of their own, so these apply --api-auth exactly
like the WebUI's /sdapi/ routes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from secrets import compare_digest
from typing import Any

from fastapi import Body, Depends, FastAPI, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from embed_studio import __version__
from embed_studio.jobs import Job, JobRegistry

PREFIX = "/embed-studio/v1"


def job_dict(job: Job) -> dict[str, Any]:
    """A job's status, plus its result once it has ended (a training summary, a fetch summary...)."""
    out = job.status().as_dict()
    result = job.result
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        out["result"] = json.loads(json.dumps(dataclasses.asdict(result), default=str))
    elif isinstance(result, (str, int, float, bool, list, dict)):
        out["result"] = result
    return out


def _auth_dependency(api_auth: str | None):
    if not api_auth:
        return []
    credentials = dict(item.split(":", 1) for item in api_auth.split(",") if ":" in item)

    def check(given: HTTPBasicCredentials = Depends(HTTPBasic())) -> None:
        expected = credentials.get(given.username)
        if expected is None or not compare_digest(given.password, expected):
            raise HTTPException(
                status_code=401, detail="Incorrect username or password", headers={"WWW-Authenticate": "Basic"}
            )

    return [Depends(check)]


def add_routes(app: FastAPI, jobs: JobRegistry, api_auth: str | None, provider: Any = None) -> None:
    """The routes; `provider` is where /create and /train get the model (None: the WebUI's, made when first used)."""
    deps = _auth_dependency(api_auth)

    def get_job(job_id: str):
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(status_code=404, detail=f"No job {job_id!r}; it may have finished long ago.")
        return job

    @app.get(f"{PREFIX}/version", dependencies=deps)
    def version():
        return {"version": __version__}

    @app.get(f"{PREFIX}/jobs", dependencies=deps)
    def list_jobs():
        return [job_dict(job) for job in jobs.active()]

    @app.get(f"{PREFIX}/jobs/{{job_id}}", dependencies=deps)
    def job_status(job_id: str):
        return job_dict(get_job(job_id))

    @app.post(f"{PREFIX}/jobs/{{job_id}}/cancel", dependencies=deps)
    def cancel_job(job_id: str):
        job = get_job(job_id)
        job.cancel()
        return job_dict(job)

    # Training on the WebUI's loaded model (embed_studio.webui.training); the body is TrainConfig's fields
    # plus an optional "vae", or for /create: kind, name and the create options. Bodies are taken as any JSON
    # and checked there, so a wrong type is a 400 naming the field (FastAPI's own 422 names no setting).
    @app.post(f"{PREFIX}/train", dependencies=deps)
    def train(config: Any = Body(...)):
        from embed_studio.webui.training import start_training_job

        with _bad_request():
            return job_dict(start_training_job(config, provider))

    @app.post(f"{PREFIX}/create", dependencies=deps)
    def create(request: Any = Body(...)):
        from embed_studio.webui.training import create_options, start_create_job

        with _bad_request():
            return job_dict(start_create_job(**create_options(request), provider=provider))


@contextlib.contextmanager
def _bad_request() -> Iterator[None]:
    from embed_studio.errors import EmbedStudioError

    try:
        yield
    except EmbedStudioError as e:
        raise HTTPException(status_code=400, detail=str(e)) from e
