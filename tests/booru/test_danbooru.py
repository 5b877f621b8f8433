"""Danbooru through the same interface: 200 a page, its tag fields and ratings, the 2-tag limit."""

from __future__ import annotations

import pytest

from embed_studio.booru.danbooru import split_query
from embed_studio.booru.fetch import ConnectionOptions, FetchOptions, fetch_job
from embed_studio.booru.sites import open_booru
from embed_studio.booru.tagfilter import TagOptions
from embed_studio.errors import UserInputError
from embed_studio.jobs import DONE


def conn(server, no_sleep, **kw) -> ConnectionOptions:
    return ConnectionOptions(site="danbooru", base_url=server.url, min_interval=0, sleep=no_sleep, **kw)


def test_pages_of_200_and_normalised_posts(booru_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(450)
    server = booru_server(posts, flavor="danbooru")
    booru = conn(server, no_sleep).open()
    pages = list(booru.search("solo"))
    assert [len(p) for p in pages] == [200, 200, 50]
    assert [r.query.get("page") for r in server.api_requests()] == [None, "b801", "b601"]
    first = pages[0][0]
    assert first.md5 == posts[0].md5 and first.ext == "png" and first.size == len(posts[0].data)
    assert first.tags["character"] == ["zack_(character)"] and first.artists == ["some_artist", "conditional_dnp"]
    assert (first.rating, first.rating_name) == ("s", "sensitive")
    assert [p.rating_name for p in pages[0][:4]] == ["sensitive", "explicit", "questionable", "sensitive"]


def test_anonymous_three_tag_query_is_split_and_filtered_locally(booru_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(12)
    server = booru_server(posts, flavor="danbooru")
    opts = FetchOptions(
        query="zangoose solo -red_eyes rating:e", folder=tmp_path, limit=50, connection=conn(server, no_sleep),
        tag_options=TagOptions(prepend_rating=True),
    )  # fmt: skip
    job = fetch_job(opts)
    job.run()
    assert job.status().state == DONE, job.status().error
    s = job.result
    expected = {p.md5 for p in posts if "blue_eyes" in p.all_tags and p.rating == "e"}
    assert expected and {p.stem for p in tmp_path.glob("*.png")} == expected
    assert [r.query["tags"] for r in server.api_requests()] == ["zangoose solo rating:e"]  # rating: is free
    assert any("2 tags at a time" in n for n in s.notes) and "filtered" in s.text()
    caption = (tmp_path / f"{sorted(expected)[0]}.txt").read_text()
    assert caption.startswith("explicit content, by some artist, ")


def test_logged_in_query_goes_whole_to_the_server(booru_server, fb, no_sleep):
    server = booru_server(fb.make_posts(6), flavor="danbooru")
    booru = conn(server, no_sleep, username="me", api_key="key").open()
    found = [p for page in booru.search("zangoose solo -red_eyes") for p in page]
    assert len(found) == 3
    assert [r.query["tags"] for r in server.api_requests()] == ["zangoose solo -red_eyes"]


def test_server_only_terms_beyond_the_limit_are_explained():
    with pytest.raises(UserInputError, match="2 tags at a time.*API key"):
        split_query(["order:score", "status:any", "~cat", "~dog", "dog"])
    assert split_query(["-a", "b", "rating:g", "c"]) == (["b", "rating:g", "c"], ["-a"])
    # order: counts toward the limit on Danbooru (it is not one of its free metatags).
    assert split_query(["a", "b", "order:score"]) == (["a", "order:score"], ["b"])


def test_md5_lookup_in_one_request(booru_server, fb, no_sleep):
    posts = fb.make_posts(5)
    server = booru_server(posts, flavor="danbooru")
    booru = open_booru("danbooru", base_url=server.url, min_interval=0, sleep=no_sleep)
    found = booru.lookup_md5([p.md5 for p in posts] + ["0" * 32])
    assert set(found) == {p.md5 for p in posts}
    assert len(server.api_requests()) == 1


def test_deleted_and_hidden_posts_are_counted(booru_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(4)
    posts[0].deleted = True
    posts[1].hidden = True
    server = booru_server(posts, flavor="danbooru")
    job = fetch_job(FetchOptions(query="solo", folder=tmp_path, limit=4, connection=conn(server, no_sleep)))
    job.run()
    s = job.result
    assert (s.deleted, s.hidden, s.downloaded, s.posts_seen) == (1, 1, 2, 4)
    assert "a login may show them" in s.text()


def test_logged_in_basic_account_over_its_tag_limit_falls_back_to_splitting(booru_server, fb, no_sleep):
    server = booru_server(fb.make_posts(6), flavor="danbooru")
    server.fail_next = [422]  # what Danbooru answers a basic account searching 3 tags
    booru = conn(server, no_sleep, username="me", api_key="key").open()
    found = [p for page in booru.search("zangoose solo -red_eyes") for p in page]
    assert len(found) == 3 and all("blue_eyes" in p.all_tags for p in found)
    assert [r.query["tags"] for r in server.api_requests()] == ["zangoose solo -red_eyes", "zangoose solo"]
    assert any("2 tags at a time" in n for n in booru.notes)
