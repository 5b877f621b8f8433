"""Preprocessing as the WD models expect it, and the probability cache on disk."""

from __future__ import annotations

import numpy as np
from PIL import Image

from embed_studio.tagger.cache import ProbabilityCache, file_hash
from embed_studio.tagger.preprocess import load_for_model, prepare_image


def test_padded_square_on_white_bgr_float32():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    arr = prepare_image(img, 40)
    assert arr.shape == (40, 40, 3) and arr.dtype == np.float32
    assert arr[0, 20].tolist() == [255.0, 255.0, 255.0]  # the padding band is white
    assert arr[20, 20].tolist() == [0.0, 0.0, 255.0]  # red comes out in BGR order, 0..255
    assert arr[39, 20].tolist() == [255.0, 255.0, 255.0]


def test_resized_to_the_models_size_and_alpha_on_white():
    img = Image.new("RGBA", (100, 60), (0, 0, 255, 0))
    arr = prepare_image(img, 16, 24)
    assert arr.shape == (16, 24, 3)
    assert np.allclose(arr, 255.0)  # fully transparent blue is plain white


def test_big_jpeg_decodes_reduced_but_same_result(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (1600, 1200), (10, 120, 230)).save(path, quality=95)
    arr = load_for_model(path, 64)
    assert arr.shape == (64, 64, 3)
    assert np.allclose(arr[32, 32], [230, 120, 10], atol=3)


def test_cache_survives_a_new_process_and_ignores_damaged_files(tmp_path):
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(image)
    h = file_hash(image)
    probs = np.linspace(0, 1, 5, dtype=np.float32)
    ProbabilityCache(tmp_path / "cache", "model-x", 5).put(h, probs)
    fresh = ProbabilityCache(tmp_path / "cache", "model-x", 5)
    np.testing.assert_array_equal(fresh.get(h), probs)
    assert ProbabilityCache(tmp_path / "cache", "model-y", 5).get(h) is None  # another model
    stored = next((tmp_path / "cache" / "model-x").rglob("*.npy"))
    stored.write_bytes(b"")
    assert ProbabilityCache(tmp_path / "cache", "model-x", 5).get(h) is None
    assert not list((tmp_path / "cache").rglob("*.tmp"))
