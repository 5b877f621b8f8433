"""SDXL in the standalone backend: the diffusers SDXL parts, the WebUI's conditioning, the CLI end to end, resume;
and models the trainer cannot handle refused by name."""

import json

import pytest
import safetensors.torch
import torch
from PIL import Image

from embed_studio.backends.base import Backend
from embed_studio.cli import main
from embed_studio.errors import FileFormatError, UserInputError
from embed_studio.formats.embedding import load_embedding


@pytest.fixture(scope="module")
def xl(tiny_sdxl):
    from embed_studio.backends.standalone import StandaloneBackend

    return StandaloneBackend.load(tiny_sdxl, "cpu")


def test_sdxl_folder_loads_as_a_two_encoder_backend(xl):
    assert isinstance(xl, Backend)
    assert xl.family == "sdxl" and xl.token_dim == 768 + 1280 and xl.default_size == 1024


def test_conditioning_matches_the_diffusers_sdxl_pipeline(xl, tiny_sdxl):
    """Without emphasis or vectors our conditioning is SDXL's own: penultimate layers of both encoders side by
    side, OpenCLIP-G's pooled output, G padded with '!' after its end token."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    prompt = "a photo of the black cat"
    embeds, _, pooled, _ = pipe.encode_prompt(prompt, device="cpu", do_classifier_free_guidance=False)
    ours = xl.encode_prompts([xl.tokenize(prompt)])
    assert ours.context.shape == embeds.shape == (1, 77, 2048)
    torch.testing.assert_close(ours.context, embeds)
    torch.testing.assert_close(ours.pooled, pooled)


def test_vectors_reach_both_encoders_and_the_pooled_output(xl):
    tokens = [xl.tokenize("a photo of xlchar", "xlchar", 2)]
    vectors = torch.zeros(2, 2048, requires_grad=True)
    cond = xl.encode_prompts(tokens, vectors)
    (cond.context.square().mean() + cond.pooled.square().mean()).backward()
    assert vectors.grad[:, :768].abs().sum() > 0 and vectors.grad[:, 768:].abs().sum() > 0
    # Only G's vectors reach the pooled output (SDXL pools OpenCLIP-G alone).
    vectors.grad = None
    xl.encode_prompts(tokens, vectors).pooled.sum().backward()
    assert vectors.grad[:, :768].abs().sum() == 0 and vectors.grad[:, 768:].abs().sum() > 0


def test_size_conditioning_reaches_the_unet(xl):
    from embed_studio.backends.base import SizeCond

    torch.manual_seed(0)
    latents = torch.randn(1, 4, 8, 8)
    cond = xl.encode_prompts([xl.tokenize("a cat")])
    t = torch.tensor([500])
    plain = xl.predict(latents, t, cond)
    same = xl.predict(latents, t, cond, [SizeCond((64, 64), (0, 0), (64, 64))])
    cropped = xl.predict(latents, t, cond, [SizeCond((200, 64), (68, 0), (64, 64))])
    torch.testing.assert_close(plain, same)  # no sizes = the latents' own size, uncropped
    assert not torch.allclose(plain, cropped)


def test_training_set_records_original_size_and_crop_per_image(xl, tmp_path):
    from embed_studio.backends.base import SizeCond
    from embed_studio.train.data import prepare_training_set

    Image.new("RGB", (200, 100), "red").save(tmp_path / "wide.png")
    Image.new("RGB", (64, 64), "blue").save(tmp_path / "square.png")
    data = prepare_training_set(
        xl, tmp_path, width=64, height=64, variable_size=False, bucket_step=32, latent_sampling="deterministic", seed=0
    )
    sizes = {p.name: s for b in data.buckets for p, s in zip(b.paths, b.sizes, strict=True)}
    # 200x100 covers 64x64 at 128x64: 32 px cut from the left; sizes are (height, width), crops (top, left).
    assert sizes["wide.png"] == SizeCond((100, 200), (0, 32), (64, 64))
    assert sizes["square.png"] == SizeCond((64, 64), (0, 0), (64, 64))


def test_sdxl_vae_encodes_in_fp32_whatever_the_precision(xl):
    before = {k: v.clone() for k, v in xl.vae.state_dict().items()}
    xl.configure("bf16")
    try:
        # Never cast down on the way either: the weights are exactly what they were, not rounded to bf16.
        assert all(torch.equal(before[k], v) for k, v in xl.vae.state_dict().items())
        assert next(xl.vae.parameters()).dtype == torch.float32
        assert next(xl.unet.parameters()).dtype == torch.bfloat16
        latents = xl.encode_images(torch.rand(1, 3, 64, 64) * 2 - 1)
        assert latents.mean.dtype == torch.float32 and torch.isfinite(latents.mean).all()
    finally:
        xl.configure("fp32")


def test_init_text_goes_through_both_tokenizers_and_too_long_is_refused(xl):
    from embed_studio.train.create import create_embedding

    data = create_embedding(xl, "xlchar", "red eyes", 4)
    emb_l = xl.text_encoder.get_input_embeddings().weight
    emb_g = xl.text_encoder_2.get_input_embeddings().weight
    red = xl.tokenizer("red", add_special_tokens=False).input_ids[0]
    torch.testing.assert_close(data.vectors[0], torch.cat([emb_l[red], emb_g[red]]))
    with pytest.raises(UserInputError, match="needs 5 tokens"):
        create_embedding(xl, "xlchar", "black hair, red eyes", 2)


def _train_args(model, dataset, emb_dir, steps):
    return ["train", "embedding", "--model", str(model), "--dataset", str(dataset), "--name", "xlchar",
            "--dir", str(emb_dir), "--log-dir", str(emb_dir.parent / "logs"), "--lr", "0.05", "--steps", str(steps), "--batch-size", "2", "--width", "64",
            "--height", "64", "--bucket-step", "32", "--save-every", "1", "--preview-every", "0"]  # fmt: skip


def test_cli_create_train_and_resume_on_sdxl(tmp_path, tiny_sdxl, dataset, capsys):
    emb_dir = tmp_path / "embeddings"
    create = ["create", "embedding", "xlchar", "--model", str(tiny_sdxl), "--init-text", "red eyes",
              "--vectors", "2", "--dir", str(emb_dir), "--clip-skip", "2"]  # fmt: skip
    assert main(create) == 0
    path = emb_dir / "xlchar.safetensors"
    raw = safetensors.torch.load_file(str(path))
    assert sorted(raw) == ["clip_g", "clip_l"] and raw["clip_l"].shape == (2, 768) and raw["clip_g"].shape == (2, 1280)
    start = load_embedding(path)
    assert start.step == 0 and start.extra["embed_studio"]["model_family"] == "sdxl"
    assert main(["create", "embedding", "other", "--model", str(tiny_sdxl), "--init-text", "black hair, red eyes",
                 "--vectors", "1", "--dir", str(emb_dir)]) == 1  # fmt: skip
    assert "needs 5 tokens" in capsys.readouterr().err

    assert main(_train_args(tiny_sdxl, dataset, emb_dir, 2) + ["--preview-every", "2", "--preview-steps", "2"]) == 0
    # The preview is drawn with the SDXL pipeline and carries the two tensors the WebUI can read back.
    from embed_studio.formats.png_embed import read_image_embedding

    preview = emb_dir.parent / "logs" / "image_embeddings" / "xlchar-2.png"
    assert (emb_dir.parent / "logs" / "images" / "xlchar-2.png").is_file()
    assert sorted(read_image_embedding(preview)) == ["clip_g", "clip_l"]
    trained = load_embedding(path)
    assert trained.step == 2 and not torch.equal(trained.vectors, start.vectors)
    assert torch.isfinite(trained.vectors).all()
    assert (emb_dir / "xlchar.safetensors.optim").is_file()
    capsys.readouterr()

    assert main(_train_args(tiny_sdxl, dataset, emb_dir, 4)) == 0
    err = capsys.readouterr().err
    assert "resuming xlchar.safetensors at step 2 with its optimizer state" in err
    resumed = load_embedding(path)
    assert resumed.step == 4 and not torch.equal(resumed.vectors, trained.vectors)
    copies = sorted(p.name for p in (emb_dir.parent / "logs").rglob("xlchar-*") if p.suffix in (".pt", ".safetensors"))
    assert copies == ["xlchar-1.safetensors", "xlchar-3.safetensors"]  # the copies are SDXL files too


def test_cli_defaults_sdxl_buckets_to_1024(tiny_sdxl, tiny_model):
    import argparse

    from embed_studio.commands import train as train_cmd

    parser = argparse.ArgumentParser()
    train_cmd.register(parser.add_subparsers())
    for model, side in ((tiny_sdxl, 1024), (tiny_model, 512)):
        args = parser.parse_args(["train", "embedding", "--model", str(model), "--dataset", "d", "--name", "n"])
        config = train_cmd._config_from_args(args)
        assert (config.width, config.height) == (side, side)
    args = parser.parse_args(["train", "embedding", "--model", str(tiny_sdxl), "--dataset", "d", "--name", "n",
                              "--width", "768", "--height", "768"])  # fmt: skip
    assert train_cmd._config_from_args(args).width == 768


def test_gradient_checkpointing_is_on_by_default_for_sdxl_only(tmp_path, tiny_sdxl, tiny_model, dataset):
    """A new run on SDXL checkpoints the UNet unless told not to (CLI, API and form share the rule); SD 1.x/2.x runs
    stay fast."""
    import argparse

    from embed_studio.backends.provider import LoadedBackendProvider, StandaloneProvider, new_run_defaults
    from embed_studio.commands import train as train_cmd

    parser = argparse.ArgumentParser()
    train_cmd.register(parser.add_subparsers())

    def config(model, *extra):
        args = parser.parse_args(["train", "embedding", "--model", str(model), "--dataset", "d", "--name", "n", *extra])
        return train_cmd._config_from_args(args)

    assert config(tiny_sdxl).gradient_checkpointing is True
    assert config(tiny_sdxl, "--no-gradient-checkpointing").gradient_checkpointing is False
    assert config(tiny_model).gradient_checkpointing is False
    assert new_run_defaults(StandaloneProvider(tmp_path), "")["gradient_checkpointing"] is False

    # The API fills it in from the backend the provider lends, where the body leaves it out.
    from embed_studio.backends.standalone import StandaloneBackend
    from embed_studio.formats.embedding import save_embedding
    from embed_studio.train.create import create_embedding
    from embed_studio.webui.training import training_config

    backend = StandaloneBackend.load(tiny_sdxl, "cpu")
    provider = LoadedBackendProvider(backend, tmp_path / "out")
    provider.embeddings_dir.mkdir(parents=True)
    save_embedding(create_embedding(backend, "xlchar", "red eyes", 2), provider.embeddings_dir / "xlchar.safetensors")
    body = {"kind": "embedding", "target": "xlchar.safetensors", "dataset": str(dataset)}
    checked, _ = training_config(body, provider)
    assert checked.gradient_checkpointing is True and checked.width == 1024
    checked, _ = training_config({**body, "gradient_checkpointing": False}, provider)
    assert checked.gradient_checkpointing is False


@pytest.mark.parametrize("family", ["sdxl", "sd1"])
def test_memory_measures_on_an_accelerator_device(family, tiny_sdxl, tiny_model):
    """The policy on a device that is not the CPU (the meta device: no CUDA needed, no data moved): frozen weights
    in half precision, SDXL's own VAE in fp32 (it overflows in fp16), gradient checkpointing set on the UNet's
    blocks and the UNet in training mode (diffusers checkpoints only then), off again when asked; only the VAE on
    the device while latents are cached, the UNet and text encoders brought there by the first prompt."""
    from embed_studio.backends.standalone import StandaloneBackend

    backend = StandaloneBackend.load(tiny_sdxl if family == "sdxl" else tiny_model, "meta")
    backend.configure("fp16", half_weights=True, clip_skip=1, gradient_checkpointing=True)
    encoders = [backend.text_encoder] + ([backend.text_encoder_2] if family == "sdxl" else [])
    for module in (backend.unet, *encoders):
        assert {(p.device.type, p.dtype) for p in module.parameters()} == {("cpu", torch.float16)}  # waiting
        assert not any(p.requires_grad for p in module.parameters())
    vae_dtype = torch.float32 if family == "sdxl" else torch.float16
    assert {(p.device.type, p.dtype) for p in backend.vae.parameters()} == {("meta", vae_dtype)}
    blocks = [m for m in backend.unet.modules() if hasattr(m, "gradient_checkpointing")]
    assert blocks and all(m.gradient_checkpointing for m in blocks) and backend.unet.training
    backend.configure("fp16", half_weights=True, clip_skip=1, gradient_checkpointing=False)
    assert not any(m.gradient_checkpointing for m in blocks) and not backend.unet.training
    backend.configure("fp16", half_weights=False, clip_skip=1, gradient_checkpointing=False)
    assert {p.dtype for p in backend.unet.parameters()} == {torch.float32}  # fp32 under autocast when asked
    backend.configure("fp16", half_weights=True, clip_skip=1, gradient_checkpointing=True)
    from embed_studio.backends.base import PooledCond

    context = torch.zeros(1, 77, backend.token_dim, device="meta")
    cond = PooledCond(context, torch.zeros(1, 1280, device="meta")) if family == "sdxl" else context
    out = backend.predict(torch.zeros(1, 4, 8, 8, device="meta"), torch.tensor([500], device="meta"), cond)
    assert out.device.type == "meta" and out.shape == (1, 4, 8, 8)  # the first step brought the parts over
    for module in (backend.unet, *encoders):
        assert {(p.device.type, p.dtype) for p in module.parameters()} == {("meta", torch.float16)}


def test_hypernetworks_are_refused_on_sdxl(tmp_path, tiny_sdxl, capsys):
    assert main(["create", "hypernetwork", "hn", "--model", str(tiny_sdxl), "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "on SDXL train an embedding" in err and "WebUI does apply" in err
    assert not (tmp_path / "hn.pt").exists()


def test_other_pipelines_are_refused_by_name(tmp_path):
    from embed_studio.backends.standalone import StandaloneBackend

    folder = tmp_path / "sd3"
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        (folder / sub).mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusion3Pipeline"}))
    with pytest.raises(FileFormatError, match="StableDiffusion3Pipeline model; the standalone trainer handles"):
        StandaloneBackend.load(folder, "cpu")


def test_an_sdxl_refiner_file_is_refused_by_name(tmp_path, capsys):
    path = tmp_path / "refiner.safetensors"
    safetensors.torch.save_file({"conditioner.embedders.0.model.ln_final.weight": torch.ones(4)}, str(path))
    assert main(["create", "embedding", "x", "--model", str(path), "--dir", str(tmp_path / "e")]) == 1
    err = capsys.readouterr().err
    assert "no CLIP-L text encoder" in err and "SDXL base model" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def sdxl_file(tmp_path_factory):
    """A tiny single-file SDXL checkpoint (sgm layout, fp16) with its sgm yaml, converted from a diffusers folder."""
    from tiny_sdxl import build_tiny_sdxl_single_file

    return build_tiny_sdxl_single_file(tmp_path_factory.mktemp("tiny-sdxl-file"))


def test_single_file_sdxl_loads_every_weight_of_the_model_it_came_from(sdxl_file):
    import hashlib

    from embed_studio.backends.standalone import StandaloneBackend

    single = StandaloneBackend.load(sdxl_file, "cpu")
    folder = StandaloneBackend.load(sdxl_file.parent / "diffusers", "cpu")
    assert single.family == "sdxl" and single.token_dim == 2048 and single.default_size == 1024
    assert single.checkpoint_hash == hashlib.sha256(sdxl_file.read_bytes()).hexdigest()[:10]
    assert single.checkpoint_name == "tiny-sdxl" and single.prediction_type == "epsilon"
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        ours, theirs = getattr(single, part).state_dict(), getattr(folder, part).state_dict()
        assert ours.keys() == theirs.keys(), part
        for key, value in theirs.items():  # the file holds fp16: equal to the folder's weights rounded to fp16
            assert torch.equal(ours[key].float(), value.half().float()), f"{part}.{key}"
    assert not single.vae_half_safe  # the checkpoint's own SDXL VAE encodes in fp32


def test_a_single_file_sdxl_ckpt_loads_the_weights_of_its_safetensors(tmp_path, sdxl_file):
    """An SDXL .ckpt (a pickle, wrapped in "state_dict" as sgm saves it) is told from SD 1.x/2.x by its key names
    and loads the same model as the .safetensors it was written from."""
    import shutil

    from embed_studio.backends.provider import StandaloneProvider, new_run_defaults
    from embed_studio.backends.standalone import StandaloneBackend

    ckpt = tmp_path / "tiny-sdxl.ckpt"
    torch.save({"state_dict": safetensors.torch.load_file(str(sdxl_file)), "global_step": 10}, ckpt)
    shutil.copy(sdxl_file.with_suffix(".yaml"), ckpt.with_suffix(".yaml"))
    assert new_run_defaults(StandaloneProvider(tmp_path), str(ckpt)) == {
        "width": 1024, "height": 1024, "gradient_checkpointing": True
    }  # fmt: skip
    loaded = StandaloneBackend.load(ckpt, "cpu")
    reference = StandaloneBackend.load(sdxl_file, "cpu")
    assert loaded.family == "sdxl" and loaded.checkpoint_name == "tiny-sdxl"
    assert loaded.checkpoint_hash == _sha256_10(ckpt)
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        ours, theirs = getattr(loaded, part).state_dict(), getattr(reference, part).state_dict()
        assert ours.keys() == theirs.keys(), part
        for key, value in theirs.items():
            assert torch.equal(ours[key], value), f"{part}.{key}"


class _Planted:
    """A pickle that creates a file when plainly unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return pathlib.Path.touch, (self.marker,)


def test_a_ckpts_key_names_are_read_through_the_weights_only_loader(tmp_path, sdxl_file, capsys):
    """Code in a .ckpt's pickle never runs: the SDXL test refuses it, and so does every later load."""
    from embed_studio.backends.standalone import pickled_state

    ckpt = tmp_path / "planted.ckpt"
    marker = tmp_path / "ran"
    state = dict(safetensors.torch.load_file(str(sdxl_file)))
    torch.save({"state_dict": state, "callback": _Planted(marker)}, ckpt)
    with pytest.raises(FileFormatError, match="planted.ckpt: not a readable torch file"):
        pickled_state(ckpt)
    assert main(["create", "embedding", "x", "--model", str(ckpt), "--dir", str(tmp_path / "e")]) == 1
    err = capsys.readouterr().err
    assert not marker.exists() and "Traceback" not in err and "planted.ckpt" in err


def test_cli_create_train_and_resume_on_a_single_file_sdxl(tmp_path, sdxl_file, dataset, capsys):
    emb_dir = tmp_path / "embeddings"
    create = ["create", "embedding", "xlchar", "--model", str(sdxl_file), "--init-text", "red eyes",
              "--vectors", "2", "--dir", str(emb_dir)]  # fmt: skip
    assert main(create) == 0
    path = emb_dir / "xlchar.safetensors"
    raw = safetensors.torch.load_file(str(path))
    assert raw["clip_l"].shape == (2, 768) and raw["clip_g"].shape == (2, 1280)
    start = load_embedding(path)
    assert main(_train_args(sdxl_file, dataset, emb_dir, 2)) == 0
    trained = load_embedding(path)
    assert trained.step == 2 and trained.sd_checkpoint_name == "tiny-sdxl"
    assert trained.sd_checkpoint == _sha256_10(sdxl_file)
    after = safetensors.torch.load_file(str(path))
    assert not torch.equal(after["clip_l"], raw["clip_l"]) and not torch.equal(after["clip_g"], raw["clip_g"])
    assert torch.isfinite(trained.vectors).all() and not torch.equal(trained.vectors, start.vectors)
    capsys.readouterr()
    assert main(_train_args(sdxl_file, dataset, emb_dir, 4)) == 0
    assert "resuming xlchar.safetensors at step 2 with its optimizer state" in capsys.readouterr().err
    resumed = safetensors.torch.load_file(str(path))
    assert load_embedding(path).step == 4 and not torch.equal(resumed["clip_g"], after["clip_g"])


def test_a_v_prediction_sgm_yaml_makes_a_v_prediction_model(tmp_path, sdxl_file):
    """An sgm yaml whose denoiser scales for v (as v-prediction SDXL finetunes ship) sets the prediction type."""
    import shutil

    from embed_studio.backends.standalone import StandaloneBackend

    path = tmp_path / "vpred.safetensors"
    shutil.copy(sdxl_file, path)
    yaml_text = sdxl_file.with_suffix(".yaml").read_text(encoding="utf-8")
    assert "denoiser_scaling.EpsScaling" in yaml_text
    path.with_suffix(".yaml").write_text(yaml_text.replace("EpsScaling", "VScaling"), encoding="utf-8")
    assert StandaloneBackend.load(path, "cpu").prediction_type == "v_prediction"


def _sha256_10(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]


def _hub_cache(monkeypatch, folder, tokenizer_dir=None):
    """An offline Hugging Face cache at `folder`, holding openai/clip-vit-large-patch14's tokenizer files if given."""
    import shutil

    import huggingface_hub.constants

    if tokenizer_dir is not None:
        repo = folder / "models--openai--clip-vit-large-patch14"
        snapshot = repo / "snapshots" / "0123456789abcdef"
        shutil.copytree(tokenizer_dir, snapshot)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("0123456789abcdef")
    folder.mkdir(exist_ok=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_single_file_sdxl_without_tokenizer_files_says_how_to_get_them(tmp_path, sdxl_file, monkeypatch, capsys):
    import shutil

    alone = tmp_path / "pony-like.safetensors"  # no yaml beside it: SDXL base's configs, the tokenizer from the cache
    shutil.copy(sdxl_file, alone)
    _hub_cache(monkeypatch, tmp_path / "empty-cache")
    assert main(["create", "embedding", "x", "--model", str(alone), "--dir", str(tmp_path / "e")]) == 1
    err = capsys.readouterr().err
    assert "CLIP tokenizer files, which are not on this machine" in err and "huggingface-cli download" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1

    # With the tokenizer in the cache it gets as far as the weights, which are not SDXL base's shapes.
    _hub_cache(monkeypatch, tmp_path / "cache", sdxl_file.parent / "diffusers" / "tokenizer")
    assert main(["create", "embedding", "x", "--model", str(alone), "--dir", str(tmp_path / "e")]) == 1
    err = capsys.readouterr().err
    assert "does not match SDXL base (put its sgm .yaml beside it as pony-like.yaml)" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_picked_fp16_fixed_vae_replaces_the_checkpoints(tmp_path, tiny_sdxl, tiny_model):
    """--vae FOLDER (a diffusers VAE with force_upcast off, like the fp16-fixed SDXL VAE) may run in half precision;
    the checkpoint's own SDXL VAE never does."""
    from diffusers import AutoencoderKL

    from embed_studio.backends.provider import StandaloneProvider

    vae = AutoencoderKL.from_pretrained(tiny_sdxl, subfolder="vae")
    vae.register_to_config(force_upcast=False)
    vae.save_pretrained(tmp_path / "fixed-vae")
    provider = StandaloneProvider(tmp_path / "out", device="cpu")
    with provider.session(str(tiny_sdxl), str(tmp_path / "fixed-vae")) as backend:
        assert backend.vae_half_safe
        backend.configure("bf16")
        assert next(backend.vae.parameters()).dtype == torch.bfloat16
        assert torch.isfinite(backend.encode_images(torch.rand(1, 3, 64, 64) * 2 - 1).mean).all()
    with provider.session(str(tiny_sdxl)) as backend:
        backend.configure("bf16")
        assert not backend.vae_half_safe and next(backend.vae.parameters()).dtype == torch.float32
    with pytest.raises(UserInputError, match="SDXL models only"):
        with provider.session(str(tiny_model), str(tmp_path / "fixed-vae")):
            pass


def test_an_sd1_embedding_is_refused_on_sdxl_with_the_widths(tmp_path, xl):
    from embed_studio.formats.embedding import EmbeddingData, save_embedding
    from embed_studio.train.targets import EmbeddingTarget

    path = tmp_path / "sd1.pt"
    save_embedding(EmbeddingData("sd1", torch.zeros(2, 768), step=5), path)
    with pytest.raises(FileFormatError, match=r"768-wide vectors but this model uses 2048.*SDXL 768 \+ 1280"):
        EmbeddingTarget(path, xl, "sd1")


# What a 12 GB card leaves to PyTorch's allocator after the CUDA context (~0.5 GiB): the memory goal.
TWELVE_GB_BUDGET_GIB = 11.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_sdxl_batch_1_at_1024_fits_the_12_gb_goal(tmp_path):
    """Real SDXL base shapes (random weights), the trainer's defaults for a new SDXL run (fp16 frozen weights,
    gradient checkpointing), batch 1 at 1024x1024: the allocator's peak stays within a 12 GB card, and the VAE has
    left the GPU once the latents are cached."""
    import numpy as np
    from tiny_sdxl import build_random_sdxl

    from embed_studio.formats.embedding import save_embedding
    from embed_studio.train.config import TrainConfig
    from embed_studio.train.create import create_embedding
    from embed_studio.train.loop import train

    backend = build_random_sdxl(tmp_path / "model", "cuda")
    # Half precision from the load on: in fp32 the SDXL weights alone (14 GB) would already miss the goal.
    assert {p.dtype for p in backend.unet.parameters()} == {torch.float16}
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)).save(data / f"{i}.png")
        (data / f"{i}.txt").write_text("1girl, solo, black hair, red eyes, smile", encoding="utf-8")
    target = tmp_path / "xlchar.safetensors"
    start = create_embedding(backend, "xlchar", "black hair", 4)
    save_embedding(start, target)
    config = TrainConfig(
        kind="embedding", model="random-sdxl", dataset=str(data), target=str(target), lr="0.005", batch_size=1,
        grad_accum=1, max_steps=3, width=1024, height=1024, bucket_step=64, save_every=0, preview_every=0,
        gradient_checkpointing=True, log_dir=str(tmp_path / "logs"),
    )  # fmt: skip
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    result = train(config, backend)
    peak_reserved = torch.cuda.max_memory_reserved() / 2**30
    peak_allocated = torch.cuda.max_memory_allocated() / 2**30
    print(f"SDXL batch 1 at 1024x1024: peak allocated {peak_allocated:.2f} GiB, reserved {peak_reserved:.2f} GiB")
    assert result.step == 3
    assert next(backend.vae.parameters()).device.type == "cpu"  # released after caching
    assert {p.dtype for p in backend.unet.parameters()} == {torch.float16}
    assert peak_reserved < TWELVE_GB_BUDGET_GIB, f"peak {peak_reserved:.2f} GiB reserved"
    trained = load_embedding(target)
    assert torch.isfinite(trained.vectors).all() and not torch.equal(trained.vectors, start.vectors)


def test_shipped_sdxl_base_configs_have_sdxl_bases_published_sizes(tmp_path):
    """The configs single-file checkpoints load with (and the bench and memory checks build) are SDXL base 1.0's:
    its published parameter counts, built on the meta device (no memory, no download)."""
    from tiny_sdxl import random_sdxl_parts

    unet, vae, text_encoder, text_encoder_2, _, _ = random_sdxl_parts(tmp_path, "meta")
    parts = {"unet": unet, "vae": vae, "text_encoder": text_encoder, "text_encoder_2": text_encoder_2}
    counts = {name: sum(p.numel() for p in part.parameters()) for name, part in parts.items()}
    assert counts == {
        "unet": 2_567_463_684,
        "vae": 83_653_863,
        "text_encoder": 123_060_480,
        "text_encoder_2": 694_659_840,
    }
    assert vae.config.force_upcast and unet.config.addition_embed_type == "text_time"


def test_cli_vae_picks_a_vae_folder_for_sdxl_and_is_refused_for_sd1(tmp_path, tiny_sdxl, tiny_model, dataset, capsys):
    """README's `--vae` for the fp16-unsafe SDXL VAE: the run records it; on SD 1.x one line says it is SDXL only."""
    import json

    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(tiny_sdxl, subfolder="vae")
    vae.register_to_config(force_upcast=False)
    vae.save_pretrained(tmp_path / "fixed-vae")
    emb_dir = tmp_path / "embeddings"
    create = ["create", "embedding", "xlchar", "--model", str(tiny_sdxl), "--init-text", "*",
              "--vectors", "1", "--dir", str(emb_dir)]  # fmt: skip
    assert main(create) == 0
    assert main([*_train_args(tiny_sdxl, dataset, emb_dir, 1), "--vae", str(tmp_path / "fixed-vae")]) == 0
    assert json.loads((tmp_path / "logs" / "config.json").read_text())["vae"] == str(tmp_path / "fixed-vae")
    capsys.readouterr()
    sd1_dir = tmp_path / "sd1"
    assert main(["create", "embedding", "xlchar", "--model", str(tiny_model), "--init-text", "*",
                 "--vectors", "1", "--dir", str(sd1_dir)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main([*_train_args(tiny_model, dataset, sd1_dir, 1), "--vae", str(tmp_path / "fixed-vae")]) != 0
    err = capsys.readouterr().err
    assert "SDXL models only" in err and "Traceback" not in err
