"""The CUDA path (auto precision, GradScaler, VAE off the GPU after caching, previews); skipped without a GPU."""

import pytest
import torch

from embed_studio.backends.base import auto_precision
from embed_studio.backends.standalone import StandaloneBackend
from embed_studio.formats.embedding import load_embedding, save_embedding
from embed_studio.formats.hypernetwork import load_hypernetwork, save_hypernetwork
from embed_studio.train.create import create_embedding, create_hypernetwork
from embed_studio.train.loop import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_fp16_embedding_on_cuda(tmp_path, tiny_model, make_config):
    backend = StandaloneBackend.load(tiny_model, "cuda")
    target = tmp_path / "emb.pt"
    initial = create_embedding(backend, "emb", "black hair", 2)
    save_embedding(initial, target)
    result = train(make_config(target, max_steps=4, grad_accum=2, preview_every=2, save_every=2), backend)
    # auto: bf16 where the GPU has it (no GradScaler), else fp16 with one; frozen weights in that precision.
    auto = auto_precision(backend.device)
    assert auto in ("bf16", "fp16")
    assert next(backend.unet.parameters()).dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[auto]
    assert next(backend.vae.parameters()).device.type == "cpu"  # released after caching, back after previews
    saved = load_embedding(target)
    assert saved.step == 4 and saved.extra["embed_studio"]["precision"] == auto
    assert torch.isfinite(saved.vectors).all() and not torch.equal(saved.vectors, initial.vectors)
    assert len(result.previews) == 4


def test_bf16_hypernetwork_on_cuda(tmp_path, tiny_model_v, make_config):
    backend = StandaloneBackend.load(tiny_model_v, "cuda")
    target = tmp_path / "hn.pt"
    save_hypernetwork(create_hypernetwork("hn", backend.context_sizes, use_dropout=True, backend=backend), target)
    train(make_config(target, model=str(tiny_model_v), kind="hypernetwork", precision="bf16", max_steps=3,
                      preview_every=3), backend)  # fmt: skip
    assert load_hypernetwork(target).step == 3
