"""Prompt templates, captions from sidecars and file names, tag shuffle (keeping the first N) and dropout."""

import random

import pytest

from embed_studio.errors import UserInputError
from embed_studio.train.prompts import (
    PromptOptions,
    build_prompt,
    caption_from_filename,
    image_caption,
    list_templates,
    load_template_lines,
)


def test_shipped_templates_have_name_and_filewords():
    templates = list_templates()
    for name in (
        "subject.txt",
        "subject_filewords.txt",
        "style.txt",
        "style_filewords.txt",
        "hypernetwork.txt",
        "none.txt",
        "filewords_name.txt",
    ):
        assert name in templates
    assert load_template_lines("filewords_name") == ["[filewords], [name]"]
    assert all("[name]" in line for line in load_template_lines("subject_filewords.txt"))
    assert all("[filewords]" in line for line in load_template_lines("subject_filewords.txt"))


def test_user_template_folder_and_missing_template(tmp_path):
    (tmp_path / "mine.txt").write_text("uploaded on e621, [name], [filewords]\n\n", encoding="utf-8")
    assert load_template_lines("mine", tmp_path) == ["uploaded on e621, [name], [filewords]"]
    with pytest.raises(UserInputError, match="not found"):
        load_template_lines("nope")


def test_caption_from_sidecar_or_filename(tmp_path):
    img = tmp_path / "00012-0 black_hair red_eyes.png"
    img.write_bytes(b"")
    assert caption_from_filename(img) == "black_hair red_eyes"
    assert caption_from_filename(img, r"[a-z]+", ", ") == "black, hair, red, eyes"
    assert image_caption(img, r"[a-z_]+", ", ") == "black_hair, red_eyes"
    img.with_suffix(".txt").write_text(" solo, smile \n", encoding="utf-8")
    assert image_caption(img) == "solo, smile"


def test_fill_without_shuffle_keeps_caption():
    assert (
        build_prompt("[filewords], [name]", "a, b, c", "foo", PromptOptions(shuffle_tags=False), random.Random(0))
        == "a, b, c, foo"
    )


def test_shuffle_keeps_first_n_and_all_tags():
    caption = "char, t1, t2, t3, t4, t5, t6"
    opts = PromptOptions(shuffle_tags=True, keep_first_tags=1)
    seen = set()
    for seed in range(20):
        out = build_prompt("[filewords]", caption, "x", opts, random.Random(seed)).split(", ")
        assert out[0] == "char"
        assert sorted(out) == sorted(caption.split(", "))
        seen.add(tuple(out))
    assert len(seen) > 1


def test_tag_dropout_drops_some_tags():
    caption = ", ".join(f"t{i}" for i in range(100))
    out = build_prompt("[filewords]", caption, "x", PromptOptions(tag_dropout=0.5), random.Random(1)).split(", ")
    assert 20 < len(out) < 80
