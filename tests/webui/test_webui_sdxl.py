"""In the real WebUI on a tiny SDXL checkpoint (tests/webui/tiny_sdxl/build.py): the SDXL embedding files we write
load and act in txt2img; create and train an SDXL embedding on the WebUI's model, then use it; the SD 1.x model
is switched back afterwards and still works."""

from __future__ import annotations

import shutil
import uuid

import numpy as np
import pytest
import requests
import torch
from webui_helpers import run_job, txt2img, write_mixed_aspect_dataset

from embed_studio.formats.embedding import EmbeddingData, save_embedding

pytestmark = pytest.mark.webui


@pytest.fixture(scope="class")
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


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_mixed_aspect_dataset(tmp_path_factory.mktemp("xl-dataset"))


class TestOnTheSDXLModel:
    """Switched to the tiny SDXL checkpoint once for the class, and back after it."""

    def test_sdxl_embedding_file_loads_and_acts(self, webui, sdxl_model):
        name = "es-xl-" + uuid.uuid4().hex[:6]
        path = webui.dir / "embeddings" / f"{name}.safetensors"
        torch.manual_seed(0)
        data = EmbeddingData(name, torch.randn(2, 2048) * 0.5, step=40, sd_checkpoint="0123456789",
                             sd_checkpoint_name="tiny-sdxl", extra={"embed_studio": {"clip_skip": 1}})  # fmt: skip
        try:
            before, _ = txt2img(webui, f"{name}, red eyes")
            save_embedding(data, path)
            requests.post(f"{webui.url}/sdapi/v1/refresh-embeddings", timeout=60)
            listed = requests.get(f"{webui.url}/sdapi/v1/embeddings", timeout=30).json()
            assert name in listed["loaded"], listed
            # The WebUI counts both encoders' widths together and the vectors per token.
            assert listed["loaded"][name]["shape"] == 2048 and listed["loaded"][name]["vectors"] == 2
            txt2img(webui, "red eyes")  # the WebUI keeps the last prompt's conditioning: make it forget `before`'s
            after, info = txt2img(webui, f"{name}, red eyes")
            assert f'TI hashes: "{name}: ' in info
            assert not np.array_equal(before, after), "txt2img did not pick up the SDXL vectors"

        finally:
            path.unlink(missing_ok=True)
            requests.post(f"{webui.url}/sdapi/v1/refresh-embeddings", timeout=60)

    def test_create_and_train_an_sdxl_embedding_in_the_webui(self, webui, sdxl_model, dataset):
        from embed_studio.formats.embedding import load_embedding

        name = "es-xl-" + uuid.uuid4().hex[:6]
        path = webui.dir / "embeddings" / f"{name}.safetensors"
        cleanup = [path, path.with_name(path.name + ".optim"), webui.dir / "textual_inversion" / name]
        try:
            run_job(webui, "create", {"kind": "embedding", "name": name, "init_text": "red eyes", "n_vectors": 2})
            created = load_embedding(path)
            assert created.is_sdxl and created.n_vectors == 2 and created.step == 0
            before, _ = txt2img(webui, f"{name}, red eyes")
            status = run_job(webui, "train", {
                "kind": "embedding", "target": name, "dataset": str(dataset), "width": 64, "height": 64,
                "bucket_step": 32, "grad_accum": 1, "save_every": 0, "preview_every": 20, "preview_steps": 2, "seed": 3,
                "max_steps": 20, "batch_size": 2, "lr": "0.01",
            })  # fmt: skip
            # The preview is drawn by the WebUI's own txt2img on SDXL with the step-20 vectors.
            assert any(p.endswith(f"{name}-20.png") for p in status["images"]), status
            trained = load_embedding(path)
            # The WebUI's short hash of the loaded checkpoint (the model list has none until it was computed once).
            loaded = requests.get(f"{webui.url}/sdapi/v1/options", timeout=30).json()["sd_checkpoint_hash"]
            assert trained.step == 20 and loaded and trained.sd_checkpoint == loaded[:10]
            assert trained.extra["embed_studio"]["model_family"] == "sdxl"
            assert torch.isfinite(trained.vectors).all() and not torch.allclose(trained.vectors, created.vectors)
            listed = requests.get(f"{webui.url}/sdapi/v1/embeddings", timeout=30).json()
            assert listed["loaded"][name]["step"] is None or listed["loaded"][name]["step"] == 20
            assert listed["loaded"][name]["shape"] == 2048
            after, info = txt2img(webui, f"{name}, red eyes")
            assert f'TI hashes: "{name}: ' in info
            assert not np.array_equal(before, after), "txt2img did not pick up the trained vectors"
        finally:
            for p in cleanup:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            requests.post(f"{webui.url}/sdapi/v1/refresh-embeddings", timeout=60)


def test_sd1_works_after_the_sdxl_switch(webui):
    options = requests.get(f"{webui.url}/sdapi/v1/options", timeout=30).json()
    assert "tiny-sdxl" not in options["sd_model_checkpoint"]
    image, _ = txt2img(webui, "red eyes")
    assert image.shape == (64, 64, 3)


def test_the_webuis_own_sdxl_file_trains_standalone(sd_webui_dir, dataset, tmp_path, monkeypatch, capsys):
    """The tiny SDXL checkpoint the WebUI loads (written by its own sgm code, not by our converter) is a model for
    the standalone trainer as it lies: the sgm yaml beside it gives the shapes, its CLIP-L folder the tokenizer,
    and nothing is downloaded. Create, train 2 steps, resume to 3 through the CLI."""
    import hashlib

    import safetensors.torch

    from embed_studio.cli import main
    from embed_studio.formats.embedding import load_embedding

    checkpoint = sd_webui_dir / "models" / "Stable-diffusion" / "tiny-sdxl.safetensors"
    if not checkpoint.is_file():
        pytest.skip("no tiny-sdxl checkpoint: build it with tests/webui/tiny_sdxl/build.py")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb_dir = tmp_path / "embeddings"
    create = ["create", "embedding", "xlfile", "--model", str(checkpoint), "--init-text", "red eyes",
              "--vectors", "2", "--dir", str(emb_dir)]  # fmt: skip
    assert main(create) == 0, capsys.readouterr().err
    path = emb_dir / "xlfile.safetensors"
    start = safetensors.torch.load_file(str(path))
    assert start["clip_l"].shape == (2, 768) and start["clip_g"].shape == (2, 1280)

    def train(steps: int) -> None:
        args = ["train", "embedding", "--model", str(checkpoint), "--dataset", str(dataset), "--name", "xlfile",
                "--dir", str(emb_dir), "--log-dir", str(tmp_path / "logs"), "--lr", "0.05", "--steps", str(steps),
                "--batch-size", "2", "--width", "64", "--height", "64", "--bucket-step", "32", "--save-every", "0",
                "--preview-every", "0"]  # fmt: skip
        assert main(args) == 0, capsys.readouterr().err

    train(2)
    trained = load_embedding(path)
    assert trained.step == 2 and trained.sd_checkpoint_name == "tiny-sdxl"
    assert trained.sd_checkpoint == hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:10]  # the WebUI's hash
    after = safetensors.torch.load_file(str(path))
    assert not torch.equal(after["clip_l"], start["clip_l"]) and not torch.equal(after["clip_g"], start["clip_g"])
    capsys.readouterr()
    train(3)
    assert "resuming xlfile.safetensors at step 2" in capsys.readouterr().err
    assert load_embedding(path).step == 3
