"""The training loop on tiny real diffusers models: files, resume equality, NaN handling, cancel, v-prediction."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from embed_studio.backends.provider import LoadedBackendProvider
from embed_studio.backends.standalone import StandaloneBackend
from embed_studio.errors import Cancelled
from embed_studio.formats.embedding import load_embedding, save_embedding
from embed_studio.formats.optim import load_optimizer_state
from embed_studio.train.create import create_embedding
from embed_studio.train.job import make_train_job
from embed_studio.train.loop import TrainingDiverged, train


def _new_embedding(backend, path, init="black hair", vectors=2):
    data = create_embedding(backend, path.stem, init, vectors)
    save_embedding(data, path)
    return data


def test_train_embedding_writes_everything(tmp_path, backend, make_config):
    target = tmp_path / "mychar.pt"
    initial = _new_embedding(backend, target)
    config = make_config(target, max_steps=3, save_every=2, preview_every=2, clip_skip=2)
    result = train(config, backend)

    assert result.step == 3 and result.stopped == "done"
    saved = load_embedding(target)
    assert saved.step == 3
    assert saved.vectors.shape == initial.vectors.shape
    assert not torch.equal(saved.vectors, initial.vectors)
    assert saved.extra["embed_studio"]["clip_skip"] == 2
    assert load_optimizer_state(target, saved.checksum()) is not None
    from embed_studio.formats.torchfile import webui_safe_pt_problem

    # What we write passes the WebUI's restricted unpickler (modules/safe.py).
    assert webui_safe_pt_problem(target) is None and webui_safe_pt_problem(f"{target}.optim") is None

    log_dir = tmp_path / "logs" / "mychar"
    copy = load_embedding(log_dir / "embeddings" / "mychar-2.pt")
    assert copy.step == 2 and copy.name == "mychar-2"
    assert (log_dir / "images" / "mychar-2.png").is_file()
    from_png = load_embedding(log_dir / "image_embeddings" / "mychar-2.png")
    assert torch.equal(from_png.vectors, copy.vectors)
    rows = list(csv.DictReader((log_dir / "loss.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert set(rows[0]) == {"step", "epoch", "loss", "lr", "images_per_s"}
    assert all(float(r["loss"]) > 0 and float(r["lr"]) == 0.01 for r in rows)
    assert json.loads((log_dir / "config.json").read_text())["batch_size"] == 2


def test_resume_gives_the_same_vectors_as_a_straight_run(tmp_path, backend, tiny_model, make_config):
    options = dict(grad_accum=2, latent_sampling="random", tag_dropout=0.2, template="subject_filewords.txt")
    straight, split = tmp_path / "a" / "emb.pt", tmp_path / "b" / "emb.pt"
    for path in (straight, split):
        path.parent.mkdir()
        _new_embedding(backend, path)
    train(make_config(straight, max_steps=10, **options), backend)
    train(make_config(split, max_steps=5, **options), backend)
    assert load_embedding(split).step == 5
    fresh = StandaloneBackend.load(tiny_model, "cpu")  # a new process would load afresh
    train(make_config(split, max_steps=10, **options), fresh)
    a, b = load_embedding(straight), load_embedding(split)
    assert a.step == b.step == 10
    assert torch.equal(a.vectors, b.vectors)
    rows = list(csv.DictReader((split.parent / "logs" / "emb" / "loss.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, 11))


class _NanLatents(StandaloneBackend):
    """A real backend whose VAE gives NaN for white images always and for black images in half precision."""

    def encode_images(self, pixels, exact=False):
        dist = super().encode_images(pixels, exact)
        flat = pixels.flatten(1)
        bad = flat.min(1).values > 0.99
        if not exact:
            bad |= flat.max(1).values < -0.99
        dist.mean[bad] = float("nan")
        return dist


def test_nan_latents_are_reencoded_then_skipped(tmp_path, tiny_model, dataset, make_config):
    from PIL import Image

    Image.new("RGB", (64, 64), (255, 255, 255)).save(dataset / "white.png")
    Image.new("RGB", (64, 64), (0, 0, 0)).save(dataset / "black.png")
    backend = _NanLatents.load(tiny_model, "cpu")
    target = tmp_path / "emb.pt"
    _new_embedding(backend, target)
    result = train(make_config(target, max_steps=2), backend)
    assert any("white.png" in w and "NaN" in w for w in result.warnings)
    assert not any("black.png" in w for w in result.warnings)  # recovered by the float32 retry
    assert load_embedding(target).step == 2


class _NanAfter(StandaloneBackend):
    """A real backend whose denoiser starts returning NaN at the N-th call."""

    calls = 0
    fail_at = 3

    def predict(self, noisy_latents, timesteps, cond, sizes=None):
        out = super().predict(noisy_latents, timesteps, cond, sizes)
        type(self).calls += 1
        return out * float("nan") if type(self).calls >= self.fail_at else out


def test_nan_loss_stops_and_keeps_last_good_state(tmp_path, tiny_model, make_config):
    backend = _NanAfter.load(tiny_model, "cpu")
    _NanAfter.calls = 0
    target = tmp_path / "emb.pt"
    initial = _new_embedding(backend, target)
    with pytest.raises(TrainingDiverged) as err:
        train(make_config(target, max_steps=6), backend)
    assert "step 3" in str(err.value) and "step 2" in str(err.value)
    saved = load_embedding(target)
    assert saved.step == 2
    assert torch.isfinite(saved.vectors).all() and not torch.equal(saved.vectors, initial.vectors)
    assert load_optimizer_state(target, saved.checksum()) is not None


def test_cancel_saves_the_current_state(tmp_path, backend, make_config):
    target = tmp_path / "emb.pt"
    _new_embedding(backend, target)
    job = make_train_job(make_config(target, max_steps=50), LoadedBackendProvider(backend, tmp_path))
    job.add_listener(lambda status: job.cancel() if status.done >= 2 else None)
    job.run()
    status = job.status()
    assert status.state == "cancelled" and isinstance(job.exception, Cancelled)
    assert status.stats["label"] == "step" and status.stats["loss"] > 0
    saved = load_embedding(target)
    assert saved.step == 2
    assert load_optimizer_state(target, saved.checksum()) is not None


def test_v_prediction_model_trains(tmp_path, tiny_model_v, make_config):
    backend = StandaloneBackend.load(tiny_model_v, "cpu")
    assert backend.prediction_type == "v_prediction"
    target = tmp_path / "emb.pt"
    initial = _new_embedding(backend, target)
    result = train(make_config(target, model=str(tiny_model_v), max_steps=2), backend)
    saved = load_embedding(target)
    assert saved.step == 2 and result.last_loss is not None and result.last_loss > 0
    assert saved.extra["embed_studio"]["prediction_type"] == "v_prediction"
    assert not torch.equal(saved.vectors, initial.vectors)


def test_schedule_end_and_already_trained(tmp_path, backend, make_config):
    target = tmp_path / "emb.pt"
    _new_embedding(backend, target)
    result = train(make_config(target, lr="0.01:2", max_steps=5), backend)
    assert result.step == 2 and result.stopped == "schedule-ended"
    again = train(make_config(target, lr="0.01:2", max_steps=5), backend)
    assert again.stopped == "already-trained" and again.step == 2


def test_name_that_is_a_caption_tag_warns(tmp_path, backend, make_config):
    target = tmp_path / "1girl.pt"
    _new_embedding(backend, target)
    result = train(make_config(target, max_steps=1), backend)
    assert any("already a tag" in w for w in result.warnings)


def test_bf16_and_clipping_paths_run(tmp_path, backend, make_config):
    target = tmp_path / "emb.pt"
    initial = _new_embedding(backend, target)
    train(
        make_config(
            target,
            max_steps=2,
            precision="bf16",
            clip_grad_mode="value",
            clip_grad_value="0.05",
            lr_scheduler="cosine",
            cosine_warmup_steps=1,
            gradient_checkpointing=True,
        ),
        backend,
    )
    assert next(backend.unet.parameters()).dtype == torch.bfloat16  # frozen weights stored in half
    saved = load_embedding(target)
    assert saved.vectors.dtype == torch.float32 and not torch.equal(saved.vectors, initial.vectors)


# Files the WebUI v1.10.1 itself trained (12 steps, with .optim sidecars); the formats tests keep copies.
WEBUI_FILES = Path(__file__).parents[1] / "formats" / "data"


@pytest.mark.skipif(not (WEBUI_FILES / "webui-made-emb.pt").exists(), reason="the WebUI-made fixture files are missing")
@pytest.mark.parametrize("kind, name", [("embedding", "webui-made-emb"), ("hypernetwork", "webui-made-hn")])
def test_resume_a_file_the_webui_trained(tmp_path, backend, make_config, kind, name):
    import shutil

    folder = WEBUI_FILES
    for suffix in (".pt", ".pt.optim"):
        shutil.copy(folder / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    target = tmp_path / f"{name}.pt"
    result = train(make_config(target, kind=kind, max_steps=14, lr="0.0001"), backend)
    assert result.initial_step == 12 and result.step == 14
    assert not any("optimizer starts fresh" in w for w in result.warnings)


# The team's shared fixtures lie beside the checkout (../shared), on developers' machines and in CI alike.
SHARED_TINY = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "tiny-sd1"


@pytest.mark.skipif(not SHARED_TINY.exists(), reason=f"the tiny LDM checkpoint fixture is not at {SHARED_TINY}")
def test_single_file_checkpoint_with_its_yaml(tmp_path, dataset, make_config):
    import shutil

    shutil.copy(SHARED_TINY / "tiny-sd1.safetensors", tmp_path / "tiny-sd1.safetensors")
    yaml_text = (SHARED_TINY / "tiny-sd1.yaml").read_text(encoding="utf-8")
    yaml_text = yaml_text.replace("version: ./tiny-clip", f"version: {SHARED_TINY / 'tiny-clip'}")
    (tmp_path / "tiny-sd1.yaml").write_text(yaml_text, encoding="utf-8")
    backend = StandaloneBackend.load(tmp_path / "tiny-sd1.safetensors", "cpu")
    assert backend.checkpoint_hash == "694637395a"  # the WebUI's short hash of that file
    target = tmp_path / "emb.pt"
    _new_embedding(backend, target)
    train(make_config(target, model=str(tmp_path / "tiny-sd1.safetensors"), max_steps=1), backend)
    saved = load_embedding(target)
    assert saved.step == 1 and saved.sd_checkpoint == "694637395a" and saved.sd_checkpoint_name == "tiny-sd1"


def test_alpha_channel_as_loss_weight(tmp_path, backend, dataset, make_config):
    from PIL import Image

    from embed_studio.train.data import alpha_weight

    rgba = Image.new("RGBA", (64, 64), (200, 10, 10, 0))
    rgba.paste((200, 10, 10, 255), (0, 0, 32, 64))  # left half opaque
    rgba.save(dataset / "cutout.png")
    weight = alpha_weight(dataset / "cutout.png", (64, 64), 8)
    assert weight.shape == (1, 8, 8)
    assert weight[0, :, :3].min() > 1.5 and weight[0, :, 5:].max() == 0
    assert weight.mean().item() == pytest.approx(1.0)
    # Training on that one image: with the weight, the transparent half adds nothing to the loss, so the
    # step differs from one without it (same seed, same start, same noise).
    alone = tmp_path / "alone"
    alone.mkdir()
    (dataset / "cutout.png").rename(alone / "cutout.png")
    (alone / "cutout.txt").write_text("1girl, red eyes", encoding="utf-8")
    trained = {}
    for use in (True, False):
        target = tmp_path / f"emb-{use}.pt"
        _new_embedding(backend, target)
        train(make_config(target, dataset=str(alone), max_steps=2, batch_size=1, use_alpha_weight=use), backend)
        trained[use] = load_embedding(target)
    assert trained[True].step == 2
    assert not torch.allclose(trained[True].vectors, trained[False].vectors, atol=1e-7)


def test_sd2_shaped_v_prediction_model(tmp_path_factory, dataset, make_config):
    from tiny_sd import build_tiny_sd

    folder = build_tiny_sd(tmp_path_factory.mktemp("tiny-sd2"), "v_prediction", family="sd2")
    backend = StandaloneBackend.load(folder, "cpu")
    assert backend.family == "sd2" and backend.token_dim == 1024 and backend.prediction_type == "v_prediction"
    assert 1024 in backend.context_sizes
    assert backend.tokenize("smile").chunks[0][-2] == backend.tokenizer.convert_tokens_to_ids("!")  # SD2 pads with "!"
    target = tmp_path_factory.mktemp("sd2-out") / "emb.pt"
    initial = _new_embedding(backend, target)
    train(make_config(target, model=str(folder), max_steps=2), backend)
    saved = load_embedding(target)
    assert saved.vectors.shape == (2, 1024) and saved.step == 2
    assert saved.extra["embed_studio"]["model_family"] == "sd2"
    assert not torch.equal(saved.vectors, initial.vectors)
