"""The anchors' own training bugs (Train_Gamma and the WebUI's trainer), each a test that would catch it here."""

from __future__ import annotations

import pytest
import torch

from embed_studio.backends.base import PREVIEW_SAMPLERS, PreviewRequest
from embed_studio.backends.provider import LoadedBackendProvider
from embed_studio.errors import UserInputError
from embed_studio.formats.embedding import load_embedding, save_embedding
from embed_studio.jobs import FAILED
from embed_studio.train.create import create_embedding
from embed_studio.train.data import prepare_training_set
from embed_studio.train.job import make_train_job
from embed_studio.train.loop import train


def _new_embedding(backend, path):
    data = create_embedding(backend, path.stem, "black hair", 2)
    save_embedding(data, path)
    return data


def _moved(tmp_path, backend, make_config, name, **overrides) -> float:
    target = tmp_path / f"{name}.pt"
    initial = _new_embedding(backend, target)
    train(make_config(target, max_steps=2, seed=3, **overrides), backend)
    return float((load_embedding(target).vectors - initial.vectors).abs().max())


def test_clipping_by_norm_is_applied(tmp_path, backend, make_config):
    # Train_Gamma built the norm clipper on a branch that was never reached. AdamW divides by the gradient's
    # size, so clipping to a norm far below adam_eps must shrink the step by orders of magnitude.
    free = _moved(tmp_path, backend, make_config, "free")
    clipped = _moved(
        tmp_path, backend, make_config, "clipped", clip_grad_mode="norm", clip_grad_value="1e-12", adam_eps=1e-8
    )
    assert free > 1e-3
    assert clipped < free / 100


def test_deterministic_latents_are_not_one_random_draw(backend, dataset):
    # MonkeyPatch's "deterministic" sampled like "once". Here deterministic is the VAE mean: the seed does not
    # change it, while "once" is a seeded draw that does.
    def latents(sampling: str, seed: int):
        data = prepare_training_set(
            backend, dataset, width=64, height=64, variable_size=True, bucket_step=32, latent_sampling=sampling, seed=seed
        )  # fmt: skip
        return torch.cat([b.mean.flatten() for b in data.buckets])

    deterministic = latents("deterministic", 0)
    assert torch.equal(deterministic, latents("deterministic", 1))
    once_0, once_1 = latents("once", 0), latents("once", 1)
    assert not torch.allclose(once_0, deterministic) and not torch.allclose(once_0, once_1)


def test_embedding_template_without_name_is_a_clear_error(tmp_path, backend, make_config):
    # The WebUI's trainer died on an optimizer assertion when no prompt held the embedding.
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "no_name.txt").write_text("a photo of [filewords]\n", encoding="utf-8")
    target = tmp_path / "mychar.pt"
    _new_embedding(backend, target)
    config = make_config(target, template="no_name.txt", templates_dir=str(tmp_path / "templates"))
    with pytest.raises(UserInputError, match=r"\[name\]"):
        train(config, backend)
    assert load_embedding(target).step == 0


def test_a_failed_run_is_reported_failed_not_finished(tmp_path, backend, make_config):
    # Train_Gamma caught errors and reported "Training finished". A run with no usable image must fail, saying why.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not an image")
    (broken / "a.txt").write_text("1girl", encoding="utf-8")
    target = tmp_path / "mychar.pt"
    _new_embedding(backend, target)
    job = make_train_job(make_config(target, dataset=str(broken)), LoadedBackendProvider(backend, tmp_path))
    job.run()
    status = job.status()
    assert status.state == FAILED
    assert "a.png" in (status.error or "")


@pytest.mark.parametrize("sampler", PREVIEW_SAMPLERS)
def test_previews_render_with_each_named_sampler(backend, sampler):
    # The WebUI's preview broke when the sampler was given by name rather than by index.
    request = PreviewRequest(
        prompt="1girl", negative_prompt="", steps=2, cfg_scale=7.0, seed=1, width=64, height=64, sampler=sampler
    )
    image = backend.render_preview(request)
    assert image.size == (64, 64)
    pixels = torch.tensor(list(image.convert("L").getdata()), dtype=torch.float32)
    assert pixels.std() > 0  # an image, not a blank
