"""Image loading and dataset-folder helpers shared by the tagger, the editor and the trainer."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from embed_studio.dataset.folder import booru_stem, list_images, read_caption, split_tags, write_caption
from embed_studio.dataset.imageio import load_rgb
from embed_studio.errors import CorruptImageError, DatasetError


def test_transparency_is_composited_on_background(tmp_path):
    path = tmp_path / "t.png"
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(path)
    assert load_rgb(path).getpixel((0, 0)) == (255, 255, 255)
    assert load_rgb(path, background=(0, 0, 0)).getpixel((0, 0)) == (0, 0, 0)


def test_palette_with_transparency(tmp_path):
    path = tmp_path / "p.gif"
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    img.save(path, transparency=0)
    assert load_rgb(path).getpixel((0, 0)) == (10, 200, 30)


def test_cmyk_and_16bit(tmp_path):
    cmyk = tmp_path / "c.jpg"
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(cmyk)
    r, g, b = load_rgb(cmyk).getpixel((0, 0))
    assert r > 200 and g < 60 and b < 60
    deep = tmp_path / "d.png"
    Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16)).save(deep)
    value = load_rgb(deep).getpixel((0, 0))
    assert value[0] == value[1] == value[2] and 150 < value[0] < 160  # 40000/65535*255 = 155.6


def test_corrupt_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(CorruptImageError, match="broken.png"):
        load_rgb(bad)


def test_list_images_and_captions(tmp_path, make_image):
    make_image("b (1).png")
    make_image("A.jpg")
    make_image("ünï côde [x].webp")
    (tmp_path / "notes.txt").write_text("x")
    hidden = tmp_path / ".embed-studio"
    hidden.mkdir()
    make_image("old.png", folder=hidden)
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["A.jpg", "b (1).png", "ünï côde [x].webp"]
    write_caption(tmp_path / "A.jpg", "red eyes, black hair")
    assert read_caption(tmp_path / "A.jpg") == "red eyes, black hair"
    assert read_caption(tmp_path / "b (1).png") is None


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        list_images(tmp_path / "missing")


@pytest.mark.parametrize(
    "name, stem",
    [
        ("0123abcd.png", "0123abcd"),
        ("0123abcd (1).png", "0123abcd"),
        ("00001-0 0123abcd.png", "0123abcd"),
        ("00012-3-0123abcd (2).jpg", "0123abcd"),
        ("zangoose_(pokemon) by artist.jpg", "zangoose_(pokemon) by artist"),
    ],
)
def test_booru_stem(name, stem):
    assert booru_stem(name) == stem


def test_split_tags():
    assert split_tags(" a, b ,, c_(d) ,") == ["a", "b", "c_(d)"]
    assert split_tags(None) == []
