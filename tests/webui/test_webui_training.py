"""In the real WebUI: create and train embeddings/hypernetworks on its loaded model, then use them in txt2img."""

from __future__ import annotations

import re
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from webui_helpers import (
    JOB_TIMEOUT,
    assert_embeddings_loaded,
    post_job,
    run_job,
    txt2img,
    wait_job,
    write_mixed_aspect_dataset,
)

from embed_studio.formats.embedding import load_embedding
from embed_studio.formats.hypernetwork import load_hypernetwork

pytestmark = pytest.mark.webui

DATA = Path(__file__).resolve().parents[1] / "formats" / "data"


@pytest.fixture(scope="module")
def tag():
    return "es-test-" + uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def cleanup(webui):
    """Paths the tests put into the WebUI's folders; removed at the end, and the VAE setting reset."""
    paths: list[Path] = []
    yield paths
    requests.post(f"{webui.url}/sdapi/v1/options", json={"sd_vae": "Automatic"}, timeout=60)
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_mixed_aspect_dataset(tmp_path_factory.mktemp("dataset"))


def _train(name: str, kind: str, dataset: Path, **extra) -> dict:
    return {
        "kind": kind, "target": name, "dataset": str(dataset), "width": 64, "height": 64, "bucket_step": 32,
        "grad_accum": 1, "save_every": 0, "preview_every": 0, "preview_steps": 2, "seed": 3,
    } | extra  # fmt: skip


def test_embedding_trained_in_the_webui_works_in_txt2img(webui, tag, dataset, cleanup):
    name = f"{tag}-emb"
    emb_path = webui.dir / "embeddings" / f"{name}.pt"
    cleanup += [emb_path, emb_path.with_suffix(".pt.optim"), webui.dir / "textual_inversion" / name]
    run_job(webui, "create", {"kind": "embedding", "name": name, "init_text": "black hair", "n_vectors": 2})
    created = load_embedding(emb_path)
    assert created.n_vectors == 2 and created.step == 0
    before, _ = txt2img(webui, f"{name}, red eyes")

    status = run_job(
        webui, "train",
        _train(name, "embedding", dataset, max_steps=20, batch_size=2, lr="0.005", preview_every=10,
               preview_prompt=f"{name}, red eyes", preview_sampler="euler", preview_seed=1),
    )  # fmt: skip
    previews = [Path(p) for p in status["images"]]
    assert sorted(p.name for p in previews if p.parent.name == "images") == [f"{name}-10.png", f"{name}-20.png"]
    assert all(p.is_file() for p in previews)

    trained = load_embedding(emb_path)
    models = requests.get(f"{webui.url}/sdapi/v1/sd-models", timeout=30).json()
    assert trained.step == 20
    assert trained.sd_checkpoint == models[0]["hash"]  # the WebUI's short hash of the loaded checkpoint
    # A new run uses the WebUI's CLIP skip setting, and records it.
    options = requests.get(f"{webui.url}/sdapi/v1/options", timeout=30).json()
    assert trained.extra["embed_studio"]["clip_skip"] == int(options["CLIP_stop_at_last_layers"])
    assert not np.allclose(trained.vectors.numpy(), created.vectors.numpy())

    assert_embeddings_loaded(webui, name)  # and not refused by the WebUI's restricted unpickler
    after, info = txt2img(webui, f"{name}, red eyes")
    assert f'TI hashes: "{name}: ' in info
    assert not np.array_equal(before, after), "txt2img did not pick up the trained vectors"
    # The preview was drawn by the WebUI's own txt2img with the step-20 vectors: the same image.
    preview = np.asarray(Image.open(next(p for p in previews if p.name == f"{name}-20.png")).convert("RGB"))
    assert np.array_equal(preview, after)


def test_hypernetwork_trained_in_the_webui_changes_txt2img(webui, tag, dataset, cleanup):
    name = f"{tag}-hn"
    hn_path = webui.dir / "models" / "hypernetworks" / f"{name}.pt"
    cleanup += [hn_path, hn_path.with_suffix(".pt.optim"), webui.dir / "textual_inversion" / name]
    run_job(webui, "create", {"kind": "hypernetwork", "name": name, "sizes": [32, 64], "activation_func": "relu"})
    plain, _ = txt2img(webui, "red eyes")
    untrained, _ = txt2img(webui, f"red eyes <hypernet:{name}:1>")

    run_job(webui, "train", _train(name, "hypernetwork", dataset, max_steps=6, batch_size=2, lr="0.01"))
    assert load_hypernetwork(hn_path).step == 6
    trained, _ = txt2img(webui, f"red eyes <hypernet:{name}:1>")
    assert not np.array_equal(plain, trained)
    assert not np.array_equal(untrained, trained), "txt2img used the hypernetwork loaded before training"
    again, _ = txt2img(webui, "red eyes")
    assert np.array_equal(plain, again), "the trained hypernetwork stayed attached after training"


def test_external_vae_is_swapped_out_for_training_and_back(webui, tag, dataset, cleanup):
    from safetensors.torch import load_file, save_file

    checkpoint = next((webui.dir / "models" / "Stable-diffusion").glob("*.safetensors"))
    vae = {k[len("first_stage_model.") :]: v * 1.05 for k, v in load_file(str(checkpoint)).items()
           if k.startswith("first_stage_model.")}  # fmt: skip
    vae_name = f"{tag}-vae.safetensors"
    vae_path = webui.dir / "models" / "VAE" / vae_name
    save_file(vae, str(vae_path))
    cleanup.append(vae_path)
    requests.post(f"{webui.url}/sdapi/v1/refresh-vae", timeout=60)
    assert requests.post(f"{webui.url}/sdapi/v1/options", json={"sd_vae": vae_name}, timeout=120).ok
    try:
        _, info = txt2img(webui, "red eyes")
        assert f"VAE: {tag}-vae" in info

        name = f"{tag}-vae-emb"
        emb_path = webui.dir / "embeddings" / f"{name}.pt"
        cleanup += [emb_path, emb_path.with_suffix(".pt.optim"), webui.dir / "textual_inversion" / name]
        run_job(webui, "create", {"kind": "embedding", "name": name, "init_text": "cat"})
        log_start = len(webui.log.read_text(errors="replace"))
        run_job(webui, "train", _train(name, "embedding", dataset, max_steps=2))
        log = webui.log.read_text(errors="replace")[log_start:]
        assert "Restoring base VAE" in log  # the WebUI's own message as it swaps the VAE out
        assert re.search(rf"with VAE: Checkpoint's own VAE, CLIP skip \d+ \({re.escape(vae_name)} is put back", log)

        _, info = txt2img(webui, "red eyes")
        assert f"VAE: {tag}-vae" in info
        assert requests.get(f"{webui.url}/sdapi/v1/options", timeout=30).json()["sd_vae"] == vae_name
    finally:
        requests.post(f"{webui.url}/sdapi/v1/options", json={"sd_vae": "Automatic"}, timeout=120)


def test_resume_a_file_the_webui_trained(webui, dataset, cleanup):
    emb_path = webui.dir / "embeddings" / "webui-made-emb.pt"
    for suffix in (".pt", ".pt.optim"):
        shutil.copy(DATA / f"webui-made-emb{suffix}", emb_path.with_suffix(suffix))
    cleanup += [emb_path, emb_path.with_suffix(".pt.optim"), webui.dir / "textual_inversion" / "webui-made-emb"]
    original = load_embedding(emb_path)
    assert original.step == 12

    log_start = len(webui.log.read_text(errors="replace"))
    run_job(webui, "train", _train("webui-made-emb", "embedding", dataset, max_steps=14))
    log = webui.log.read_text(errors="replace")[log_start:]
    assert "resuming webui-made-emb.pt at step 12 with its optimizer state" in log
    assert "does not record its CLIP skip" in log
    resumed = load_embedding(emb_path)
    assert resumed.step == 14 and resumed.name == original.name
    assert_embeddings_loaded(webui, "webui-made-emb")
    _, info = txt2img(webui, "webui-made-emb")
    assert 'TI hashes: "webui-made-emb: ' in info


def test_resume_with_another_clip_skip_is_refused_and_setting_kept(webui, tag, dataset, cleanup):
    name = f"{tag}-skip"
    emb_path = webui.dir / "embeddings" / f"{name}.pt"
    cleanup += [emb_path, emb_path.with_suffix(".pt.optim"), webui.dir / "textual_inversion" / name]
    run_job(webui, "create", {"kind": "embedding", "name": name, "init_text": "cat"})
    setting = requests.get(f"{webui.url}/sdapi/v1/options", timeout=30).json()["CLIP_stop_at_last_layers"]
    settings_file = webui.settings_file.read_bytes()
    # The setting must come back as it was, int and all, and never be saved to the settings file.
    run_job(webui, "train", _train(name, "embedding", dataset, max_steps=1, clip_skip=1))
    after = requests.get(f"{webui.url}/sdapi/v1/options", timeout=30).json()["CLIP_stop_at_last_layers"]
    assert (type(after), after) == (type(setting), setting)
    assert webui.settings_file.read_bytes() == settings_file  # lent, never saved
    status = wait_job(webui, post_job(webui, "train", _train(name, "embedding", dataset, max_steps=2, clip_skip=2)))
    assert status["state"] == "failed"
    assert "CLIP skip 1" in status["error"] and "CLIP skip 2" in status["error"]
    assert load_embedding(emb_path).step == 1
    # The training value was only lent to the WebUI: its setting is what it was.
    after = requests.get(f"{webui.url}/sdapi/v1/options", timeout=30).json()["CLIP_stop_at_last_layers"]
    assert (type(after), after) == (type(setting), setting)


def _wait_until_training(webui, job: dict) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        status = requests.get(f"{webui.url}/embed-studio/v1/jobs/{job['id']}", timeout=30).json()
        assert status["active"], status
        if status["done"] >= 1:
            return
        assert time.monotonic() < deadline, status
        time.sleep(0.2)


def test_txt2img_waits_for_training_and_cancel_releases_the_model(webui, tag, dataset, cleanup):
    name = f"{tag}-lock"
    emb_path = webui.dir / "embeddings" / f"{name}.pt"
    cleanup += [emb_path, emb_path.with_suffix(".pt.optim"), webui.dir / "textual_inversion" / name]
    run_job(webui, "create", {"kind": "embedding", "name": name, "init_text": "cat"})

    job = post_job(webui, "train", _train(name, "embedding", dataset, max_steps=40))
    _wait_until_training(webui, job)
    txt2img(webui, "red eyes")  # queued behind the training run's hold on the WebUI's GPU lock
    assert load_embedding(emb_path).step == 40, "txt2img ran while the model was lent to training"
    assert wait_job(webui, job)["state"] == "done"

    job = post_job(webui, "train", _train(name, "embedding", dataset, max_steps=500))
    _wait_until_training(webui, job)
    requests.post(f"{webui.url}/embed-studio/v1/jobs/{job['id']}/cancel", timeout=30)
    status = wait_job(webui, job)
    assert status["state"] == "cancelled"
    assert 40 < load_embedding(emb_path).step < 500  # the state at the cancel is saved
    _, info = txt2img(webui, name)  # the model is free again, with the embedding usable
    assert f'TI hashes: "{name}: ' in info


@pytest.fixture
def sd2_model(webui):
    """Switch the WebUI to a tiny SD 2.x v-prediction checkpoint (tiny-sd2*), and back to the first one after."""
    models = requests.get(f"{webui.url}/sdapi/v1/sd-models", timeout=30).json()
    sd2 = [m for m in models if m["model_name"].startswith("tiny-sd2")]
    if not sd2:
        pytest.skip("no tiny-sd2* checkpoint (with its v-prediction yaml) in SD_WEBUI_DIR/models/Stable-diffusion")
    original = requests.get(f"{webui.url}/sdapi/v1/options", timeout=30).json()["sd_model_checkpoint"]
    r = requests.post(f"{webui.url}/sdapi/v1/options", json={"sd_model_checkpoint": sd2[0]["title"]}, timeout=300)
    assert r.ok, r.text
    yield sd2[0]
    requests.post(f"{webui.url}/sdapi/v1/options", json={"sd_model_checkpoint": original}, timeout=300)


def test_sd2_v_prediction_embedding_and_hypernetwork(webui, sd2_model, tag, dataset, cleanup):
    name = f"{tag}-sd2"
    emb_path = webui.dir / "embeddings" / f"{name}.pt"
    hn_path = webui.dir / "models" / "hypernetworks" / f"{name}-hn.pt"
    cleanup += [emb_path, emb_path.with_suffix(".pt.optim"), webui.dir / "textual_inversion" / name]
    cleanup += [hn_path, hn_path.with_suffix(".pt.optim"), webui.dir / "textual_inversion" / f"{name}-hn"]

    run_job(webui, "create", {"kind": "embedding", "name": name, "init_text": "black hair", "n_vectors": 2})
    created = load_embedding(emb_path)
    before, _ = txt2img(webui, f"{name}, red eyes")
    run_job(webui, "train", _train(name, "embedding", dataset, max_steps=6, batch_size=2, lr="0.005"))
    trained = load_embedding(emb_path)
    assert trained.step == 6 and trained.sd_checkpoint_name == sd2_model["model_name"]
    assert trained.extra["embed_studio"]["prediction_type"] == "v_prediction"
    assert trained.vectors.shape == created.vectors.shape and not np.allclose(trained.vectors, created.vectors)
    assert_embeddings_loaded(webui, name)
    after, info = txt2img(webui, f"{name}, red eyes")
    assert f'TI hashes: "{name}: ' in info and not np.array_equal(before, after)

    run_job(webui, "create", {"kind": "hypernetwork", "name": f"{name}-hn", "activation_func": "relu"})
    plain, _ = txt2img(webui, "red eyes")
    run_job(webui, "train", _train(f"{name}-hn", "hypernetwork", dataset, max_steps=4, batch_size=2, lr="0.01"))
    assert load_hypernetwork(hn_path).step == 4
    with_hn, _ = txt2img(webui, f"red eyes <hypernet:{name}-hn:1>")
    assert not np.array_equal(plain, with_hn)
