"""The /embed-studio/v1/ routes: same job objects as the UI, and --api-auth honoured."""

from __future__ import annotations

import re
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


# -- /create and /train with hostile or careless bodies ---------------------------------------------------------
# The routes run on a real tiny diffusers model lent through LoadedBackendProvider, as the WebUI lends its own.

TINY_SD = Path(__file__).resolve().parent / "train" / "tiny_sd.py"


@pytest.fixture(scope="module")
def tiny_backend(tmp_path_factory):
    import importlib.util

    from embed_studio.backends.standalone import StandaloneBackend

    spec = importlib.util.spec_from_file_location("embed_studio_tests_tiny_sd_api", TINY_SD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return StandaloneBackend.load(module.build_tiny_sd(tmp_path_factory.mktemp("api-tiny-sd"), "epsilon"), "cpu")


@pytest.fixture
def studio(tmp_path, tiny_backend):
    """A client of the real routes, the provider's folders under tmp_path/webui, and a small dataset beside them."""
    import numpy as np
    from PIL import Image

    from embed_studio.backends.provider import LoadedBackendProvider
    from embed_studio.jobs import registry

    provider = LoadedBackendProvider(tiny_backend, tmp_path / "webui")
    for folder in (provider.embeddings_dir, provider.hypernetworks_dir):
        folder.mkdir(parents=True)
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(dataset / f"img{i}.png")
        (dataset / f"img{i}.txt").write_text("1girl, solo", encoding="utf-8")
    app = FastAPI()
    add_routes(app, registry, api_auth=None, provider=provider)
    # A 500 must come back as a 500 response (what a client sees), not as the server's exception in the test.
    client = TestClient(app, raise_server_exceptions=False)
    from types import SimpleNamespace

    return SimpleNamespace(client=client, provider=provider, dataset=dataset, root=tmp_path)


def _finished(client, body) -> dict:
    from embed_studio.jobs import registry

    job = registry.get(body["id"])
    assert job is not None and job.wait(120)
    return client.get(f"{PREFIX}/jobs/{body['id']}").json()


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _train_body(studio, **overrides) -> dict:
    body = {
        "kind": "embedding", "target": "mychar", "dataset": str(studio.dataset), "lr": "0.01", "batch_size": 2,
        "grad_accum": 1, "max_steps": 2, "width": 64, "height": 64, "bucket_step": 32, "save_every": 0,
        "preview_every": 0,
    }  # fmt: skip
    body.update(overrides)
    return body


def test_create_then_train_through_the_api(studio):
    r = studio.client.post(f"{PREFIX}/create", json={"kind": "embedding", "name": "mychar", "n_vectors": 2.0})
    assert r.status_code == 200, r.text
    created = _finished(studio.client, r.json())
    assert created["state"] == "done", created
    assert created["result"] == str(studio.provider.embeddings_dir / "mychar.pt")
    r = studio.client.post(
        f"{PREFIX}/create",
        json={"kind": "hypernetwork", "name": "myhn", "sizes": [32, 768], "layer_structure": [1, 2, 1]},
    )
    assert r.status_code == 200, r.text
    assert _finished(studio.client, r.json())["state"] == "done"
    assert (studio.provider.hypernetworks_dir / "myhn.pt").is_file()

    r = studio.client.post(f"{PREFIX}/train", json=_train_body(studio))
    assert r.status_code == 200, r.text
    trained = _finished(studio.client, r.json())
    assert trained["state"] == "done", trained
    from embed_studio.formats.embedding import load_embedding

    assert load_embedding(studio.provider.embeddings_dir / "mychar.pt").step == 2
    assert (studio.provider.log_dir / "mychar" / "loss.csv").is_file()


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"kind": "lora", "name": "x"}, "Kind 'lora' is not one of"),
        ({"kind": 3, "name": "x"}, "'kind' must be text"),
        ({"kind": "embedding", "name": ["x"]}, "'name' must be text"),
        ({"kind": "embedding", "name": "x", "n_vectors": "3"}, "'n_vectors' must be a whole number"),
        ({"kind": "embedding", "name": "x", "overwrite": "no"}, "'overwrite' must be true or false"),
        ({"kind": "hypernetwork", "name": "x", "sizes": "768"}, "'sizes' must be a list of whole numbers"),
        ({"kind": "hypernetwork", "name": "x", "use_dropout": 1}, "'use_dropout' must be true or false"),
        ({"kind": "hypernetwork", "name": "x", "activation_func": "nope"}, "Activation 'nope' is unknown"),
        ({"kind": "embedding", "name": "x", "layer_structure": "1, 2, 1"}, "Unknown option.*layer_structure"),
        ({"kind": "hypernetwork", "name": "x", "provider": "anything"}, "Unknown option.*provider"),
        (["embedding", "x"], "JSON object"),
    ],
)
def test_create_refuses_a_bad_body_naming_the_field(studio, body, fragment):
    r = studio.client.post(f"{PREFIX}/create", json=body)
    assert r.status_code == 400, r.text
    assert re.search(fragment, r.json()["detail"]), r.json()
    assert _files(studio.root / "webui") == []  # nothing written: no hypernetwork in the embeddings folder


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"width": "x"}, "'width' must be a whole number"),
        ({"shuffle_tags": "no"}, "'shuffle_tags' must be true or false"),
        ({"lr": 0.01}, "'lr' must be text"),
        ({"warp_speed": 9}, "Unknown training setting"),
        ({"kind": "lora"}, "Kind 'lora' is not one of"),
        ({"target": 5}, "'target' must be text"),
        ({"target": None}, "'target' must be text"),
        ({"dataset": "/no/such/dataset"}, "does not exist"),
        ({"target": "nothere"}, "does not exist. Create it first"),
        ({"log_dir": "../../logs"}, "may not contain '..'"),
        ({"name": "../../../escaped"}, "may not contain '..'"),
        # A tagger for preview scoring is one of the Tagger panel's, never a folder of the client's choosing.
        ({"score_tagger": "/etc", "preview_score": True}, "score_tagger '/etc': name a tagger"),
        ({"score_tagger": "../../tagger"}, "score_tagger '../../tagger': name a tagger"),
    ],
)
def test_train_refuses_a_bad_body_before_any_job(studio, overrides, fragment):
    from embed_studio.jobs import registry

    (studio.provider.embeddings_dir / "mychar.pt").write_bytes(b"not trained")
    before = {job.id for job in registry.active()}
    r = studio.client.post(f"{PREFIX}/train", json=_train_body(studio, **overrides))
    assert r.status_code == 400, r.text
    assert re.search(fragment, r.json()["detail"]), r.json()
    assert {job.id for job in registry.active()} == before
    assert _files(studio.root / "webui") == ["embeddings/mychar.pt"]


def test_a_log_dir_that_is_a_file_is_refused(studio):
    (studio.provider.embeddings_dir / "mychar.pt").write_bytes(b"x")
    studio.provider.log_dir.mkdir(parents=True)
    (studio.provider.log_dir / "runs").write_text("a file")
    r = studio.client.post(f"{PREFIX}/train", json=_train_body(studio, log_dir="runs/mychar"))
    assert r.status_code == 400 and "is a file" in r.json()["detail"], r.text


@pytest.mark.parametrize("target", ["../../outside", "../../outside.pt", "{root}/outside.pt", "~/../../outside"])
def test_train_never_touches_a_file_outside_the_folders(studio, target):
    # The attack of issue 11: a .pt beside the WebUI, named relative or absolute, was trained and an .optim written.
    outside = studio.root / "outside.pt"
    from embed_studio.formats.embedding import load_embedding, save_embedding
    from embed_studio.train.create import create_embedding

    save_embedding(create_embedding(studio.provider.backend, "outside", "*", 1), outside)
    before = outside.read_bytes()
    r = studio.client.post(f"{PREFIX}/train", json=_train_body(studio, target=target.format(root=studio.root)))
    assert r.status_code == 400, r.text
    assert "outside" in r.json()["detail"]
    assert outside.read_bytes() == before and load_embedding(outside).step == 0
    assert sorted(p.name for p in studio.root.iterdir()) == ["dataset", "outside.pt", "webui"]


def test_create_stays_in_its_folder_whatever_the_name(studio):
    r = studio.client.post(f"{PREFIX}/create", json={"kind": "embedding", "name": "../../outside"})
    assert r.status_code == 200, r.text
    created = _finished(studio.client, r.json())
    assert Path(created["result"]).parent == studio.provider.embeddings_dir
    assert sorted(p.name for p in studio.root.iterdir()) == ["dataset", "webui"]


def test_a_folder_the_user_allowed_may_hold_the_file_and_the_logs(studio):
    from embed_studio.formats.embedding import load_embedding, save_embedding
    from embed_studio.train.create import create_embedding

    allowed = studio.root / "allowed"
    allowed.mkdir()
    target = allowed / "elsewhere.pt"
    save_embedding(create_embedding(studio.provider.backend, "elsewhere", "*", 1), target)
    body = _train_body(studio, target=str(target), log_dir=str(allowed / "logs"))
    assert studio.client.post(f"{PREFIX}/train", json=body).status_code == 400  # not allowed yet
    studio.provider.extra_folders = (allowed,)  # what the WebUI's setting gives its provider
    r = studio.client.post(f"{PREFIX}/train", json=body)
    assert r.status_code == 200, r.text
    assert _finished(studio.client, r.json())["state"] == "done"
    assert load_embedding(target).step == 2
    assert (allowed / "logs" / "loss.csv").is_file()


@pytest.mark.parametrize(
    "overrides",
    [
        {"template": "/etc/hostname"},
        {"template": "../../../etc/hostname"},
        {"templates_dir": "/etc", "template": "hostname"},
    ],
    ids=["absolute", "relative", "client-folder"],
)
def test_a_client_cannot_make_the_server_read_a_file_as_a_template(studio, overrides):
    # The template's lines become the run's prompts, shown in its status: any file would be read out that way.
    r = studio.client.post(f"{PREFIX}/create", json={"kind": "embedding", "name": "mychar", "n_vectors": 1})
    assert _finished(studio.client, r.json())["state"] == "done"
    r = studio.client.post(f"{PREFIX}/train", json=_train_body(studio, **overrides))
    assert r.status_code == 400, r.text
    assert "Prompt template" in r.json()["detail"] and "Pick one of them" in r.json()["detail"]


def test_a_built_in_template_by_name_is_fine(studio):
    r = studio.client.post(f"{PREFIX}/create", json={"kind": "embedding", "name": "mychar", "n_vectors": 1})
    assert _finished(studio.client, r.json())["state"] == "done"
    r = studio.client.post(f"{PREFIX}/train", json=_train_body(studio, template="subject_filewords", max_steps=1))
    assert r.status_code == 200, r.text
    assert _finished(studio.client, r.json())["state"] == "done"
