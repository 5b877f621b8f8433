"""One spelling per tag: the shared rules, the Dataset table, tag operations, normalize and `files`."""

from __future__ import annotations

import pytest

from embed_studio.cli import main
from embed_studio.dataset.captions import DatasetCaptions
from embed_studio.tagspell import (
    Spelling,
    canonical,
    escape,
    is_kaomoji,
    merge,
    order_by_category,
    spell,
    tag_key,
)

# The same four tags as the booru fetch, the tagger and a hand-edited caption used to write them.
BOORU_OLD = r"o o, x x, black hair, kiana kaslana \(honkai\)"
TAGGER_OLD = "o_o, x_x, black hair, kiana kaslana (honkai)"
CANONICAL = "o_o, x_x, black hair, kiana kaslana (honkai)"


def test_spelling_variants_share_one_key_and_one_canonical_form():
    variants = [
        "kiana_kaslana_(honkai)",
        r"kiana kaslana \(honkai\)",
        "Kiana Kaslana (Honkai)",
        "(kiana_kaslana_(honkai):0.9)",
    ]
    assert len({tag_key(v) for v in variants}) == 1
    assert canonical("kiana_kaslana_(honkai)") == canonical(r"kiana kaslana \(honkai\)") == "kiana kaslana (honkai)"
    # Kaomoji keep (or get back) their underscores whichever way they were written.
    assert [canonical(t) for t in ("o o", "o_o", "x x", "^_^", ">_<", "0 0")] == [
        "o_o",
        "o_o",
        "x_x",
        "^_^",
        ">_<",
        "0_0",
    ]
    assert is_kaomoji("u u") and not is_kaomoji("black hair") and not is_kaomoji("black_hair")
    assert spell("black hair", Spelling(underscores=True)) == "black_hair"
    assert spell("kiana_(honkai)", Spelling(escape=True)) == r"kiana \(honkai\)"
    assert escape(escape("a (b) [c]")) == r"a \(b\) \[c\]"  # escaping twice changes nothing


def test_merge_and_category_order():
    # As a tagger knows them: every tag it writes has a category; the booru's own extras may not.
    category = {
        "krystal": "character",
        "canine": "species",
        "anthro": "general",
        "solo": "general",
        "hi res": "meta",
    }.get
    booru = ["explicit content", "by someone", "anthro", "canine", "rare tag", "krystal"]
    tagger = ["Krystal", "canine", "solo", "hi_res"]
    assert merge(booru, tagger) == [
        "explicit content",
        "by someone",
        "anthro",
        "canine",
        "rare tag",
        "krystal",
        "solo",
        "hi_res",
    ]
    ordered = merge(booru, tagger, lambda t: category(tag_key(t)), ("character", "species", "general", "meta"))
    # Unknown tags before any known one stay in front; a later unknown one sits with the tag before it.
    assert ordered == ["explicit content", "by someone", "krystal", "canine", "rare tag", "anthro", "solo", "hi_res"]
    assert order_by_category(["a", "b"], lambda t: None) == ["a", "b"]


@pytest.fixture
def mixed(tmp_path, build):
    return build(
        tmp_path / "mixed",
        {
            "1.png": BOORU_OLD,
            "2.png": TAGGER_OLD,
            "3.png": "Black_Hair, solo, kiana_kaslana_(honkai)",
            "4.png": "solo",
        },
    )


def test_table_shows_one_row_per_tag_and_one_delete_removes_every_spelling(mixed):
    ds = DatasetCaptions.load(mixed)
    rows = {r.tag: r.images for r in ds.tag_table()}
    assert rows == {"black hair": 3, "kiana kaslana (honkai)": 3, "o_o": 2, "x_x": 2, "solo": 2}
    assert ds.tag_count == 5 and ds.count("KIANA_KASLANA_\\(HONKAI\\)") == 3
    assert [r.tag for r in ds.tag_table("kaslana_(")] == ["kiana kaslana (honkai)"]
    assert ds.filter(has=["black_hair"], lacks=["o o"]) == [2]
    edit = ds.delete_tags("kiana kaslana (honkai)")
    assert edit.image_count == 3
    assert [ds.tags_of(i) for i in range(3)] == [
        ("o o", "x x", "black hair"),
        ("o_o", "x_x", "black hair"),
        ("Black_Hair", "solo"),
    ]
    ds.undo()
    ds.replace_tags(["x x"], ["crossed eyes", "BLACK HAIR"])
    assert ds.tags_of(0) == ("o o", "crossed eyes", "black hair", r"kiana kaslana \(honkai\)")
    ds.undo()
    ds.add_tags("black hair, new tag")  # in any spelling: "Black_Hair" is the same tag
    assert ds.tags_of(2) == ("Black_Hair", "solo", "kiana_kaslana_(honkai)", "new tag")
    ds.move_to_front("kiana kaslana (honkai)")
    assert ds.tags_of(2)[0] == "kiana_kaslana_(honkai)"


def test_normalize_previews_writes_and_is_undone_byte_for_byte(mixed, capsys):
    # A BOM and stray spaces: undo must give back these exact bytes, not an equivalent caption.
    (mixed / "4.png").with_suffix(".txt").write_bytes(b"\xef\xbb\xbfsolo ,  o o,o_o\r\n")
    before = {p.name: p.read_bytes() for p in mixed.glob("*.txt")}
    assert main(["tags", str(mixed), "normalize", "--dry-run"]) == 0
    # 2.txt is already canonical: the preview names the three others.
    assert "would normalize tag spelling in 3 caption(s)" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in mixed.glob("*.txt")} == before

    assert main(["tags", str(mixed), "normalize"]) == 0
    assert "backup" in capsys.readouterr().out
    after = {p.name: p.read_text(encoding="utf-8") for p in mixed.glob("*.txt")}
    assert after["1.txt"] == after["2.txt"] == CANONICAL
    assert after["3.txt"] == "black hair, solo, kiana kaslana (honkai)"
    assert after["4.txt"] == "solo, o_o"  # the twice-written kaomoji once

    assert main(["tags", str(mixed), "undo"]) == 0
    assert {p.name: p.read_bytes() for p in mixed.glob("*.txt")} == before


def test_normalize_can_write_escaped_brackets_for_the_webui_train_tab(mixed):
    ds = DatasetCaptions.load(mixed)
    ds.normalize(Spelling(escape=True))
    assert ds.caption_text(1) == r"o_o, x_x, black hair, kiana kaslana \(honkai\)"
    ds.save()
    assert DatasetCaptions.load(mixed).tag_table()[0].tag in ("black hair", "kiana kaslana (honkai)")


def test_files_lists_the_images_carrying_a_tag(mixed, capsys):
    assert main(["tags", str(mixed), "files", "kiana_kaslana_(honkai)"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("kiana kaslana (honkai): 3 image(s) (written ")
    assert out[1:] == ["  1.png", "  2.png", "  3.png"]
    assert main(["tags", str(mixed), "files", "no such tag"]) == 0
    assert capsys.readouterr().out.splitlines() == ["no such tag: 0 image(s)"]
