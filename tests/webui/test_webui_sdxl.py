"""In the real WebUI on a tiny SDXL checkpoint (tests/webui/tiny_sdxl/build.py): the SDXL embedding files we write
load and act in txt2img, training there is refused with a clear message (until the WebUI backend trains SDXL),
and the SD 1.x model is switched back and still works."""

from __future__ import annotations

import base64
import io
import json
import time
import uuid

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from embed_studio.formats.embedding import EmbeddingData, save_embedding

pytestmark = pytest.mark.webui

JOB_TIMEOUT = 300  # a safety net against a hung job, not a timing assertion


@pytest.fixture
def sdxl_model(webui):
    """Switch the WebUI to the tiny SDXL checkpoint (tiny-sdxl*), and back to the one it had after."""
    models = requests.get(f"{webui.url}/sdapi/v1/sd-models", timeout=30).json()
    sdxl = [m for m in models if m["model_name"].startswith("tiny-sdxl")]
    if not sdxl:
        pytest.skip("no tiny-sdxl checkpoint: build it with tests/webui/tiny_sdxl/build.py")
    options = requests.get(f"{webui.url}/sdapi/v1/options", timeout=30).json()
    original = {key: options[key] for key in ("sd_model_checkpoint", "show_progress_type")}
    # The "Approx NN" live preview would download the SDXL approximation model; offline, use the cheap one.
    switch = {"sd_model_checkpoint": sdxl[0]["title"], "show_progress_type": "Approx cheap"}
    r = requests.post(f"{webui.url}/sdapi/v1/options", json=switch, timeout=600)
    assert r.ok, r.text
    yield sdxl[0]
    r = requests.post(f"{webui.url}/sdapi/v1/options", json=original, timeout=600)
    assert r.ok, r.text


def _txt2img(webui, prompt: str) -> tuple[np.ndarray, str]:
    body = {"prompt": prompt, "steps": 2, "width": 64, "height": 64, "seed": 1, "sampler_name": "Euler"}
    r = requests.post(f"{webui.url}/sdapi/v1/txt2img", json=body, timeout=300)
    assert r.ok, r.text
    data = r.json()
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["images"][0]))).convert("RGB"))
    return image, json.loads(data["info"])["infotexts"][0]


def _wait(webui, job: dict) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        status = requests.get(f"{webui.url}/embed-studio/v1/jobs/{job['id']}", timeout=30).json()
        if not status["active"]:
            return status
        assert time.monotonic() < deadline, f"job {job['id']} still running: {status}"
        time.sleep(0.5)


def test_sdxl_embedding_file_loads_and_acts_then_sd1_comes_back(webui, sdxl_model):
    name = "es-xl-" + uuid.uuid4().hex[:6]
    path = webui.dir / "embeddings" / f"{name}.safetensors"
    torch.manual_seed(0)
    data = EmbeddingData(name, torch.randn(2, 2048) * 0.5, step=40, sd_checkpoint="0123456789",
                         sd_checkpoint_name="tiny-sdxl", extra={"embed_studio": {"clip_skip": 1}})  # fmt: skip
    try:
        before, _ = _txt2img(webui, f"{name}, red eyes")
        save_embedding(data, path)
        requests.post(f"{webui.url}/sdapi/v1/refresh-embeddings", timeout=60)
        listed = requests.get(f"{webui.url}/sdapi/v1/embeddings", timeout=30).json()
        assert name in listed["loaded"], listed
        # The WebUI counts both encoders' widths together and the vectors per token.
        assert listed["loaded"][name]["shape"] == 2048 and listed["loaded"][name]["vectors"] == 2
        _txt2img(webui, "red eyes")  # the WebUI keeps the last prompt's conditioning: make it forget `before`'s
        after, info = _txt2img(webui, f"{name}, red eyes")
        assert f'TI hashes: "{name}: ' in info
        assert not np.array_equal(before, after), "txt2img did not pick up the SDXL vectors"

        # Training on SDXL in the WebUI is refused by name, and nothing is written.
        r = requests.post(
            f"{webui.url}/embed-studio/v1/create",
            json={"kind": "embedding", "name": f"{name}-new", "init_text": "red", "n_vectors": 1},
            timeout=60,
        )
        if r.ok:
            status = _wait(webui, r.json())
            assert status["state"] == "failed", status
            message = json.dumps(status)
        else:
            message = r.text
        assert "SDXL" in message and "Traceback" not in message
        assert not any((webui.dir / "embeddings").glob(f"{name}-new.*"))
    finally:
        path.unlink(missing_ok=True)
        requests.post(f"{webui.url}/sdapi/v1/refresh-embeddings", timeout=60)


def test_sd1_works_after_the_sdxl_switch(webui):
    options = requests.get(f"{webui.url}/sdapi/v1/options", timeout=30).json()
    assert "tiny-sdxl" not in options["sd_model_checkpoint"]
    image, _ = _txt2img(webui, "red eyes")
    assert image.shape == (64, 64, 3)
