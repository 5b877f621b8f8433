"""The options beyond the WebUI's trainer act as they should: prompts, augmentation, loss weights, optimizers, files."""

from __future__ import annotations

import csv
import random
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from embed_studio.backends.standalone import StandaloneBackend
from embed_studio.errors import UserInputError
from embed_studio.formats.embedding import load_embedding, save_embedding
from embed_studio.train.create import create_embedding
from embed_studio.train.loop import train
from embed_studio.train.prompts import PromptOptions, build_prompt


class _Recording(StandaloneBackend):
    """A real backend that notes the prompts, timesteps and noisy latents it is given, and counts VAE encodes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.texts, self.timesteps, self.noisy, self.encodes = [], [], [], 0

    def tokenize(self, text, trigger=None, n_vectors=0):
        self.texts.append(text)
        return super().tokenize(text, trigger, n_vectors)

    def predict(self, noisy_latents, timesteps, cond, sizes=None):
        self.timesteps.append(timesteps.detach().clone())
        self.noisy.append(noisy_latents.detach().clone())
        return super().predict(noisy_latents, timesteps, cond)

    def encode_images(self, pixels, exact=False):
        self.encodes += 1
        return super().encode_images(pixels, exact)


@pytest.fixture
def run(tmp_path, tiny_model, make_config):
    """Train a fresh 2-vector embedding with some options; returns (vectors, first logged loss, backend)."""
    counter = iter(range(100))

    def _run(**options):
        backend = _Recording.load(tiny_model, "cpu")
        target = tmp_path / f"run{next(counter)}" / "emb.pt"
        target.parent.mkdir()
        save_embedding(create_embedding(backend, "emb", "black hair", 2), target)
        options.setdefault("max_steps", 2)
        config = make_config(target, **options)
        result = train(config, backend)
        rows = list(csv.DictReader((config.log_path / "loss.csv").open()))
        return load_embedding(target).vectors, float(rows[0]["loss"]), backend, result

    return _run


# -- captions ------------------------------------------------------------------------------------------------------
def test_caption_dropout_leaves_the_name_alone():
    always = PromptOptions(caption_dropout=0.999999)
    assert build_prompt("[filewords], [name]", "a, b", "foo", always, random.Random(0)) == "foo"
    assert build_prompt("[name], [filewords]", "a, b", "foo", always, random.Random(0)) == "foo"
    half = PromptOptions(caption_dropout=0.5)
    made = {build_prompt("[filewords], [name]", "a, b", "foo", half, random.Random(i)) for i in range(40)}
    assert made == {"foo", "a, b, foo"}


def test_token_warmup_grows_the_caption_like_kohya():
    options = PromptOptions(token_warmup_min=1, token_warmup_step=10)
    caption = "t1, t2, t3, t4, t5"

    def tags(step):
        return build_prompt("[filewords]", caption, "x", options, random.Random(0), step).split(", ")

    assert tags(0) == ["t1"]
    assert tags(5) == ["t1", "t2", "t3"]  # floor(5 * (5 - 1) / 10) + 1
    assert tags(10) == tags(99) == ["t1", "t2", "t3", "t4", "t5"]
    kept = PromptOptions(keep_first_tags=1, token_warmup_min=0, token_warmup_step=4)
    assert build_prompt("[filewords]", caption, "x", kept, random.Random(0), 0) == "t1"


def test_token_warmup_reaches_the_training_prompts(run):
    *_, backend, _ = run(token_warmup_min=1, token_warmup_step=100, shuffle_tags=False, max_steps=2)
    prompts = [t for t in backend.texts if t.endswith(", emb")]
    assert prompts and all(t.count(",") == 1 for t in prompts)  # one tag, then the name
    *_, plain, _ = run(shuffle_tags=False, max_steps=2)
    assert any(t.count(",") > 1 for t in plain.texts)


# -- augmentation --------------------------------------------------------------------------------------------------
def test_flip_encodes_mirrors_and_uses_them(backend, dataset):
    from embed_studio.train.data import prepare_training_set

    data = prepare_training_set(
        backend, dataset, width=64, height=64, variable_size=False, bucket_step=32,
        latent_sampling="deterministic", seed=0, flip=True,
    )  # fmt: skip
    bucket = data.buckets[0]
    # The cached mirror is the encoding of the mirrored image, not a mirrored latent.
    first = load_like_cache(bucket.paths[0])
    mirrored = backend.encode_images(first.flip(-1)).mean[0]
    assert torch.allclose(bucket.flipped_mean[0], mirrored, atol=1e-5)
    assert not torch.allclose(bucket.flipped_mean[0], bucket.mean[0])
    g = torch.Generator().manual_seed(0)
    picked = data.latents(0, [0, 1], g, flips=[True, False])
    assert torch.equal(picked[0], bucket.flipped_mean[0]) and torch.equal(picked[1], bucket.mean[1])


def load_like_cache(path):
    from embed_studio.dataset.buckets import fit_to_bucket
    from embed_studio.dataset.imageio import load_rgb

    image = fit_to_bucket(load_rgb(path), (64, 64))
    return torch.from_numpy(np.asarray(image, np.float32)).permute(2, 0, 1).unsqueeze(0) / 127.5 - 1.0


def test_flip_changes_training_and_is_reproducible(run):
    plain, *_ = run()
    flipped, *_ = run(flip_augment=True)
    again, *_ = run(flip_augment=True)
    assert not torch.equal(plain, flipped)
    assert torch.equal(flipped, again)


def test_color_jitter_varies_pixels_within_range():
    from embed_studio.train.augment import color_jitter

    pixels = torch.rand(2, 3, 8, 8) * 2 - 1
    assert torch.equal(color_jitter(pixels, 0.0, torch.Generator().manual_seed(0)), pixels)
    a = color_jitter(pixels, 0.3, torch.Generator().manual_seed(0))
    b = color_jitter(pixels, 0.3, torch.Generator().manual_seed(0))
    c = color_jitter(pixels, 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.allclose(a, pixels)
    assert a.min() >= -1 and a.max() <= 1


def test_color_jitter_reencodes_every_step(run):
    plain, _, plain_backend, _ = run(max_steps=2)
    jittered, _, backend, _ = run(color_jitter=0.3, max_steps=2)
    assert backend.encodes > plain_backend.encodes  # one VAE call per micro-batch on top of the cache
    assert not torch.equal(plain, jittered)


# -- loss ----------------------------------------------------------------------------------------------------------
def test_loss_mask_weights_the_loss(run, dataset, backend):
    from embed_studio.train.data import prepare_training_set

    masks = dataset / "masks"
    masks.mkdir()
    for image in sorted(dataset.glob("*.png")):
        Image.new("L", Image.open(image).size, 255).save(masks / f"{image.stem}.png")
    _, plain_loss, *_ = run()
    _, white_loss, *_ = run(loss_mask_dir="masks")
    assert white_loss == pytest.approx(plain_loss, rel=1e-5)  # an all-white mask is weight 1 everywhere
    for image in sorted(dataset.glob("*.png")):
        w, h = Image.open(image).size
        mask = Image.new("L", (w, h), 0)
        mask.paste(255, (0, 0, w // 2, h))  # learn the left half only
        mask.save(masks / f"{image.stem}.png")
    _, half_loss, *_ = run(loss_mask_dir="masks")
    assert half_loss != pytest.approx(plain_loss, rel=1e-3)
    data = prepare_training_set(
        backend, dataset, width=64, height=64, variable_size=False, bucket_step=32,
        latent_sampling="deterministic", seed=0, mask_dir=masks,
    )  # fmt: skip
    weight = data.buckets[0].weight
    assert weight[:, 0, :, :3].min() > 1.5 and weight[:, 0, :, 5:].max() == 0
    Image.new("L", (8, 8), 0).save(masks / "img0.png")
    data = prepare_training_set(
        backend, dataset, width=64, height=64, variable_size=False, bucket_step=32,
        latent_sampling="deterministic", seed=0, mask_dir=masks,
    )  # fmt: skip
    assert len(data) == 5 and "img0.png" in data.skipped[0] and "all black" in data.skipped[0]


def test_noise_offset_shifts_each_channel(run):
    *_, plain, _ = run(max_steps=1)
    *_, offset, _ = run(max_steps=1, noise_offset=0.5)
    assert torch.equal(plain.timesteps[0], offset.timesteps[0])  # the other draws stay as they were
    diff = offset.noisy[0] - plain.noisy[0]
    flat = diff.flatten(2)
    assert flat.abs().max() > 1e-3
    assert torch.allclose(flat, flat[..., :1].expand_as(flat), atol=1e-5)  # one constant per image and channel


def test_timestep_weights():
    from embed_studio.train.losses import timestep_weights

    snr = torch.tensor([0.5, 10.0])
    assert timestep_weights(snr, "epsilon") is None
    eps = timestep_weights(snr, "epsilon", min_snr_gamma=5)
    assert torch.allclose(eps, torch.tensor([1.0, 0.5]))
    v = timestep_weights(snr, "v_prediction", min_snr_gamma=5)
    assert torch.allclose(v, torch.tensor([0.5 / 1.5, 5 / 11]))
    like_eps = timestep_weights(snr, "v_prediction", v_like_eps=True)
    assert torch.allclose(like_eps, snr / (snr + 1))
    assert timestep_weights(snr, "epsilon", v_like_eps=True) is None
    assert torch.allclose(timestep_weights(snr, "epsilon", debiased=True), 1 / snr.sqrt())


def test_min_snr_scales_the_training_loss(run):
    _, plain, *_ = run(max_steps=1)
    _, huge_gamma, *_ = run(max_steps=1, min_snr_gamma=1e9)
    _, small_gamma, *_ = run(max_steps=1, min_snr_gamma=0.001)
    assert huge_gamma == pytest.approx(plain, rel=1e-5)  # min(SNR, gamma)/SNR = 1
    assert small_gamma < plain * 0.5


def test_v_prediction_scaling_acts_on_v_models_only(tmp_path, tiny_model_v, make_config, run):
    _, eps_plain, *_ = run(max_steps=1)
    _, eps_scaled, *_ = run(max_steps=1, v_pred_like_eps_loss=True)
    assert eps_scaled == eps_plain
    losses = []
    for i, scaled in enumerate((False, True)):
        backend = StandaloneBackend.load(tiny_model_v, "cpu")
        target = tmp_path / f"v{i}" / "emb.pt"
        target.parent.mkdir()
        save_embedding(create_embedding(backend, "emb", "black hair", 2), target)
        config = make_config(target, model=str(tiny_model_v), max_steps=1, v_pred_like_eps_loss=scaled)
        losses.append(train(config, backend).last_loss)
    assert losses[1] < losses[0]  # SNR/(SNR+1) < 1


def test_timestep_range_bounds_the_drawn_timesteps(run):
    *_, backend, _ = run(max_steps=3, min_timestep=200, max_timestep=260)
    drawn = torch.cat(backend.timesteps)
    assert drawn.min() >= 200 and drawn.max() < 260
    with pytest.raises(UserInputError, match="Timestep range"):
        run(min_timestep=500, max_timestep=500)


# -- optimizers, weight decay, files ---------------------------------------------------------------------------------
LION = '''
import torch


class Lion(torch.optim.Optimizer):
    """The Lion update (Chen et al. 2023), as lion-pytorch ships it."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.mul_(1 - group["lr"] * group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                b1, b2 = group["betas"]
                update = state["exp_avg"] * b1 + p.grad * (1 - b1)
                p.add_(update.sign(), alpha=-group["lr"])
                state["exp_avg"].mul_(b2).add_(p.grad, alpha=1 - b2)
'''


def test_missing_optimizer_package_says_what_to_install(tmp_path, make_config):
    from embed_studio.train.optimizers import optimizer_available

    if optimizer_available("prodigy"):
        pytest.skip("prodigyopt is installed here")
    with pytest.raises(UserInputError, match="pip install prodigyopt"):
        make_config(tmp_path / "emb.pt", optimizer="prodigy").validate()
    with pytest.raises(UserInputError, match="not one of"):
        make_config(tmp_path / "emb.pt", optimizer="sgd").validate()


def test_an_installed_optimizer_is_used(tmp_path, monkeypatch, backend, make_config):
    from embed_studio.formats.optim import read_optimizer_file

    package = tmp_path / "site"
    package.mkdir()
    (package / "lion_pytorch.py").write_text(LION, encoding="utf-8")
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.delitem(sys.modules, "lion_pytorch", raising=False)
    target = tmp_path / "emb.pt"
    initial = create_embedding(backend, "emb", "black hair", 2)
    save_embedding(initial, target)
    train(make_config(target, optimizer="lion", lr="0.01", max_steps=1, weight_decay=0.0), backend)
    moved = (load_embedding(target).vectors - initial.vectors).abs()
    assert torch.allclose(moved, torch.full_like(moved, 0.01), atol=1e-6)  # Lion moves every value by exactly lr
    saved = read_optimizer_file(target)
    assert saved["hash"].endswith(":lion")  # neither the WebUI nor an AdamW run would load this state
    result = train(make_config(target, max_steps=2), backend)
    assert any("optimizer starts fresh" in w for w in result.warnings)
    monkeypatch.delitem(sys.modules, "lion_pytorch", raising=False)


def test_weight_decay_never_touches_the_token_table(run, tiny_model):
    plain, *_ = run(weight_decay=0.0, max_steps=2)
    decayed, _, backend, _ = run(weight_decay=5.0, max_steps=2)
    assert decayed.norm() < plain.norm()  # it acts on the trained vectors...
    table = backend.text_encoder.get_input_embeddings().weight
    fresh = StandaloneBackend.load(tiny_model, "cpu").text_encoder.get_input_embeddings().weight
    assert torch.equal(table, fresh)  # ...and never on the model's token table


def test_safetensors_copies(tmp_path, run):
    vectors, *_, result = run(save_safetensors=True, save_every=2, max_steps=3)
    log = tmp_path / "run0" / "logs" / "emb"
    copy = load_embedding(log / "embeddings" / "emb-2.safetensors")
    assert torch.equal(copy.vectors, load_embedding(log / "embeddings" / "emb-2.pt").vectors) and copy.step == 2
    final = load_embedding(log / "emb.safetensors")
    assert torch.equal(final.vectors, vectors) and final.step == 3
    assert not (tmp_path / "run0" / "emb.safetensors").exists()  # the WebUI would load the name twice


# -- where users set them ------------------------------------------------------------------------------------------
def test_cli_flags_reach_the_run(tmp_path, tiny_model, dataset, backend, capsys):
    import json

    from embed_studio.cli import main

    emb_dir = tmp_path / "embeddings"
    emb_dir.mkdir()
    save_embedding(create_embedding(backend, "mychar", "red eyes", 2), emb_dir / "mychar.pt")
    common = ["train", "embedding", "--model", str(tiny_model), "--dataset", str(dataset), "--name", "mychar"]
    common += ["--dir", str(emb_dir), "--width", "64", "--height", "64", "--bucket-step", "32", "--steps", "1"]
    common += ["--log-dir", str(tmp_path / "logs"), "--save-every", "0", "--preview-every", "0"]
    with pytest.raises(SystemExit):
        main([*common, "--optimizer", "sgd"])
    assert "invalid choice: 'sgd'" in capsys.readouterr().err
    flags = ["--flip-augment", "--min-snr-gamma", "5", "--max-timestep", "900", "--on-validation-rise", "rollback"]
    assert main([*common, *flags]) == 0
    saved = json.loads((tmp_path / "logs" / "config.json").read_text())
    assert (saved["flip_augment"], saved["min_snr_gamma"], saved["max_timestep"]) == (True, 5.0, 900)
    assert saved["on_validation_rise"] == "rollback"


def test_form_values_become_the_options(tmp_path, dataset):
    from embed_studio.backends.provider import StandaloneProvider
    from embed_studio.ui import train_form as form

    provider = StandaloneProvider(tmp_path / "out")
    provider.embeddings_dir.mkdir(parents=True)
    (provider.embeddings_dir / "mychar.pt").write_bytes(b"x")
    (tmp_path / "model").mkdir()
    values = {name: form.default(name) for name in form.form_fields()}
    values.update(caption_dropout="0.1", token_warmup_step=50.0, color_jitter=0.2, optimizer="adamw", noise_offset=0.05)
    config, _ = form.build_config(
        provider, kind="embedding", model_path=str(tmp_path / "model"), dataset=str(dataset), target="mychar",
        vae=None, values=values,
    )  # fmt: skip
    assert (config.caption_dropout, config.token_warmup_step, config.color_jitter) == (0.1, 50, 0.2)
    values.update(noise_offset=2)
    with pytest.raises(UserInputError, match="Noise offset 2"):
        form.build_config(
            provider, kind="embedding", model_path=str(tmp_path / "model"), dataset=str(dataset), target="mychar",
            vae=None, values=values,
        )  # fmt: skip


def test_resume_with_every_option_equals_a_straight_run(tmp_path, backend, tiny_model, make_config):
    options = dict(
        grad_accum=2, flip_augment=True, color_jitter=0.2, noise_offset=0.1, min_snr_gamma=5.0, caption_dropout=0.3,
        token_warmup_step=3, min_timestep=100, max_timestep=900, latent_sampling="random", debiased_loss=True,
    )  # fmt: skip
    straight, split = tmp_path / "a" / "emb.pt", tmp_path / "b" / "emb.pt"
    for path in (straight, split):
        path.parent.mkdir()
        save_embedding(create_embedding(backend, "emb", "black hair", 2), path)
    train(make_config(straight, max_steps=4, **options), backend)
    train(make_config(split, max_steps=2, **options), backend)
    train(make_config(split, max_steps=4, **options), StandaloneBackend.load(tiny_model, "cpu"))
    assert torch.equal(load_embedding(straight).vectors, load_embedding(split).vectors)


def test_tensorboard_scalars(tmp_path, run, make_config):
    from embed_studio.train.scalars import tensorboard_available

    if not tensorboard_available():
        with pytest.raises(UserInputError, match="pip install tensorboard"):
            make_config(tmp_path / "emb.pt", tensorboard=True).validate()
        return
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    *_, result = run(tensorboard=True, max_steps=2, validation_split=0.34, validation_every=1)
    events = EventAccumulator(str(tmp_path / "run0" / "logs" / "emb" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "lr", "param_norm", "validation_loss"} <= tags
    assert [e.step for e in events.Scalars("loss")] == [1, 2]
    assert events.Scalars("validation_loss")[-1].value == pytest.approx(result.validation_loss, rel=1e-5)
