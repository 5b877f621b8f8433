"""API routes under /embed-studio/v1/ on the WebUI's FastAPI app, sharing the UI's job objects.

Routes an extension adds get no authentication of their own, so these apply --api-auth exactly
like the WebUI's /sdapi/ routes.
"""

from __future__ import annotations

from secrets import compare_digest

from fastapi import Body, Depends, FastAPI, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from embed_studio import __version__
from embed_studio.jobs import JobRegistry

PREFIX = "/embed-studio/v1"


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


def add_routes(app: FastAPI, jobs: JobRegistry, api_auth: str | None) -> None:
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
        return [job.status().as_dict() for job in jobs.active()]

    @app.get(f"{PREFIX}/jobs/{{job_id}}", dependencies=deps)
    def job_status(job_id: str):
        return get_job(job_id).status().as_dict()

    @app.post(f"{PREFIX}/jobs/{{job_id}}/cancel", dependencies=deps)
    def cancel_job(job_id: str):
        job = get_job(job_id)
        job.cancel()
        return job.status().as_dict()

    # Training on the WebUI's loaded model (embed_studio.webui.training); the body is TrainConfig's fields
    # plus an optional "vae", or for /create: kind, name and the create options.
    @app.post(f"{PREFIX}/train", dependencies=deps)
    def train(config: dict = Body(...)):
        from embed_studio.errors import EmbedStudioError
        from embed_studio.webui.training import start_training_job

        try:
            return start_training_job(config).status().as_dict()
        except EmbedStudioError as e:
            raise HTTPException(status_code=400, detail=str(e)) from e

    @app.post(f"{PREFIX}/create", dependencies=deps)
    def create(request: dict = Body(...)):
        from embed_studio.errors import EmbedStudioError
        from embed_studio.webui.training import start_create_job

        options = dict(request)
        try:
            return (
                start_create_job(options.pop("kind", "embedding"), options.pop("name", ""), **options)
                .status()
                .as_dict()
            )
        except (EmbedStudioError, TypeError) as e:
            raise HTTPException(status_code=400, detail=str(e)) from e
