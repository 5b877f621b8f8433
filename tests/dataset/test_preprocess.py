"""Image preparation: downscale, convert, flip, split; originals kept in the trash and restorable."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from PIL import Image

from embed_studio.dataset import preprocess
from embed_studio.dataset.trash import list_trash, restore_trash
from embed_studio.errors import DatasetError, UserInputError


def files(folder):
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_downscale_keeps_aspect_and_restores(tmp_path, noise):
    big = tmp_path / "big [1].png"
    noise(1, (400, 200)).save(big)
    noise(2, (100, 50)).save(tmp_path / "small.png")
    (tmp_path / "big [1].txt").write_text("a, b", encoding="utf-8")
    original = big.read_bytes()
    preview = preprocess.downscale(tmp_path, 128, dry_run=True)
    assert [(p.name, what) for p, what in preview.items] == [("big [1].png", "400x200 -> 128x64")]
    assert Image.open(big).size == (400, 200)
    result = preprocess.downscale(tmp_path, 128)
    assert Image.open(big).size == (128, 64)
    assert Image.open(tmp_path / "small.png").size == (100, 50)
    assert (tmp_path / "big [1].txt").read_text(encoding="utf-8") == "a, b"
    assert (result.batch.path / "big [1].png").read_bytes() == original
    restore_trash(tmp_path)
    assert big.read_bytes() == original
    assert files(tmp_path) == ["big [1].png", "big [1].txt", "small.png"]
    with pytest.raises(UserInputError):
        preprocess.downscale(tmp_path, 10)


def test_convert_odd_formats_to_rgb_png_with_background(tmp_path):
    Image.new("RGBA", (16, 16), (255, 0, 0, 0)).save(tmp_path / "clear.webp", lossless=True)
    Image.new("P", (16, 16), 3).save(tmp_path / "anim.gif")
    Image.new("CMYK", (16, 16), (0, 255, 0, 0)).save(tmp_path / "print.jpg")
    Image.fromarray(np.full((16, 16), 65535, dtype=np.uint16)).save(tmp_path / "deep.png")
    Image.new("RGB", (16, 16), (1, 2, 3)).save(tmp_path / "fine.png")
    (tmp_path / "clear.txt").write_text("x", encoding="utf-8")
    fine = (tmp_path / "fine.png").read_bytes()

    result = preprocess.convert(tmp_path, "png", background="#00ff00")
    assert sorted(p.name for p, _ in result.items) == ["anim.gif", "clear.webp", "deep.png", "print.jpg"]
    assert files(tmp_path) == ["anim.png", "clear.png", "clear.txt", "deep.png", "fine.png", "print.png"]
    for name in ("anim.png", "clear.png", "deep.png", "print.png"):
        assert Image.open(tmp_path / name).mode == "RGB"
    assert Image.open(tmp_path / "clear.png").getpixel((0, 0)) == (0, 255, 0)  # flattened on the chosen colour
    assert Image.open(tmp_path / "deep.png").getpixel((0, 0)) == (255, 255, 255)  # 16-bit scaled, not clipped
    assert (tmp_path / "fine.png").read_bytes() == fine

    restore_trash(tmp_path)
    assert files(tmp_path) == ["anim.gif", "clear.txt", "clear.webp", "deep.png", "fine.png", "print.jpg"]


def test_convert_to_jpeg_and_name_clash_gets_its_own_caption(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGBA", (8, 8), (0, 0, 255, 255)).save(tmp_path / "a.webp")
    (tmp_path / "a.txt").write_text("tags", encoding="utf-8")
    preprocess.convert(tmp_path, "png")
    assert files(tmp_path) == ["a-1.png", "a-1.txt", "a.png", "a.txt"]
    assert (tmp_path / "a-1.txt").read_text(encoding="utf-8") == "tags"
    Image.new("RGBA", (8, 8), (0, 0, 255, 128)).save(tmp_path / "b.png")
    preprocess.convert(tmp_path, "jpg", images=[tmp_path / "b.png"])
    assert Image.open(tmp_path / "b.jpg").format == "JPEG" and not (tmp_path / "b.png").exists()


def test_flip_copies_image_mirrored_and_caption(tmp_path):
    img = Image.new("RGB", (4, 2), (0, 0, 0))
    img.putpixel((0, 0), (255, 255, 255))
    img.save(tmp_path / "x y.png")
    (tmp_path / "x y.txt").write_text("1girl, solo", encoding="utf-8")
    Image.new("RGB", (4, 2)).save(tmp_path / "1girl, smile.png")  # caption only in the name
    preprocess.flip(tmp_path)
    flipped = Image.open(tmp_path / "x y-flipped.png")
    assert flipped.getpixel((3, 0)) == (255, 255, 255) and flipped.getpixel((0, 0)) == (0, 0, 0)
    assert (tmp_path / "x y-flipped.txt").read_text(encoding="utf-8") == "1girl, solo"
    assert (tmp_path / "1girl, smile-flipped.txt").read_text(encoding="utf-8") == "1girl, smile"
    again = preprocess.flip(tmp_path)
    assert not again.items  # flipped copies are not flipped again, existing ones not overwritten
    restore_trash(tmp_path)
    assert files(tmp_path) == ["1girl, smile.png", "x y.png", "x y.txt"]


def test_split_boxes_cover_the_image_with_overlap():
    boxes = preprocess.split_boxes(100, 400, part_ratio=1.0, overlap=0.2)
    assert boxes[0] == (0, 0, 100, 100) and boxes[-1] == (0, 300, 100, 400)
    assert all(b[3] - b[1] == 100 for b in boxes)
    assert all(boxes[i + 1][1] < boxes[i][3] for i in range(len(boxes) - 1))  # each overlaps the next
    assert preprocess.split_boxes(300, 100, 1.5, 0.0)[0] == (0, 0, 150, 100)
    assert preprocess.split_boxes(100, 100) == [(0, 0, 100, 100)]


def test_split_long_image_into_parts_with_captions_and_restore(tmp_path, noise):
    noise(3, (60, 200)).save(tmp_path / "tall.png")
    noise(4, (60, 60)).save(tmp_path / "square.png")
    (tmp_path / "tall.txt").write_text("comic", encoding="utf-8")
    result = preprocess.split(tmp_path, min_ratio=2.0)
    assert [p.name for p, _ in result.items] == ["tall.png"]
    parts = sorted(p.name for p in tmp_path.glob("tall-part*.png"))
    assert len(parts) >= 3
    assert all(Image.open(tmp_path / p).size == (60, 60) for p in parts)
    assert all((tmp_path / p).with_suffix(".txt").read_text(encoding="utf-8") == "comic" for p in parts)
    assert not (tmp_path / "tall.png").exists() and not (tmp_path / "tall.txt").exists()
    restore_trash(tmp_path)
    assert files(tmp_path) == ["square.png", "tall.png", "tall.txt"]


def test_read_only_image_is_refused_before_anything_changes(tmp_path, noise):
    noise(5, (300, 300)).save(tmp_path / "a.png")
    noise(6, (300, 300)).save(tmp_path / "b.png")
    os.chmod(tmp_path / "b.png", stat.S_IRUSR)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    try:
        with pytest.raises(DatasetError, match=r"b\.png.*read-only"):
            preprocess.downscale(tmp_path, 100)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
        assert not list_trash(tmp_path)
    finally:
        os.chmod(tmp_path / "b.png", 0o644)


def test_corrupt_image_is_skipped_with_reason(tmp_path, noise):
    noise(7, (300, 100)).save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    result = preprocess.downscale(tmp_path, 100)
    assert [p.name for p, _ in result.items] == ["ok.png"]
    assert [p.name for p, _ in result.skipped] == ["broken.png"]


def test_restore_with_nothing_to_restore_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="Nothing to restore"):
        restore_trash(tmp_path)


def test_parse_color():
    assert preprocess.parse_color("#fff") == (255, 255, 255)
    assert preprocess.parse_color("00ff10") == (0, 255, 16)
    assert preprocess.parse_color("rgba(1, 2, 3, 1)") == (1, 2, 3)
    with pytest.raises(UserInputError):
        preprocess.parse_color("blue-ish")


def test_downscale_gif_and_palette_writes_a_png(tmp_path):
    Image.new("P", (300, 150), 5).save(tmp_path / "anim.gif")
    (tmp_path / "anim.txt").write_text("t", encoding="utf-8")
    preprocess.downscale(tmp_path, 100)
    out = Image.open(tmp_path / "anim.png")
    assert out.format == "PNG" and out.size == (100, 50) and out.mode == "RGB"
    assert files(tmp_path) == ["anim.png", "anim.txt"]
    restore_trash(tmp_path)
    assert files(tmp_path) == ["anim.gif", "anim.txt"]


def test_restore_refuses_to_overwrite_a_file_made_since(tmp_path, noise):
    noise(1, (60, 200)).save(tmp_path / "tall.png")
    preprocess.split(tmp_path)
    noise(2, (50, 50)).save(tmp_path / "tall.png")  # a new image under the old name
    new = (tmp_path / "tall.png").read_bytes()
    with pytest.raises(DatasetError, match="exist"):
        restore_trash(tmp_path)
    assert (tmp_path / "tall.png").read_bytes() == new
