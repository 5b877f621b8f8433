"""SDXL embeddings: the WebUI's two-tensor .safetensors layout, our metadata beside it, inspect, PNG previews."""

from __future__ import annotations

import pytest
import safetensors
import safetensors.torch
import torch
from PIL import Image

from embed_studio.cli import main
from embed_studio.errors import FileFormatError
from embed_studio.formats.embedding import EmbeddingData, load_embedding, save_embedding, save_png_with_embedding
from embed_studio.formats.png_embed import read_image_embedding


def _sdxl(n: int = 3) -> EmbeddingData:
    torch.manual_seed(0)
    return EmbeddingData(
        "xlchar",
        torch.randn(n, 2048),
        step=40,
        sd_checkpoint="0123456789",
        sd_checkpoint_name="ponyxl",
        extra={"embed_studio": {"clip_skip": 2, "model_family": "sdxl"}},
    )


def test_safetensors_holds_clip_l_and_clip_g_only_and_metadata_rides_in_the_header(tmp_path):
    data = _sdxl()
    path = tmp_path / "xlchar.safetensors"
    save_embedding(data, path)
    # What the WebUI's loader sees (safetensors.torch.load_file): two float32 tensors, nothing else.
    raw = safetensors.torch.load_file(str(path))
    assert sorted(raw) == ["clip_g", "clip_l"]
    assert raw["clip_l"].shape == (3, 768) and raw["clip_g"].shape == (3, 1280)
    assert raw["clip_l"].dtype == raw["clip_g"].dtype == torch.float32
    assert torch.equal(raw["clip_l"], data.vectors[:, :768]) and torch.equal(raw["clip_g"], data.vectors[:, 768:])
    with safetensors.safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["step"] == "40" and meta["sd_checkpoint"] == "0123456789" and meta["sd_checkpoint_name"] == "ponyxl"
    back = load_embedding(path)
    assert back.is_sdxl and back.step == 40 and back.sd_checkpoint_name == "ponyxl"
    assert torch.equal(back.vectors, data.vectors)
    assert back.extra["embed_studio"]["clip_skip"] == 2
    assert back.checksum() == data.checksum()


def test_foreign_sdxl_file_loads_and_bad_shapes_are_refused(tmp_path):
    good = tmp_path / "kohya.safetensors"
    safetensors.torch.save_file(
        {"clip_l": torch.ones(2, 768, dtype=torch.float16), "clip_g": torch.zeros(2, 1280, dtype=torch.float16)},
        str(good),
    )
    emb = load_embedding(good)
    assert emb.n_vectors == 2 and emb.dim == 2048 and emb.step is None and emb.vectors.dtype == torch.float32
    assert emb.vectors[:, :768].eq(1).all() and emb.vectors[:, 768:].eq(0).all()
    bad = tmp_path / "bad.safetensors"
    safetensors.torch.save_file({"clip_l": torch.ones(2, 700), "clip_g": torch.zeros(2, 1280)}, str(bad))
    with pytest.raises(FileFormatError, match=r"'clip_l' as \[vectors, 768\]"):
        load_embedding(bad)
    uneven = tmp_path / "uneven.safetensors"
    safetensors.torch.save_file({"clip_l": torch.ones(2, 768), "clip_g": torch.zeros(3, 1280)}, str(uneven))
    with pytest.raises(FileFormatError, match="must match"):
        load_embedding(uneven)


def test_sdxl_is_not_written_as_pt(tmp_path):
    with pytest.raises(FileFormatError, match=r"\.safetensors"):
        save_embedding(_sdxl(), tmp_path / "xlchar.pt")
    assert not (tmp_path / "xlchar.pt").exists()


def test_png_carries_only_the_two_tensors(tmp_path):
    data = _sdxl(2)
    path = tmp_path / "xlchar-40.png"
    save_png_with_embedding(Image.new("RGB", (64, 64), "white"), data, path, caption="<xlchar>")
    carried = read_image_embedding(path)
    # The WebUI makes a tensor of every value of an SDXL dict: a name or step here would make it refuse the image.
    assert sorted(carried) == ["clip_g", "clip_l"]
    assert torch.allclose(load_embedding(path).vectors, data.vectors)


def test_inspect_says_sdxl_with_both_widths_and_clip_skip(tmp_path, capsys):
    path = tmp_path / "xlchar.safetensors"
    save_embedding(_sdxl(), path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "model: SDXL  vectors: 3  dims: 768 (clip_l) + 1280 (clip_g)  step: 40" in out
    assert "CLIP skip: 2" in out and "checkpoint: ponyxl [0123456789]" in out
