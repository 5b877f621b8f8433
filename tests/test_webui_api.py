"""The /embed-studio/v1/ routes: same job objects as the UI, and --api-auth honoured."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from embed_studio.jobs import Job, JobRegistry
from embed_studio.webui.api import PREFIX, add_routes


@pytest.fixture
def running_job():
    reg = JobRegistry()
    gate = threading.Event()

    def work(ctx):
        ctx.progress(1, 10, loss=0.25)
        while not gate.wait(0.01):
            ctx.check_cancelled()

    job = reg.submit(Job("train", work))
    yield reg, job
    gate.set()
    job.wait(5)


def test_status_and_cancel_without_auth(running_job):
    reg, job = running_job
    app = FastAPI()
    add_routes(app, reg, api_auth=None)
    client = TestClient(app)
    listed = client.get(f"{PREFIX}/jobs").json()
    assert [j["id"] for j in listed] == [job.id]
    assert client.get(f"{PREFIX}/jobs/{job.id}").json()["kind"] == "train"
    assert client.get(f"{PREFIX}/jobs/nope").status_code == 404
    assert client.post(f"{PREFIX}/jobs/{job.id}/cancel").status_code == 200
    assert job.wait(5)
    assert client.get(f"{PREFIX}/jobs/{job.id}").json()["state"] == "cancelled"


def test_api_auth_is_required_when_configured(running_job):
    reg, job = running_job
    app = FastAPI()
    add_routes(app, reg, api_auth="alice:secret,bob:pw")
    client = TestClient(app)
    assert client.get(f"{PREFIX}/jobs/{job.id}").status_code == 401
    assert client.get(f"{PREFIX}/jobs/{job.id}", auth=("alice", "wrong")).status_code == 401
    assert client.get(f"{PREFIX}/jobs/{job.id}", auth=("bob", "pw")).status_code == 200
    assert client.post(f"{PREFIX}/jobs/{job.id}/cancel").status_code == 401
    assert job.status().active


def test_finished_job_reports_its_result():
    from dataclasses import dataclass

    @dataclass
    class Summary:
        written: int
        path: object

    reg = JobRegistry()
    job = reg.submit(Job("tag", lambda ctx: Summary(3, Path("/tmp/x"))))
    assert job.wait(5)
    app = FastAPI()
    add_routes(app, reg, api_auth=None)
    body = TestClient(app).get(f"{PREFIX}/jobs/{job.id}").json()
    assert body["state"] == "done" and body["result"] == {"written": 3, "path": "/tmp/x"}
