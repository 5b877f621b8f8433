"""A registry model downloaded through huggingface_hub from a local server that answers like the hub."""

from __future__ import annotations

import pytest

from embed_studio.dataset.folder import read_caption
from embed_studio.errors import NetworkError
from embed_studio.jobs import DONE
from embed_studio.tagger.hub import resolve_model
from embed_studio.tagger.pipeline import TagRequest, make_tag_job


def test_registry_model_is_downloaded_once_with_progress(fake_hub, tmp_path):
    endpoint, requests = fake_hub
    seen = []
    files = resolve_model("wd14-convnext", tmp_path / "models", endpoint=endpoint, progress=lambda *a: seen.append(a))
    assert files.spec.repo_id == "SmilingWolf/wd-v1-4-convnext-tagger"
    assert files.model_path.is_file() and tmp_path / "models" in files.model_path.parents
    assert ("GET", "/SmilingWolf/wd-v1-4-convnext-tagger/resolve/main/model.onnx") in requests
    size = files.model_path.stat().st_size
    assert ("model.onnx", size, size) in seen and ("selected_tags.csv", 0, None) in seen
    before = len(requests)
    assert resolve_model("wd14-convnext", tmp_path / "models", endpoint=endpoint).model_path == files.model_path
    assert len(requests) == before  # cached: no network at all


def test_tag_job_downloads_then_tags(fake_hub, tmp_path, dataset):
    endpoint, _ = fake_hub
    request = TagRequest(
        folder=dataset, model="wd-v1-4-convnext-tagger", models_dir=tmp_path / "models", endpoint=endpoint
    )
    job = make_tag_job(request)
    texts = []
    job.add_listener(lambda s: texts.append(s.text))
    job.run()
    assert job.status().state == DONE, job.status().error
    assert any(t.startswith("Downloading model.onnx") for t in texts)
    assert "red theme" in read_caption(dataset / "red.png")


def test_download_failure_says_what_to_do(fake_hub, tmp_path):
    endpoint, _ = fake_hub
    with pytest.raises(NetworkError, match="download model.onnx and tags-selected.csv"):
        resolve_model("Z3D-E621-Convnext", tmp_path / "models", endpoint=endpoint)  # the fake has no tags-selected.csv
