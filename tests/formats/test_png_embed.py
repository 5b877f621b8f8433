"""Embeddings inside images: the WebUI's 'sd-ti-embedding' chunk and its visual data border."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from embed_studio.errors import FileFormatError
from embed_studio.formats.embedding import EmbeddingData, load_embedding, save_png_with_embedding
from embed_studio.formats.png_embed import _lcg_nibble_mask, embedding_from_b64, read_data_border


def _without_chunk(src, dst):
    # Same pixels, no text chunk: only the border can carry the data now.
    with Image.open(src) as im:
        im.convert("RGB").save(dst, format="PNG")


def test_webui_png_loads_from_chunk(webui_files):
    emb = load_embedding(webui_files / "webui-made-emb-12.png")
    assert tuple(emb.vectors.shape) == (3, 32) and emb.vectors.dtype == torch.float32
    assert emb.name == "webui-made-emb-12" and emb.step == 11
    assert emb.sd_checkpoint == "694637395a" and emb.sd_checkpoint_name == "tiny-sd1"


def test_webui_png_border_matches_chunk(webui_files, tmp_path):
    src = webui_files / "webui-made-emb-12.png"
    with Image.open(src) as im:
        chunk = embedding_from_b64(im.text["sd-ti-embedding"])
        border = read_data_border(im)
    assert border["name"] == chunk["name"] and border["step"] == chunk["step"]
    assert torch.equal(border["string_to_param"]["*"], chunk["string_to_param"]["*"])
    _without_chunk(src, tmp_path / "border-only.png")
    emb = load_embedding(tmp_path / "border-only.png")
    assert torch.equal(emb.vectors, chunk["string_to_param"]["*"].float()) and emb.step == 11


def test_png_round_trip_chunk_and_border(tmp_path):
    vectors = torch.randn(4, 32)
    emb = EmbeddingData("roundtrip", vectors, step=30, sd_checkpoint="0123456789", sd_checkpoint_name="tiny")
    image = Image.new("RGB", (64, 48), (120, 200, 40))
    path = tmp_path / "roundtrip-30.png"
    save_png_with_embedding(image, emb, path, caption="<roundtrip>")

    with Image.open(path) as im:
        assert "sd-ti-embedding" in im.text
        assert im.size[1] == 48 and im.size[0] > 64 + 2
    from_chunk = load_embedding(path)
    assert torch.equal(from_chunk.vectors, vectors)
    assert (from_chunk.name, from_chunk.step, from_chunk.sd_checkpoint) == ("roundtrip", 30, "0123456789")

    _without_chunk(path, tmp_path / "stripped.png")
    from_border = load_embedding(tmp_path / "stripped.png")
    assert torch.equal(from_border.vectors, vectors) and from_border.step == 30


def test_border_survives_a_larger_embedding_without_caption(tmp_path):
    vectors = torch.randn(8, 768)
    path = tmp_path / "big.png"
    save_png_with_embedding(Image.new("RGB", (32, 32), (255, 255, 255)), EmbeddingData("big", vectors), path)
    _without_chunk(path, tmp_path / "big-border.png")
    assert torch.equal(load_embedding(tmp_path / "big-border.png").vectors, vectors)


def test_lcg_stream_matches_the_plain_recurrence():
    x, expected = 0, []
    for _ in range(3000):
        x = (1664525 * x + 1013904223) % 2**32
        expected.append((x % 255) & 0x0F)
    assert np.array_equal(_lcg_nibble_mask(3000), np.array(expected, dtype=np.uint8))


def test_png_without_data_is_a_clear_error(tmp_path, make_image):
    path = make_image("plain.png", size=(40, 30))
    with pytest.raises(FileFormatError, match="plain.png.*no embedding"):
        load_embedding(path)


def test_broken_image_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(FileFormatError, match="broken.png"):
        load_embedding(path)


def test_image_that_only_looks_bordered_is_a_clear_error(tmp_path):
    # Two black columns make it look like a data border, but what lies beyond them is no zlib data.
    arr = np.full((20, 40, 3), 255, np.uint8)
    arr[:, 5] = 0
    arr[:, 30] = 0
    path = tmp_path / "lines.png"
    Image.fromarray(arr).save(path)
    with pytest.raises(FileFormatError, match="lines.png.*border"):
        load_embedding(path)
