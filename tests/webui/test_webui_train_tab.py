"""In the real WebUI, clicked through in a browser: Embed Studio → Train → create an embedding, train it with
previews and a loss plot, then use it in txt2img."""

from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
import pytest
import requests
from PIL import Image

from embed_studio.formats.embedding import load_embedding

pytestmark = [pytest.mark.webui, pytest.mark.browser]

TRAIN_TIMEOUT_MS = 300_000  # a safety net against a hung run, not a timing assertion


@pytest.fixture
def dataset(tmp_path):
    """Mixed-aspect images with booru captions."""
    rng = np.random.default_rng(1)
    for i, size in enumerate([(96, 64), (64, 96), (64, 64), (80, 48)]):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
        (tmp_path / f"img{i}.txt").write_text("zangoose_(pokemon), red eyes, solo", encoding="utf-8")
    return tmp_path


def _open_train_panel(panel, url: str) -> None:
    panel.page.goto(url)
    panel.page.locator("#tabs > .tab-nav button", has_text="Embed Studio").first.click(timeout=120_000)
    panel.page.locator("#es-tabs > .tab-nav button", has_text="Train").first.click()


def test_create_train_and_use_an_embedding_from_the_tab(webui, train_panel, dataset, name):
    panel, page = train_panel, train_panel.page
    _open_train_panel(panel, webui.url)

    # The WebUI lends its loaded model: no model box, a line naming the checkpoint, the checkpoint's own VAE.
    assert not page.locator("#es-train-model").is_visible()
    assert "tiny-sd1" in panel.wait_text("es-train-model-info", "tiny-sd1")
    panel.fill("es-train-dataset", dataset)
    panel.fill("es-train-emb-name", name)
    panel.fill("es-train-emb-init", "red eyes")
    panel.fill("es-train-emb-vectors", 2)
    page.locator("#es-train-emb-create").click()
    assert "It is picked in the Train tab" in panel.wait_text("es-train-emb-status", "Created")
    target = webui.dir / "embeddings" / f"{name}.pt"
    assert load_embedding(target).n_vectors == 2

    panel.open_subtab("Train")
    assert page.locator("#es-train-target input").first.input_value() == f"{name}.pt"
    panel.start_small_run(max_steps=6, preview_every=3)

    text = panel.wait_text("es-train-status", "Done:", timeout=TRAIN_TIMEOUT_MS)
    assert f"{name}.pt is at step 6 (6 this run)" in text
    page.wait_for_function("() => document.querySelectorAll('#es-train-gallery img').length >= 2")
    page.wait_for_selector("#es-train-loss img[src^='data:image']")
    panel.wait_text("es-train-target-info", "at step 6")
    saved = load_embedding(target)
    assert saved.step == 6 and saved.sd_checkpoint_name == "tiny-sd1"
    run = webui.dir / "textual_inversion" / name
    assert sorted(p.name for p in (run / "images").iterdir()) == [f"{name}-3.png", f"{name}-6.png"]

    # The WebUI knows the new file without a restart, and txt2img uses it (its hash in the infotext).
    embeddings = requests.get(f"{webui.url}/sdapi/v1/embeddings", timeout=30).json()["loaded"]
    assert embeddings[name]["step"] == 6
    body = {"prompt": f"{name}, red eyes", "steps": 2, "width": 64, "height": 64, "seed": 1, "sampler_name": "Euler"}
    r = requests.post(f"{webui.url}/sdapi/v1/txt2img", json=body, timeout=120)
    assert r.ok, r.text
    infotext = json.loads(r.json()["info"])["infotexts"][0]
    assert f'TI hashes: "{name}: ' in infotext
    assert Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]))).size == (64, 64)

    # A long run shows in the WebUI's own progress bar and state, and the WebUI's Interrupt stops it, saved.
    panel.fill("es-train-max-steps", 100000)
    panel.fill("es-train-preview-every", 0)
    page.locator("#es-train-start").click()
    bar = page.locator(".progressDiv")
    page.wait_for_function(
        "() => /step \\d+\\/\\d+ · loss/.test(document.querySelector('.progressDiv')?.innerText || '')", timeout=120_000
    )
    # Drawn in its anchor just above the status line (not at the top of the column), and it stays there.
    page.wait_for_timeout(3000)
    assert page.locator("#es-train-progress .progressDiv").count() == 1
    state = requests.get(f"{webui.url}/sdapi/v1/progress?skip_current_image=true", timeout=30).json()["state"]
    assert state["job"].startswith("embed-studio-train-"), state
    assert requests.post(f"{webui.url}/sdapi/v1/interrupt", timeout=30).ok
    text = panel.wait_text("es-train-status", "Interrupted", timeout=TRAIN_TIMEOUT_MS)
    assert "press Train with the same file to resume" in text
    bar.wait_for(state="detached", timeout=30_000)
    assert load_embedding(target).step > 6


def test_a_bad_schedule_is_refused_in_the_form(webui, train_panel, dataset, name):
    panel, page = train_panel, train_panel.page
    _open_train_panel(panel, webui.url)
    panel.fill("es-train-dataset", dataset)
    panel.fill("es-train-emb-name", name)
    page.locator("#es-train-emb-create").click()
    panel.wait_text("es-train-emb-status", "Created")
    panel.open_subtab("Train")
    panel.fill("es-train-lr", "0.005:100, fast")
    page.locator("#es-train-start").click()
    text = panel.wait_text("es-train-status", "Cannot start")
    assert "fast" in text
    assert load_embedding(webui.dir / "embeddings" / f"{name}.pt").step == 0
    jobs = requests.get(f"{webui.url}/embed-studio/v1/jobs", timeout=10).json()
    assert not [job for job in jobs if job["kind"] == "train" and job["active"]]


def test_a_run_started_from_the_api_is_followed_and_interrupted_in_the_tab(webui, train_panel, dataset, name):
    def post(route: str, body: dict) -> dict:
        r = requests.post(f"{webui.url}/embed-studio/v1/{route}", json=body, timeout=60)
        assert r.ok, r.text
        return r.json()

    def status(job: dict) -> dict:
        return requests.get(f"{webui.url}/embed-studio/v1/jobs/{job['id']}", timeout=30).json()

    created = post("create", {"kind": "embedding", "name": name, "init_text": "red eyes", "n_vectors": 2})
    deadline = time.monotonic() + 60
    while status(created)["active"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status(created)["state"] == "done", status(created)
    job = post(
        "train",
        {"kind": "embedding", "target": name, "dataset": str(dataset), "width": 64, "height": 64, "bucket_step": 32,
         "max_steps": 100000, "lr": "0.005", "grad_accum": 1, "save_every": 0, "preview_every": 0},
    )  # fmt: skip

    panel, page = train_panel, train_panel.page
    _open_train_panel(panel, webui.url)
    panel.open_subtab("Train")
    assert "A training run is going" in panel.wait_text("es-train-status", "Show running job")
    page.locator("#es-train-attach").click()
    panel.wait_text("es-train-status", "loss", timeout=TRAIN_TIMEOUT_MS)
    page.locator("#es-train-interrupt").click()
    text = panel.wait_text("es-train-status", "Interrupted", timeout=TRAIN_TIMEOUT_MS)
    assert f"{name}.pt" in text
    final = status(job)
    assert final["state"] == "cancelled" and not final["active"]  # the tab stopped the API's own job object
    stopped_at = load_embedding(webui.dir / "embeddings" / f"{name}.pt").step
    assert stopped_at > 0

    # Resume takes that run's settings (written by the API's run) into the form and goes on from the file's step.
    # The file is already picked: the page took the running run's settings when it opened. (Typing it again and
    # pressing Enter would not do: gradio 3.41's dropdown then picks the first file of its list.)
    assert page.locator("#es-train-target input").first.input_value() == f"{name}.pt"
    page.locator("#es-train-resume").click()
    panel.wait_text("es-train-status", f"resuming {name}.pt at step {stopped_at}", timeout=TRAIN_TIMEOUT_MS)
    assert page.locator("#es-train-max-steps input").first.input_value() == "100000"
    assert page.locator("#es-train-dataset textarea").first.input_value() == str(dataset)
    page.wait_for_function(  # a step of this run is done, so the interrupt saves a later step
        "() => [...document.querySelectorAll('#es-train-status')].some(e => /step [1-9]\\d*\\/\\d+ · loss/.test(e.innerText))",
        timeout=TRAIN_TIMEOUT_MS,
    )
    page.locator("#es-train-interrupt").click()
    panel.wait_text("es-train-status", "Interrupted", timeout=TRAIN_TIMEOUT_MS)
    assert load_embedding(webui.dir / "embeddings" / f"{name}.pt").step > stopped_at
