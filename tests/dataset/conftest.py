"""Fixtures for the dataset tests: small dataset folders with captions, built fast."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def png_bytes(size=(8, 8), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def noise_image(seed: int, size=(96, 96)) -> Image.Image:
    """A picture-like image (smooth blobs, not flat) so perceptual hashes differ between seeds."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.BICUBIC)


def build_dataset(folder: Path, captions: dict[str, str | None], image: bytes | None = None) -> Path:
    """Write one tiny image per name, with a .txt sidecar unless its caption is None."""
    folder.mkdir(parents=True, exist_ok=True)
    data = image or png_bytes()
    for name, caption in captions.items():
        (folder / name).write_bytes(data)
        if caption is not None:
            (folder / name).with_suffix(".txt").write_text(caption, encoding="utf-8")
    return folder


# Odd names on purpose: unicode, spaces, brackets, a browser copy and a preprocessor prefix.
CAPTIONS = {
    "a b.png": "1girl, solo, blue hair, smile, gloves",
    "ünïcode [x].png": "1girl, blue hair, nude, gloves",
    "name (1).png": "1girl, solo, blue hair, outdoors",
    "00001-0 plain.png": "solo, red eyes",
    "tags, in, name.png": None,
}


@pytest.fixture
def dataset(tmp_path) -> Path:
    return build_dataset(tmp_path / "ds", CAPTIONS)


@pytest.fixture
def build():
    """build(folder, {name: caption or None}, image_bytes=None) -> folder."""
    return build_dataset


@pytest.fixture
def noise():
    """noise(seed, size=(96, 96)) -> a picture-like PIL image."""
    return noise_image
