"""The real WebUI's /embed-studio/v1/ routes with careless or hostile bodies: 400s naming the field, nothing
written outside the WebUI's folders (issue 11)."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
import requests
from PIL import Image

pytestmark = [pytest.mark.webui, pytest.mark.usefixtures("routes_ready")]


@pytest.fixture(scope="module")
def routes_ready(webui):
    # The WebUI answers /sdapi/ (what conftest waits for) a moment before extensions' on_app_started adds their
    # routes; a 404 here would be that race, not the behaviour under test.
    deadline = time.monotonic() + 120
    while requests.get(f"{webui.url}/embed-studio/v1/version", timeout=30).status_code == 404:
        assert time.monotonic() < deadline, "the extension's routes never appeared"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def tag():
    return "es-hostile-" + uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dataset")
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text("1girl, solo", encoding="utf-8")
    return folder


def _post(webui, route: str, body) -> requests.Response:
    return requests.post(f"{webui.url}/embed-studio/v1/{route}", json=body, timeout=60)


def _folder_files(webui) -> set[str]:
    return {
        p.relative_to(webui.dir).as_posix()
        for folder in ("embeddings", "models/hypernetworks")
        for p in (webui.dir / folder).rglob("*")
        if p.is_file()
    }


def test_create_refuses_an_unknown_kind(webui, tag):
    before = _folder_files(webui)
    r = _post(webui, "create", {"kind": "lora", "name": tag})
    assert r.status_code == 400, r.text
    assert "Kind 'lora'" in r.json()["detail"]
    assert _folder_files(webui) == before  # today: a hypernetwork in the embeddings folder


def test_create_names_a_mistyped_option(webui, tag):
    r = _post(webui, "create", {"kind": "embedding", "name": tag, "n_vectors": "3"})
    assert r.status_code == 400 and "'n_vectors'" in r.json()["detail"], r.text
    assert not (webui.dir / "embeddings" / f"{tag}.pt").exists()


def test_train_names_a_mistyped_field(webui, tag, dataset):
    body = {"kind": "embedding", "target": tag, "dataset": str(dataset), "width": "x"}
    r = _post(webui, "train", body)
    assert r.status_code == 400, r.text  # today: 500 with a traceback
    assert "'width'" in r.json()["detail"]


def test_train_refuses_a_missing_dataset_before_any_job(webui, tag, tmp_path):
    jobs_before = requests.get(f"{webui.url}/embed-studio/v1/jobs", timeout=30).json()
    body = {"kind": "embedding", "target": tag, "dataset": str(tmp_path / "nowhere")}
    r = _post(webui, "train", body)
    assert r.status_code == 400, r.text
    assert requests.get(f"{webui.url}/embed-studio/v1/jobs", timeout=30).json() == jobs_before


def test_train_never_writes_outside_the_webui(webui, tag, dataset, tmp_path):
    # "../../x" from the embeddings folder is beside the WebUI's folder; today it was trained and an .optim
    # written next to it.
    outside = webui.dir.parent / f"{tag}-outside.pt"
    outside.write_bytes(b"a file the WebUI does not own")
    try:
        for target in (f"../../{tag}-outside", str(outside)):
            body = {"kind": "embedding", "target": target, "dataset": str(dataset), "max_steps": 1}
            r = _post(webui, "train", body)
            assert r.status_code == 400, r.text
            assert outside.read_bytes() == b"a file the WebUI does not own"
            assert sorted(p.name for p in webui.dir.parent.glob(f"{tag}*")) == [outside.name]
    finally:
        outside.unlink(missing_ok=True)


def test_a_folder_allowed_in_settings_may_hold_the_file(webui, tag, dataset, tmp_path):
    r = _post(webui, "create", {"kind": "embedding", "name": f"{tag}-moved"})
    assert r.status_code == 200, r.text
    _wait(webui, r.json())
    made = webui.dir / "embeddings" / f"{tag}-moved.pt"
    target = tmp_path / made.name
    made.replace(target)
    body = {
        "kind": "embedding", "target": str(target), "dataset": str(dataset), "max_steps": 1, "width": 64,
        "height": 64, "bucket_step": 32, "grad_accum": 1, "save_every": 0, "preview_every": 0,
        "log_dir": str(tmp_path / "logs"),
    }  # fmt: skip
    assert _post(webui, "train", body).status_code == 400
    options = f"{webui.url}/sdapi/v1/options"
    assert requests.post(options, json={"embed_studio_allowed_folders": str(tmp_path)}, timeout=60).ok
    try:
        r = _post(webui, "train", body)
        assert r.status_code == 200, r.text
        assert _wait(webui, r.json())["state"] == "done"
        assert (tmp_path / "logs" / "loss.csv").is_file()
    finally:
        requests.post(options, json={"embed_studio_allowed_folders": ""}, timeout=60)


def _wait(webui, job: dict) -> dict:
    deadline = time.monotonic() + 300  # a safety net against a hung job, not a timing assertion
    while True:
        status = requests.get(f"{webui.url}/embed-studio/v1/jobs/{job['id']}", timeout=30).json()
        if not status["active"]:
            assert status["state"] == "done", status
            return status
        assert time.monotonic() < deadline, f"job {job['id']} still running: {status}"
        time.sleep(0.5)
