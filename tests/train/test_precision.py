"""Which precision "auto" picks, and that half-precision frozen weights leave the trained parameters in fp32."""

from __future__ import annotations

import math

import pytest
import torch

from embed_studio.backends.base import auto_precision
from embed_studio.formats.embedding import load_embedding, save_embedding
from embed_studio.formats.hypernetwork import file_shorthash, load_hypernetwork, save_hypernetwork
from embed_studio.formats.optim import load_optimizer_state
from embed_studio.train.create import create_embedding, create_hypernetwork
from embed_studio.train.loop import resolve_precision, train

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.mark.parametrize(
    ("device", "shared", "bf16", "expected"),
    [
        (CPU, None, None, "fp32"),
        (CPU, None, True, "fp32"),  # the CPU's bf16 kernels are slower than its fp32 ones
        (torch.device("mps"), None, True, "fp32"),
        (CUDA, None, True, "bf16"),  # no GradScaler
        (torch.device("cuda:1"), None, False, "fp16"),  # pre-Ampere: fp16 with a GradScaler
        (CUDA, torch.float16, True, "fp16"),  # the WebUI's fp16 model: no second cast per step
        (CUDA, torch.float32, True, "bf16"),  # the WebUI with --no-half
        (CUDA, torch.float32, False, "fp16"),
    ],
)
def test_auto_precision(device, shared, bf16, expected):
    assert auto_precision(device, shared, bf16=bf16) == expected


def test_an_explicit_precision_is_kept_and_auto_is_fp32_on_the_cpu(backend, make_config, tmp_path):
    assert resolve_precision(make_config(tmp_path / "e.pt", precision="bf16"), backend) == "bf16"
    assert resolve_precision(make_config(tmp_path / "e.pt"), backend) == "fp32"


@pytest.mark.parametrize("kind", ["embedding", "hypernetwork"])
def test_half_frozen_weights_train_fp32_parameters(tmp_path, backend, make_config, kind):
    target = tmp_path / f"{kind}.pt"
    if kind == "embedding":
        save_embedding(create_embedding(backend, "t", "black hair", 2), target)
    else:
        save_hypernetwork(create_hypernetwork("t", backend.context_sizes, seed=1, backend=backend), target)
    result = train(make_config(target, kind=kind, name="t", precision="bf16", max_steps=2), backend)
    assert result.last_loss is not None and math.isfinite(result.last_loss)
    # The frozen model in bf16 (the CPU allows it when asked)...
    for module in (backend.unet, backend.text_encoder, backend.vae):
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    # ...and the trained parameters in fp32: AdamW's moments are made like the parameters they follow.
    if kind == "embedding":
        saved = load_embedding(target)
        state = load_optimizer_state(target, saved.checksum())
        assert saved.vectors.dtype == torch.float32
    else:
        saved = load_hypernetwork(target)
        state = load_optimizer_state(target, file_shorthash(target))
        assert all(v.dtype == torch.float32 for pair in saved.layers.values() for sd in pair for v in sd.values())
    moments = [v for s in state["state"].values() for k, v in s.items() if k in ("exp_avg", "exp_avg_sq")]
    assert moments and all(m.dtype == torch.float32 for m in moments)
