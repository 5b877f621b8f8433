"""Helpers for the real-WebUI tests: the test booru server and tagger builders, and the WebUI's embedding list."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def _load_test_module(name: str, path: Path):
    """A helper module of another test folder (pytest runs with --import-mode=importlib)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


tagger_models = _load_test_module("es_webui_tagger_models", REPO / "tests" / "tagger" / "tagger_test_models.py")
fake_booru = _load_test_module("es_webui_fake_booru", REPO / "tests" / "booru" / "fake_booru.py")

BOORU_USER = "es-ci-tester"


def embeddings_state(webui) -> tuple[dict, dict]:
    """(loaded, skipped) as the WebUI lists them: a file its restricted unpickler refused is in neither."""
    body = requests.get(f"{webui.url}/sdapi/v1/embeddings", timeout=30).json()
    return body["loaded"], body["skipped"]


def assert_embeddings_loaded(webui, *names: str) -> None:
    loaded, skipped = embeddings_state(webui)
    for name in names:
        assert name not in skipped, f"the WebUI skipped {name}: {skipped[name]}"
        assert name in loaded, f"the WebUI did not load {name} (see its log: refused by its unpickler?)"


JOB_TIMEOUT = 300  # a safety net against a hung job, not a timing assertion


def post_job(webui, route: str, body: dict) -> dict:
    """POST /embed-studio/v1/<route> (create, train): the started job's status."""
    r = requests.post(f"{webui.url}/embed-studio/v1/{route}", json=body, timeout=60)
    assert r.ok, r.text
    return r.json()


def wait_job(webui, job: dict) -> dict:
    """The job's status once it has ended."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        status = requests.get(f"{webui.url}/embed-studio/v1/jobs/{job['id']}", timeout=30).json()
        if not status["active"]:
            return status
        assert time.monotonic() < deadline, f"job {job['id']} still running: {status}"
        time.sleep(0.5)


def run_job(webui, route: str, body: dict) -> dict:
    """Start a job, wait for it, and require that it succeeded."""
    status = wait_job(webui, post_job(webui, route, body))
    assert status["state"] == "done", status
    return status


def txt2img(webui, prompt: str, **extra) -> tuple[np.ndarray, str]:
    """A small, seeded txt2img through the WebUI's API: (RGB pixels, infotext)."""
    body = {"prompt": prompt, "steps": 2, "width": 64, "height": 64, "seed": 1, "sampler_name": "Euler"} | extra
    r = requests.post(f"{webui.url}/sdapi/v1/txt2img", json=body, timeout=300)
    assert r.ok, r.text
    data = r.json()
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["images"][0]))).convert("RGB"))
    return image, json.loads(data["info"])["infotexts"][0]


def write_mixed_aspect_dataset(folder: Path) -> Path:
    """Six random images of mixed aspect with booru captions full of brackets."""
    rng = np.random.default_rng(0)
    for i, size in enumerate([(96, 64), (64, 96), (64, 64), (80, 48), (48, 80), (64, 64)]):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text("zangoose_(pokemon), red eyes, (solo), [simple background]")
    return folder


def remove_run(webui_dir: Path, name: str) -> None:
    """Remove what a test's run left in the WebUI's folders (they outlive a test session, and CI reuses the build):
    the embedding, its optimizer state and its run folder. Left behind, they fill the Train tab's file list."""
    import shutil

    (webui_dir / "embeddings" / f"{name}.pt").unlink(missing_ok=True)
    (webui_dir / "embeddings" / f"{name}.pt.optim").unlink(missing_ok=True)
    shutil.rmtree(webui_dir / "textual_inversion" / name, ignore_errors=True)
