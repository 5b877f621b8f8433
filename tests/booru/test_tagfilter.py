"""Tag processing: model tag lists (both CSV formats, cached download), order, categories, format."""

from __future__ import annotations

import gzip

import pytest

from embed_studio.booru.client import BooruClient, ClientConfig
from embed_studio.booru.post import Post
from embed_studio.booru.tagfilter import (
    TagOptions,
    caption_tags,
    format_caption,
    load_tag_list,
    parse_tag_field,
    resolve_tag_list,
)
from embed_studio.errors import FileFormatError, UserInputError

TAGCOMPLETE_CSV = (
    'solo,0,900,"alone,single"\nsmile,0,500,\nblue_eyes,0,700,\nzangoose,5,50,\nhi_res,7,1000,\n^_^,0,20,\n'
)


def post(**tags) -> Post:
    base = {"general": ["smile", "solo", "alone", "blue_eyes", "rare_tag", "^_^"], "species": ["zangoose"],
            "character": ["zack_(character)"], "artist": ["conditional_dnp", "artist_a", "artist_b"],
            "meta": ["hi_res"], "copyright": ["pokemon"], "lore": []}  # fmt: skip
    base.update(tags)
    return Post(id=1, md5="a" * 32, ext="png", file_url=None, tags=base, rating="e", rating_name="explicit")


def test_tagcomplete_csv_keeps_listed_tags_sorted_by_count(tmp_path):
    path = tmp_path / "e621.csv"
    path.write_text(TAGCOMPLETE_CSV)
    tags = load_tag_list(path)
    assert tags.count("solo") == 900 and tags.canonical("single") == "solo"
    caption = caption_tags(post(), TagOptions(), tags)
    # "alone" is an alias of solo (already there); rare_tag is not in the model's list.
    assert caption == ["explicit content", "by artist a and artist b", "solo", "blue eyes", "smile", "zangoose", "^_^"]


def test_e621_export_gz_with_header(tmp_path):
    path = tmp_path / "tags-2024-01-01.csv.gz"
    path.write_bytes(gzip.compress(b'id,name,category,post_count\n1,smile,0,10\n2,solo,0,30\n3,"odd,name",0,5\n'))
    tags = load_tag_list(path)
    assert tags.counts == {"smile": 10, "solo": 30, "odd,name": 5}
    assert caption_tags(post(), TagOptions(prepend_artist=False, prepend_rating=False), tags) == ["solo", "smile"]


def test_no_tag_list_keeps_the_booru_tags_in_order():
    opts = TagOptions(categories=("general", "character", "meta"), prepend_rating=False, underscores_to_spaces=False)
    assert caption_tags(post(), opts) == [
        "by artist_a and artist_b", "smile", "solo", "alone", "blue_eyes", "rare_tag", "^_^",
        "zack_(character)", "hi_res",
    ]  # fmt: skip
    escaped = TagOptions(categories=("character",), prepend_rating=False, prepend_artist=False, escape_brackets=True)
    assert caption_tags(post(), escaped) == [r"zack \(character\)"]


def test_include_exclude_and_templates():
    opts = TagOptions(
        include=("uploaded on e621",), exclude=("*_eyes", "artist_b", "rare*"), escape_brackets=False,
        rating_template="rating:{rating}", artist_template="art by {artist}", categories=("general", "character"),
    )  # fmt: skip
    text = format_caption(post(), opts)
    assert text == "rating:explicit, art by artist a, uploaded on e621, smile, solo, alone, ^_^, zack (character)"


def test_bad_inputs_say_what_to_do(tmp_path):
    with pytest.raises(UserInputError, match="categories"):
        TagOptions(categories=("general", "colour"))
    with pytest.raises(UserInputError, match="does not exist"):
        load_tag_list(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    with pytest.raises(FileFormatError, match="no tags"):
        load_tag_list(empty)
    assert parse_tag_field("a, b\nc,,") == ("a", "b", "c")


def test_tag_list_url_is_downloaded_once_and_cached(booru_server, fb, tmp_path):
    server = booru_server([])
    server.extra_files["/db_export/tags.csv"] = TAGCOMPLETE_CSV.encode()
    client = BooruClient(ClientConfig(server.url, min_interval=0))
    url = f"{server.url}/db_export/tags.csv"
    first = resolve_tag_list(url, tmp_path / "cache", client)
    second = resolve_tag_list(url, tmp_path / "cache", client)
    assert first.counts == second.counts and first.count("solo") == 900
    assert len([r for r in server.requests if r.path == "/db_export/tags.csv"]) == 1
    assert [p.name.endswith("-tags.csv") for p in (tmp_path / "cache").iterdir()] == [True]


def test_a_tag_list_download_is_cut_off_at_its_cap(booru_server, tmp_path):
    from embed_studio.booru.tagfilter import cached_tag_list

    server = booru_server([])
    server.extra_files["/huge.csv"] = b"solo,0,1,\n" * 200_000  # 2 MB
    client = BooruClient(ClientConfig(server.url, min_interval=0))
    with pytest.raises(UserInputError, match="over 1 MiB: not a tag list"):
        cached_tag_list(f"{server.url}/huge.csv", tmp_path / "cache", client, max_bytes=1 << 20)
    assert list((tmp_path / "cache").iterdir()) == []  # no partial file is kept as the cached list


def test_a_gz_bomb_tag_list_stops_at_the_cap(tmp_path, monkeypatch):
    import embed_studio.dataset.taglist as taglist

    monkeypatch.setattr(taglist, "TAG_LIST_MAX_BYTES", 1 << 20)
    bomb = tmp_path / "tags.csv.gz"
    bomb.write_bytes(gzip.compress(b"0" * (32 << 20), compresslevel=9))  # 32 MiB of zeros in ~32 KB
    assert bomb.stat().st_size < 100_000
    with pytest.raises(FileFormatError, match="unpacks to over 1 MiB"):
        taglist.load_tag_list(bomb)
