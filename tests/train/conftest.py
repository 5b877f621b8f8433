"""Fixtures for trainer tests: tiny real diffusers models saved as folders, a mixed-aspect captioned dataset."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from tiny_sd import build_tiny_sd  # noqa: E402
from tiny_sdxl import build_tiny_sdxl  # noqa: E402

CAPTIONS = [
    "1girl, solo, black hair, red eyes",
    "1girl, smile, blue sky",
    "1girl, dress, cat",
    "solo, black hair, dog",
    "1girl, red eyes, smile",
    "solo, blue dress",
]
SIZES = [(64, 64), (96, 48), (80, 80), (48, 96), (100, 50), (60, 60)]


@pytest.fixture(autouse=True)
def _one_thread():
    # The tiny models are far faster on one thread than fighting for shared cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd-eps"), "epsilon")


@pytest.fixture(scope="session")
def tiny_model_v(tmp_path_factory) -> Path:
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd-v"), "v_prediction")


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory) -> Path:
    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl"))


@pytest.fixture
def dataset(tmp_path) -> Path:
    folder = tmp_path / "dataset"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, ((w, h), caption) in enumerate(zip(SIZES, CAPTIONS, strict=True)):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(caption, encoding="utf-8")
    return folder


@pytest.fixture
def backend(tiny_model):
    from embed_studio.backends.standalone import StandaloneBackend

    return StandaloneBackend.load(tiny_model, "cpu")


@pytest.fixture
def make_config(tmp_path, tiny_model, dataset):
    """TrainConfig with test-sized defaults (64x64 area, 32-pixel buckets, no copies/previews)."""
    from embed_studio.train.config import TrainConfig

    def _make(target: Path, **overrides) -> TrainConfig:
        values = dict(
            kind="embedding",
            model=str(tiny_model),
            dataset=str(dataset),
            target=str(target),
            lr="0.01",
            batch_size=2,
            grad_accum=1,
            max_steps=3,
            width=64,
            height=64,
            bucket_step=32,
            save_every=0,
            preview_every=0,
            preview_steps=2,
            shuffle_tags=True,
            seed=7,
        )
        values["log_dir"] = str(Path(target).parent / "logs" / Path(target).stem)
        values.update(overrides)
        return TrainConfig(**values)

    return _make
