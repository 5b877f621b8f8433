"""Booru tag lists for autocomplete, and the gallery's cached thumbnails."""

from __future__ import annotations

import pytest
from PIL import Image

from embed_studio.dataset.taglist import load_tag_list
from embed_studio.dataset.thumbs import thumbnail
from embed_studio.errors import UserInputError


def test_tagcomplete_csv_sorted_by_count_with_kaomoji_kept(tmp_path):
    f = tmp_path / "danbooru.csv"
    f.write_text('long_hair,0,900,"longhair"\n^_^,5,300\nsolo,0,5000\n\n', encoding="utf-8")
    tags = load_tag_list(f)
    assert tags.names() == ["solo", "long hair", "^_^"] and list(tags) == tags.names()
    assert tags.canonical("LONG HAIR") == "long_hair" and tags.canonical("longhair") == "long_hair"


def test_plain_text_list_keeps_file_order(tmp_path):
    f = tmp_path / "tags.txt"
    f.write_text("# my tags\nb tag\na tag\nb tag\n", encoding="utf-8")
    assert load_tag_list(f).names() == ["b tag", "a tag"]


def test_missing_tag_list_is_a_clear_error(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        load_tag_list(tmp_path / "nope.csv")


def test_thumbnail_is_small_cached_and_follows_changes(tmp_path):
    src = tmp_path / "big image.png"
    Image.new("RGBA", (1200, 600), (10, 20, 30, 0)).save(src)
    thumb = thumbnail(src, 256)
    assert thumb != src and Image.open(thumb).size == (256, 128)
    assert thumbnail(src, 256) == thumb
    Image.new("RGB", (300, 300)).save(src)
    assert thumbnail(src, 256) != thumb  # a changed file gets a new thumbnail


def test_thumbnail_of_a_corrupt_file_falls_back_to_the_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    assert thumbnail(bad) == bad
